//! Purge requests: what `POST /purge` on the admin listener asks, applied on this node.
//! The admin handler fans the same request out to every peer (authenticated with the
//! cluster secret), which apply it through [`Proxy::apply_purge`] too. Unsafe methods passed
//! through invalidate the same way, here and on every peer ([`Proxy::invalidate_everywhere`]).

use serde::{Deserialize, Serialize};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{PathAndQuery, Scheme};
use http::{StatusCode, Uri};

use super::{Proxy, request};
use crate::cache::key::KeyRules;
use crate::cluster::peer::{CASCADE, INVALIDATE_PATH};
use crate::cluster::shield::ShieldTier;
use crate::storage::PurgeMode;

/// How long the response to an unsafe method waits for each peer to confirm its
/// invalidation: a peer that is hung or unreachable delays it this much at most (one that
/// refuses the connection not at all), and is logged and counted. The probe's shortest wait:
/// a busy peer answers within it.
const INVALIDATION_TIMEOUT: Duration = Duration::from_secs(1);

/// The cache keys an unsafe method invalidated (RFC 9111 §4.4), as sent to the other members.
/// Keys, not URLs: the sender computed them with the site's key rules and the client's
/// scheme, so every member removes exactly what the sender did.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Invalidation {
    pub(crate) keys: Vec<String>,
}

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

impl Proxy {
    /// Apply a purge here: `{"purged": n, "soft": .., "urls": [...], "tags": [...]}`.
    pub(crate) async fn apply_purge(&self, purge: &PurgeRequest) -> serde_json::Value {
        let mode = if purge.soft {
            PurgeMode::Soft
        } else {
            PurgeMode::Hard
        };
        let mut urls = Vec::with_capacity(purge.urls.len());
        let mut total = 0;
        for url in &purge.urls {
            match self.purge_url(url, mode).await {
                Ok(n) => {
                    total += n;
                    urls.push(serde_json::json!({ "url": url, "purged": n > 0 }));
                }
                Err(e) => urls.push(serde_json::json!({ "url": url, "error": e.to_string() })),
            }
        }
        let mut tags = Vec::with_capacity(purge.tags.len());
        for tag in &purge.tags {
            let n = self.purge_tag(tag, mode).await;
            total += n;
            tags.push(serde_json::json!({ "tag": tag, "purged": n }));
        }
        serde_json::json!({ "purged": total, "soft": purge.soft, "urls": urls, "tags": tags })
    }

    /// Remove what is stored for `key`, and keep a fill already in flight from storing it
    /// again.
    async fn invalidate(&self, key: &str) {
        self.inflight.invalidate(key);
        self.store.purge_key(key, PurgeMode::Hard).await;
    }

    /// RFC 9111 §4.4 across the cluster: remove what is stored for `keys` here and on every
    /// other member (the owner holds the object, and any member may hold a replica), before
    /// the unsafe method's response goes back. A member that does not confirm within
    /// [`INVALIDATION_TIMEOUT`] is logged and counted, and the response goes back anyway.
    pub(super) async fn invalidate_everywhere(
        &self,
        keys: Vec<String>,
        shield: Option<&Arc<ShieldTier>>,
    ) {
        let here = async {
            for key in &keys {
                self.invalidate(key).await;
            }
        };
        let Some(cluster) = &self.cluster else {
            return here.await;
        };
        let invalidation = Invalidation { keys: keys.clone() };
        // A list of strings always serializes; an empty body would be refused and counted.
        let body = Bytes::from(serde_json::to_vec(&invalidation).unwrap_or_default());
        let peers = cluster.fan_out(INVALIDATE_PATH, &body, INVALIDATION_TIMEOUT);
        // The shield tier holds the URI too (each shield node passes it to its members).
        let shield_path = format!("{INVALIDATE_PATH}?{CASCADE}");
        let shields = cluster.post_signed(
            shield.into_iter().flat_map(|tier| tier.nodes().cloned()),
            &shield_path,
            &body,
            INVALIDATION_TIMEOUT,
        );
        let ((), mut answers, shielded) = tokio::join!(here, peers, shields);
        answers.extend(shielded);
        for (peer, answer) in answers {
            let why = match answer {
                Ok((StatusCode::OK, _)) => continue,
                Ok((status, _)) => format!("answered {status}"),
                Err(e) => e.to_string(),
            };
            peer.metrics.invalidations_failed.inc();
            tracing::warn!(
                peer = %peer.id.0,
                %why,
                keys = ?invalidation.keys,
                "a peer did not confirm an invalidation: its stored copy may outlive the change"
            );
        }
    }

    /// An invalidation another member fanned out: applied here only.
    pub(crate) async fn apply_invalidation(&self, invalidation: &Invalidation) -> usize {
        for key in &invalidation.keys {
            self.invalidate(key).await;
        }
        invalidation.keys.len()
    }

    /// The cache keys of an absolute URL under both schemes (with the site's key rules), the
    /// URL's own scheme first.
    fn keys_of(&self, url: &str) -> Result<[String; 2], PurgeError> {
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
