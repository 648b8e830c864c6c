//! Phase 3, route: where a fill goes.
//!
//! The one place that decides a fill's [`Upstream`]: the origin, or the key's owner one hop
//! away. Hop limits live here too: a request that already hopped is never forwarded again
//! (one peer hop at most), and an owner that cannot be reached sends the fill to the origin
//! from this node. The fill phase only carries the decision out.

use std::sync::Arc;

use http::uri::Scheme;

use super::request::RequestContext;
use crate::cluster::peer::Peer;
use crate::cluster::{Cluster, Route};
use crate::hash;

/// Where one fill asks for the response.
pub(crate) enum Upstream {
    /// The site's origin servers: this node owns the key, no live peer does, the request came
    /// from a peer already, or the owner could not be reached.
    Origin,
    /// The owner of the key, another node of the cluster.
    Owner(OwnerHop),
}

/// A fill that asks the key's owner, once.
pub(crate) struct OwnerHop {
    pub(crate) peer: Arc<Peer>,
    pub(crate) cluster: Arc<Cluster>,
    /// Keep the response as a replica here although the owner holds it.
    pub(crate) keep_replica: bool,
    /// The client's scheme (the owner keys the object with it).
    pub(crate) https: bool,
    /// `authority` + `path?query`, what the hop's MAC covers.
    pub(crate) target: String,
}

/// The upstream of a fill for this request.
pub(crate) fn route(cluster: Option<&Arc<Cluster>>, ctx: &RequestContext) -> Upstream {
    let Some(cluster) = cluster else {
        return Upstream::Origin;
    };
    // One hop at most: what a peer forwarded is served from here.
    if ctx.hopped {
        return Upstream::Origin;
    }
    let key_hash = hash::key(&ctx.key);
    match cluster.route(key_hash) {
        Route::Local => Upstream::Origin,
        Route::Peer(peer) => Upstream::Owner(OwnerHop {
            peer,
            cluster: cluster.clone(),
            keep_replica: cluster.keep_replica(key_hash),
            https: ctx.client.scheme == Scheme::HTTPS,
            target: format!(
                "{}{}",
                ctx.authority.to_str().unwrap_or_default(),
                ctx.path_and_query
            ),
        }),
    }
}

impl Upstream {
    /// Where the fill goes after the owner could not be reached. The owner has been ejected
    /// by then; the origin is asked from here, and the response is stored here: with the owner
    /// gone, this node or its successor owns the key.
    pub(crate) fn owner_unreachable(&mut self) {
        *self = Upstream::Origin;
    }

    /// Whether a storable response is stored on this node.
    pub(crate) fn stores_here(&self) -> bool {
        match self {
            Upstream::Origin => true,
            Upstream::Owner(hop) => hop.keep_replica,
        }
    }

    /// Whether the response comes from another node (what is stored of it is a replica).
    pub(crate) fn is_owner(&self) -> bool {
        matches!(self, Upstream::Owner(_))
    }
}
