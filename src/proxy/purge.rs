//! Purges and invalidations on this node: what `POST /purge` on the admin listener asks, what
//! an unsafe method invalidates (RFC 9111 §4.4), and what other nodes took. Each is a
//! [`PurgeRecord`] with an identity and a time: logged ([`crate::cluster::purges`]), applied
//! here once, and sent to every other node ([`crate::cluster::broadcast`]); one a node missed
//! reaches it when purge logs are compared.

use serde::{Deserialize, Serialize};

use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use http::uri::{PathAndQuery, Scheme};

use super::{Proxy, request};
use crate::cache::key::KeyRules;
use crate::cluster::broadcast::{self, Delivery};
use crate::cluster::purge_log::{Inserted, Matcher, PurgeRecord};
use crate::observability::metrics::PurgeSource;
use crate::storage::PurgeMode;

/// How long the response to an unsafe method waits for each node to confirm its
/// invalidation: a node that is hung or unreachable delays it this much at most (one that
/// refuses the connection not at all), and is logged and counted; it gets the invalidation
/// from the purge log later. The probe's shortest wait: a busy node answers within it.
const INVALIDATION_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a purge waits for each node's answer.
pub(crate) const PURGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most URLs, tags or keys one record may name (a purge of 10,000 URLs is well within).
const MAX_NAMES: usize = 100_000;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PurgeRequest {
    #[serde(default)]
    pub(crate) urls: Vec<String>,
    #[serde(default)]
    pub(crate) tags: Vec<String>,
    /// Mark stale instead of removing (revalidation and stale serving can still use them).
    #[serde(default)]
    pub(crate) soft: bool,
}

impl PurgeRequest {
    pub(crate) fn is_empty(&self) -> bool {
        self.urls.is_empty() && self.tags.is_empty()
    }
}

/// Whether a record another node sent is one this node can apply.
pub(crate) fn check_record(record: &PurgeRecord) -> Result<(), String> {
    if record.node.is_empty() || record.node.len() > 256 {
        return Err("a record names the node that took it".to_owned());
    }
    if record.is_empty() {
        return Err("a record names URLs, tags or keys".to_owned());
    }
    let names = record.urls.len() + record.tags.len() + record.keys.len();
    if names > MAX_NAMES {
        return Err(format!(
            "at most {MAX_NAMES} URLs, tags and keys in one record"
        ));
    }
    Ok(())
}

impl Proxy {
    /// A new record for a purge taken here.
    pub(crate) fn new_record(&self, purge: &PurgeRequest) -> PurgeRecord {
        PurgeRecord {
            node: self.record_node(),
            at: self.purges.stamp(),
            urls: purge.urls.clone(),
            tags: purge.tags.clone(),
            keys: Vec::new(),
            soft: purge.soft,
        }
    }

    /// What this node calls itself in the records it takes: its advertised address in a
    /// cluster (unique among the nodes), else its name.
    fn record_node(&self) -> String {
        match &self.cluster {
            Some(cluster) => cluster.me.0.clone(),
            None => self.node.name.clone(),
        }
    }

    /// What `record` removes here: the keys of its URLs (with their site's key rules, under
    /// both schemes), its invalidated keys, and its tags.
    fn matcher(&self, record: &PurgeRecord) -> Matcher {
        let mut keys: Vec<String> = record
            .urls
            .iter()
            .filter_map(|url| self.keys_of(url).ok())
            .flatten()
            .collect();
        keys.extend(record.keys.iter().cloned());
        Matcher {
            keys,
            tags: record.tags.clone(),
        }
    }

    /// Log `record` and, the first time, apply it here: `{"purged": n, "soft": .., "urls":
    /// [...], "tags": [...]}`; a record seen before answers `"known": true` and does nothing.
    pub(crate) async fn take_record(
        &self,
        record: PurgeRecord,
        source: PurgeSource,
    ) -> serde_json::Value {
        let matcher = self.matcher(&record);
        let id = format!("{}@{}", record.at, record.node);
        match self.purges.insert(record.clone(), matcher) {
            Inserted::Known => {
                self.metrics.purges.taken(PurgeSource::Known);
                serde_json::json!({ "id": id, "known": true, "purged": 0 })
            }
            Inserted::New | Inserted::BeforeHorizon => {
                self.metrics.purges.taken(source);
                let mut applied = self.apply_record(&record).await;
                applied["id"] = id.into();
                applied
            }
        }
    }

    /// Log a record this node applied before it restarted (from its snapshot's purge log).
    pub(crate) fn log_record(&self, record: PurgeRecord) {
        let matcher = self.matcher(&record);
        self.purges.insert(record, matcher);
    }

    /// Apply a record here: `{"purged": n, "soft": .., "urls": [...], "tags": [...]}`.
    async fn apply_record(&self, record: &PurgeRecord) -> serde_json::Value {
        let mode = if record.soft {
            PurgeMode::Soft
        } else {
            PurgeMode::Hard
        };
        let mut urls = Vec::with_capacity(record.urls.len());
        let mut total = 0;
        for url in &record.urls {
            match self.purge_url(url, mode).await {
                Ok(n) => {
                    total += n;
                    urls.push(serde_json::json!({ "url": url, "purged": n > 0 }));
                }
                Err(e) => urls.push(serde_json::json!({ "url": url, "error": e.to_string() })),
            }
        }
        let mut tags = Vec::with_capacity(record.tags.len());
        for tag in &record.tags {
            let n = self.purge_tag(tag, mode).await;
            total += n;
            tags.push(serde_json::json!({ "tag": tag, "purged": n }));
        }
        for key in &record.keys {
            self.invalidate(key).await;
        }
        let mut answer =
            serde_json::json!({ "purged": total, "soft": record.soft, "urls": urls, "tags": tags });
        if !record.keys.is_empty() {
            answer["invalidated"] = record.keys.len().into();
        }
        answer
    }

    /// A purge taken here (`POST /purge`): applied here, then sent to every other node; the
    /// answers, each node's with it.
    pub(crate) async fn purge_everywhere(
        &self,
        purge: &PurgeRequest,
    ) -> (serde_json::Value, Vec<Delivery>) {
        let record = self.new_record(purge);
        let here = self.take_record(record.clone(), PurgeSource::Here).await;
        let Some(cluster) = &self.cluster else {
            return (here, Vec::new());
        };
        let delivered = broadcast::broadcast(cluster, &record, PURGE_TIMEOUT, true).await;
        (here, delivered)
    }

    /// Remove what is stored for `key`, and keep a fill already in flight from storing it
    /// again.
    async fn invalidate(&self, key: &str) {
        self.inflight.invalidate(key);
        self.store.purge_key(key, PurgeMode::Hard).await;
    }

    /// RFC 9111 §4.4 everywhere: remove what is stored for `keys` here and on every other
    /// node (the owner holds the object, any member may hold a replica, the shield tier and
    /// other regions may hold it too), before the unsafe method's response goes back. A node
    /// that does not confirm within [`INVALIDATION_TIMEOUT`] is logged and counted, and the
    /// response goes back anyway: the invalidation is in the purge log, which that node
    /// compares with its peers' before it serves from its cache again.
    pub(super) async fn invalidate_everywhere(&self, keys: Vec<String>) {
        let record = PurgeRecord {
            node: self.record_node(),
            at: self.purges.stamp(),
            urls: Vec::new(),
            tags: Vec::new(),
            keys,
            soft: false,
        };
        self.take_record(record.clone(), PurgeSource::Here).await;
        let Some(cluster) = &self.cluster else {
            return;
        };
        let delivered = broadcast::broadcast(cluster, &record, INVALIDATION_TIMEOUT, false).await;
        for delivery in delivered {
            let why = match delivery.answer {
                Ok(_) => continue,
                Err(why) => why,
            };
            delivery.peer.metrics.invalidations_failed.inc();
            tracing::warn!(
                node = %delivery.peer.id.0,
                %why,
                keys = ?record.keys,
                "a node did not confirm an invalidation: it applies it from the purge log"
            );
        }
    }

    /// The cache keys of an absolute URL under both schemes (with the site's key rules), the
    /// URL's own scheme first.
    pub(crate) fn keys_of(&self, url: &str) -> Result<[String; 2], PurgeError> {
        url_keys(url, |host| {
            self.sites.find(host).map(|site| &site.key_rules)
        })
    }

    /// The cache key of an absolute URL (for `/cluster/owner`).
    pub(crate) fn key_of(&self, url: &str) -> Result<String, PurgeError> {
        let [key, _] = self.keys_of(url)?;
        Ok(key)
    }

    /// Purge every stored variant of an absolute URL, under both schemes, with the cache-key
    /// rules of the site it belongs to. Returns how many entries it hit.
    pub(crate) async fn purge_url(&self, url: &str, mode: PurgeMode) -> Result<usize, PurgeError> {
        let mut purged = 0;
        for key in self.keys_of(url)? {
            // A fill in flight fetched before the purge: it must not store what it got.
            self.inflight.invalidate(&key);
            purged += self.store.purge_key(&key, mode).await;
        }
        self.metrics.store.purged.inc_by(purged as u64);
        Ok(purged)
    }

    /// Purge every entry tagged `tag` (the site's tag field, `Surrogate-Key` by default).
    pub(crate) async fn purge_tag(&self, tag: &str, mode: PurgeMode) -> usize {
        let purged = self
            .store
            .purge_tags(Arc::from([tag.to_owned()]), mode)
            .await;
        self.metrics.store.purged.inc_by(purged as u64);
        purged
    }
}

/// The cache keys of an absolute URL under both schemes, the URL's own scheme first, with the
/// key rules `rules_of` gives for its host (none: the plain key). A free function so that the
/// same code is checked without a node.
pub(crate) fn url_keys<'r>(
    url: &str,
    rules_of: impl FnOnce(&str) -> Option<&'r KeyRules>,
) -> Result<[String; 2], PurgeError> {
    let invalid = || PurgeError::InvalidUrl(url.to_owned());
    let uri: Uri = url.parse().map_err(|_| invalid())?;
    let authority = uri.authority().ok_or_else(invalid)?;
    let (host, port) = request::split_authority(authority.as_str()).ok_or_else(invalid)?;
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let query = match rules_of(&host) {
        Some(rules) => rules.query(path.query()),
        None => path.query().map(std::borrow::Cow::Borrowed),
    };
    let key =
        |scheme: &Scheme| request::cache_key(scheme, &host, port, path.path(), query.as_deref());
    Ok(if uri.scheme() == Some(&Scheme::HTTPS) {
        [key(&Scheme::HTTPS), key(&Scheme::HTTP)]
    } else {
        [key(&Scheme::HTTP), key(&Scheme::HTTPS)]
    })
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PurgeError {
    #[error("not an absolute URL: {0:?}")]
    InvalidUrl(String),
}
