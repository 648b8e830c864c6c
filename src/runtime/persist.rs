//! `cache.persist`: the snapshot written on drain and read back at start (the format and its
//! guarantees are in [`crate::storage::snapshot`]). Here: when it runs, on which thread, and
//! what the operator is told (a log line and the `outpost_cache_snapshot*` metrics).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::RunError;
use crate::cluster::purge_log::Verdict;
use crate::cluster::purges::{Purges, Saved};
use crate::config::Config;
use crate::observability::metrics::Metrics;
use crate::proxy::Proxy;
use crate::storage::snapshot::{self, Loaded, SnapshotError};
use crate::storage::{Entry, Store};

/// The most variants a loaded key keeps: the configuration's own bound already applied when
/// the snapshot was written.
const MAX_VARIANTS: usize = 1024;

/// Whatever the deadline, a snapshot gets at least this long to be written.
const MIN_SAVE_TIME: Duration = Duration::from_secs(1);

/// The purge log's file beside the cache snapshot.
const PURGES_FILE: &str = "purges.json";

/// Load the snapshot in `cache.persist` into the proxy's store, before the node reports
/// ready: first the purge log it was written with, then every entry no purge in that log
/// names. A directory that cannot be created or written is an error (the operator asked for
/// a cache that survives restarts); a snapshot that cannot be used is a warning and an empty
/// cache.
pub(super) async fn load(
    config: &Config,
    proxy: &Proxy,
    metrics: &Metrics,
) -> Result<(), RunError> {
    let Some(dir) = config.cache.persist.clone() else {
        return Ok(());
    };
    snapshot::prepare_dir(&dir).map_err(|error| RunError::Persist {
        dir: dir.clone(),
        error,
    })?;
    load_purges(&dir, proxy).await;
    let store = proxy.store();
    let fingerprint = snapshot::fingerprint(&config.sites);
    let budget = store.capacity();
    let started = Instant::now();
    let read = tokio::task::spawn_blocking(move || {
        let mut entries: Vec<(String, Entry)> = Vec::new();
        let result = snapshot::load(
            &dir,
            fingerprint,
            SystemTime::now(),
            budget,
            |key, entry| {
                entries.push((key, entry));
            },
        );
        (dir, result, entries)
    })
    .await;
    let Ok((dir, result, entries)) = read else {
        tracing::warn!("reading the cache snapshot failed; starting with an empty cache");
        metrics.store.snapshot_skipped("io");
        return Ok(());
    };
    let mut purged = 0;
    for (key, entry) in entries {
        match proxy.purges.verdict(&key, &entry.tags, entry.fetched) {
            Verdict::Purged => {
                purged += 1;
                continue;
            }
            Verdict::Stale(at_ms) => {
                entry.mark_stale(SystemTime::UNIX_EPOCH + Duration::from_millis(at_ms));
            }
            Verdict::Keep | Verdict::Unknown => {}
        }
        store.insert(&key, Arc::new(entry), MAX_VARIANTS).await;
    }
    store.run_pending_tasks().await;
    metrics.store.snapshot("load", "purged", purged);
    match result {
        Ok(None) => tracing::info!(dir = %dir.display(), "no cache snapshot; starting empty"),
        Ok(Some(loaded)) => report_load(&dir, &loaded, started.elapsed(), metrics),
        Err(e) => skipped(&e, metrics),
    }
    Ok(())
}

/// Read the purge log written with the snapshot, if any, into the node's log.
async fn load_purges(dir: &Path, proxy: &Proxy) {
    let path = dir.join(PURGES_FILE);
    let read = tokio::task::spawn_blocking(move || std::fs::read(&path)).await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return,
        _ => {
            tracing::warn!(dir = %dir.display(), "the purge log could not be read; the snapshot's entries are checked with peers or the origin");
            return;
        }
    };
    let saved: Saved = match serde_json::from_slice(&bytes) {
        Ok(saved) => saved,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "the purge log is damaged; the snapshot's entries are checked with peers or the origin");
            return;
        }
    };
    proxy.purges.restore(saved.horizon_ms, saved.synced_ms);
    let records = saved.records.len();
    for record in saved.records {
        proxy.log_record(record);
    }
    tracing::info!(records, "purge log loaded");
}

fn report_load(dir: &Path, loaded: &Loaded, took: Duration, metrics: &Metrics) {
    let m = &metrics.store;
    m.snapshot("load", "loaded", loaded.entries);
    m.snapshot("load", "corrupt", loaded.corrupt);
    m.snapshot("load", "expired", loaded.expired);
    m.snapshot("load", "over_budget", loaded.over_budget);
    if loaded.truncated {
        m.snapshot_skipped("truncated");
    }
    let took_ms = took.as_millis();
    if loaded.corrupt > 0 || loaded.truncated {
        tracing::warn!(
            dir = %dir.display(),
            loaded = loaded.entries,
            corrupt = loaded.corrupt,
            truncated = loaded.truncated,
            "cache snapshot damaged: its intact entries were loaded, the rest skipped"
        );
    } else {
        tracing::info!(
            dir = %dir.display(),
            loaded = loaded.entries,
            expired = loaded.expired,
            over_budget = loaded.over_budget,
            took_ms,
            "cache snapshot loaded"
        );
    }
}

fn skipped(e: &SnapshotError, metrics: &Metrics) {
    metrics.store.snapshot_skipped(e.reason());
    tracing::warn!("cache snapshot not used, starting with an empty cache: {e}");
}

/// Write the store to `cache.persist` (if set) by `deadline`, hottest entries first.
pub(super) async fn save(
    config: &Config,
    store: Arc<Store>,
    purges: &Purges,
    metrics: &Metrics,
    deadline: Instant,
) {
    let Some(dir) = config.cache.persist.clone() else {
        return;
    };
    // The purge log first: every entry written after it was checked against it.
    save_purges(&dir, purges).await;
    let fingerprint = snapshot::fingerprint(&config.sites);
    let deadline = deadline.max(Instant::now() + MIN_SAVE_TIME);
    let started = Instant::now();
    let written = tokio::task::spawn_blocking(move || {
        let entries = store.all_entries();
        snapshot::save(&dir, fingerprint, entries, deadline)
    })
    .await;
    match written {
        Ok(Ok(saved)) => {
            metrics.store.snapshot("save", "saved", saved.entries);
            metrics.store.snapshot("save", "left_out", saved.left_out);
            let took_ms = started.elapsed().as_millis();
            if saved.left_out > 0 {
                tracing::warn!(
                    saved = saved.entries,
                    left_out = saved.left_out,
                    took_ms,
                    "cache snapshot cut at the shutdown deadline (the coldest entries left out)"
                );
            } else {
                tracing::info!(
                    saved = saved.entries,
                    bytes = saved.bytes,
                    took_ms,
                    "cache snapshot written"
                );
            }
        }
        Ok(Err(e)) => tracing::warn!("cache snapshot not written (the previous one stays): {e}"),
        Err(_) => tracing::warn!("cache snapshot not written: the writer failed"),
    }
}

/// Write the purge log beside the snapshot (a temporary file renamed over the last one).
async fn save_purges(dir: &Path, purges: &Purges) {
    let Ok(bytes) = serde_json::to_vec(&purges.saved()) else {
        return;
    };
    let dir = dir.to_owned();
    let written = tokio::task::spawn_blocking(move || {
        let temp = dir.join(format!("{PURGES_FILE}.tmp"));
        std::fs::write(&temp, &bytes)?;
        std::fs::File::open(&temp)?.sync_all()?;
        std::fs::rename(&temp, dir.join(PURGES_FILE))
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::warn!(
            "the purge log was not written; a restart checks its entries with peers or the origin"
        );
    }
}
