//! `cache.persist`: the snapshot written on drain and read back at start (the format and its
//! guarantees are in [`crate::storage::snapshot`]). Here: when it runs, on which thread, and
//! what the operator is told (a log line and the `outpost_cache_snapshot*` metrics).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::RunError;
use crate::config::Config;
use crate::observability::metrics::Metrics;
use crate::storage::snapshot::{self, Loaded, SnapshotError};
use crate::storage::{Entry, Store};

/// The most variants a loaded key keeps: the configuration's own bound already applied when
/// the snapshot was written.
const MAX_VARIANTS: usize = 1024;

/// Whatever the deadline, a snapshot gets at least this long to be written.
const MIN_SAVE_TIME: Duration = Duration::from_secs(1);

/// Load the snapshot in `cache.persist` into `store`, before the node reports ready. A
/// directory that cannot be created or written is an error (the operator asked for a cache
/// that survives restarts); a snapshot that cannot be used is a warning and an empty cache.
pub(super) async fn load(
    config: &Config,
    store: &Store,
    metrics: &Metrics,
) -> Result<(), RunError> {
    let Some(dir) = config.cache.persist.clone() else {
        return Ok(());
    };
    snapshot::prepare_dir(&dir).map_err(|error| RunError::Persist {
        dir: dir.clone(),
        error,
    })?;
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
    for (key, entry) in entries {
        store.insert(&key, Arc::new(entry), MAX_VARIANTS).await;
    }
    store.run_pending_tasks().await;
    match result {
        Ok(None) => tracing::info!(dir = %dir.display(), "no cache snapshot; starting empty"),
        Ok(Some(loaded)) => report_load(&dir, &loaded, started.elapsed(), metrics),
        Err(e) => skipped(&e, metrics),
    }
    Ok(())
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
pub(super) async fn save(config: &Config, store: Arc<Store>, metrics: &Metrics, deadline: Instant) {
    let Some(dir) = config.cache.persist.clone() else {
        return;
    };
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
