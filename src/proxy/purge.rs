//! Purge requests: what `POST /purge` on the admin listener asks, applied on this node.
//! The admin handler fans the same request out to every peer (authenticated with the
//! cluster secret), which apply it through [`Proxy::apply_purge`] too.

use serde::{Deserialize, Serialize};

use super::Proxy;
use crate::storage::PurgeMode;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Mark stale instead of removing (revalidation and stale serving can still use them).
    #[serde(default)]
    pub soft: bool,
}

impl PurgeRequest {
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty() && self.tags.is_empty()
    }
}

impl Proxy {
    /// Apply a purge here: `{"purged": n, "soft": .., "urls": [...], "tags": [...]}`.
    pub async fn apply_purge(&self, purge: &PurgeRequest) -> serde_json::Value {
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
}
