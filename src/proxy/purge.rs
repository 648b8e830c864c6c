//! Purge requests: what `POST /purge` on the admin listener asks, applied on this node.
//! The admin handler fans the same request out to every peer (authenticated with the
//! cluster secret), which apply it through [`Proxy::apply_purge`] too. Unsafe methods passed
//! through invalidate the same way ([`Proxy::invalidate`]).

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use http::Uri;
use http::uri::{PathAndQuery, Scheme};

use super::{Proxy, request};
use crate::cache::key::KeyRules;
use crate::storage::PurgeMode;

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
    pub(super) async fn invalidate(&self, key: &str) {
        self.inflight.invalidate(key);
        self.store.purge_key(key, PurgeMode::Hard).await;
    }

    /// The cache keys of an absolute URL under both schemes, with the key rules of the site
    /// it belongs to.
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
