//! Phase 3, route: where a fill goes.
//!
//! The one place that decides a fill's [`Upstream`]: the origin, the key's owner one hop
//! away in this cluster, or the site's shield tier. The hop limit lives here too: a request
//! takes at most one peer hop and one shield hop ([`Hops`]), so nothing can loop, whatever the
//! rings and shield lists say. An owner that cannot be reached sends the fill to the shield
//! tier (or the origin) from this node, and a shield tier that cannot be reached sends it to
//! the origin. The fill phase only carries the decision out.

use std::sync::Arc;

use http::uri::Scheme;

use super::request::RequestContext;
use crate::cluster::hop::Hops;
use crate::cluster::peer::Peer;
use crate::cluster::shield::ShieldTier;
use crate::cluster::{Cluster, Route};
use crate::hash;

/// Where one fill asks for the response.
pub(crate) enum Upstream {
    /// The site's origin servers.
    Origin,
    /// The owner of the key, another node of the cluster.
    Owner(NodeHop),
    /// A node of the site's shield tier, for a key this node owns.
    Shield(NodeHop),
    /// The key's owner before the last membership change, asked only for what it holds
    /// (`only-if-cached`), for a key this node owns now.
    Handoff(NodeHop),
}

/// A fill that asks another Outpost node, once.
pub(crate) struct NodeHop {
    pub(crate) peer: Arc<Peer>,
    /// The hops the request will have taken with this one (what the hop header says).
    pub(crate) hops: Hops,
    /// Keep the response as a replica here although the owner holds it.
    pub(crate) keep_replica: bool,
    pub(crate) to: Target,
}

/// The request as the route phase saw it: what any hop needs to sign and send it, and what
/// the fallback after an unreachable node needs to choose the next.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) cluster: Arc<Cluster>,
    /// The client's scheme (the owner keys the object with it).
    pub(crate) https: bool,
    /// `authority` + `path?query`, what the hop's MAC covers.
    pub(crate) target: String,
    key_hash: u64,
    /// The site's shield tier.
    shield: Option<Arc<ShieldTier>>,
    /// Shield nodes that could not be reached for this fill (two, and the origin is asked).
    shields_failed: u8,
    /// Holders of the key that could not be reached (or did not answer) for this fill:
    /// `replicas - 1` of them, and the shield tier or the origin is asked.
    holders_failed: Vec<crate::cluster::ring::NodeId>,
    /// The hops the request had taken when it reached this node.
    taken: Hops,
}

/// The upstream of a fill for this request.
pub(crate) fn route(cluster: Option<&Arc<Cluster>>, ctx: &RequestContext) -> Upstream {
    let Some(cluster) = cluster else {
        return Upstream::Origin;
    };
    let key_hash = hash::key(&ctx.key);
    let to = Target {
        cluster: cluster.clone(),
        https: ctx.client.scheme == Scheme::HTTPS,
        target: format!(
            "{}{}",
            ctx.authority.to_str().unwrap_or_default(),
            ctx.path_and_query
        ),
        key_hash,
        shield: ctx.site.shield.clone(),
        shields_failed: 0,
        holders_failed: Vec::new(),
        taken: ctx.hops,
    };
    match cluster.route(key_hash) {
        Route::Peer(peer) if !ctx.hops.peer => Upstream::Owner(NodeHop {
            peer,
            hops: Hops {
                peer: true,
                ..ctx.hops
            },
            keep_replica: cluster.keep_replica(key_hash),
            to,
        }),
        Route::Peer(_) => {
            // A peer sent it here as the owner, and this node's ring disagrees (membership
            // is changing): one peer hop at most, so it is filled from here.
            cluster.count_hop_limit();
            to_shield(to)
        }
        // Also after a peer hop: a handoff hop asks `only-if-cached`, so the previous owner
        // answers from memory or not at all, and never sends it further.
        Route::Local => match cluster.handoff_peer(key_hash) {
            Some(previous) => Upstream::Handoff(NodeHop {
                peer: previous,
                hops: Hops {
                    peer: true,
                    ..ctx.hops
                },
                keep_replica: false,
                to,
            }),
            None => to_shield(to),
        },
    }
}

/// Whether the key is owned by another node that this request has not come from (so the
/// client's range can go to the owner as it is). Asked for ranges only: the owner answers
/// a range from its object or its chunks, where a fill of the whole here, even one kept as a
/// replica, would have the owner send every byte (every chunk of an object stored in chunks,
/// which a non-owner never keeps). A replica is filled by a full request instead.
pub(crate) fn owned_elsewhere(cluster: Option<&Arc<Cluster>>, ctx: &RequestContext) -> bool {
    let Some(cluster) = cluster else {
        return false;
    };
    !ctx.hops.peer && matches!(cluster.route(hash::key(&ctx.key)), Route::Peer(_))
}

/// The owner `failed` could not be reached: its next holder, if there is one to try.
fn next_holder(failed: NodeHop) -> Upstream {
    let mut to = failed.to;
    to.holders_failed.push(failed.peer.id.clone());
    // The next node in the key's order that this fill has not tried: live ones only, and the
    // one that failed left out even when it still counts as live (it answers probes but did
    // not answer this request).
    let next = match to.cluster.route_skipping(to.key_hash, &to.holders_failed) {
        Route::Peer(peer) if to.holders_failed.len() < to.cluster.replicas => peer,
        _ => return to_shield(to),
    };
    Upstream::Owner(NodeHop {
        peer: next,
        hops: failed.hops,
        keep_replica: failed.keep_replica,
        to,
    })
}

/// This node owns the key: the site's shield tier if it has one and the request has not been
/// through a shield yet, else the origin.
fn to_shield(to: Target) -> Upstream {
    let Some(tier) = to.shield.clone() else {
        return Upstream::Origin;
    };
    if to.taken.shield {
        // A shield sent it here (tiers that shield each other): one shield hop at most.
        to.cluster.count_hop_limit();
        return Upstream::Origin;
    }
    let picked = tier.pick(to.key_hash).filter(|_| to.shields_failed < 2);
    let Some(peer) = picked else {
        // Every shield node is down, or two could not be reached: the origin, counted.
        tier.fallbacks.inc();
        return Upstream::Origin;
    };
    if peer.id == to.cluster.me {
        // Listed as its own shield under another address (the config refuses its own).
        return Upstream::Origin;
    }
    Upstream::Shield(NodeHop {
        peer,
        hops: Hops {
            shield: true,
            ..to.taken
        },
        keep_replica: false,
        to,
    })
}

impl Upstream {
    /// Where the fill goes after the node it asked could not be reached (that node has been
    /// ejected by then). After the owner, with `replicas > 1`, the next live node of the key's
    /// preference order, its next holder, which serves it from its copy (up to `replicas - 1`
    /// of them); then, or with one replica, the shield tier or the origin, and the response is
    /// stored here: with the owner gone, this node or its successor owns the key. After a
    /// shield node, the next live one of the tier, once; then the origin, counted.
    pub(crate) fn unreachable(&mut self) {
        *self = match std::mem::replace(self, Upstream::Origin) {
            Upstream::Origin => Upstream::Origin,
            Upstream::Owner(owner) => next_holder(owner),
            Upstream::Handoff(owner) => to_shield(owner.to),
            Upstream::Shield(failed) => to_shield(Target {
                shields_failed: failed.to.shields_failed + 1,
                ..failed.to
            }),
        };
    }

    /// Whether a storable response is stored on this node.
    pub(crate) fn stores_here(&self) -> bool {
        match self {
            Upstream::Origin | Upstream::Shield(_) | Upstream::Handoff(_) => true,
            Upstream::Owner(hop) => hop.keep_replica,
        }
    }

    /// Whether the response comes from the key's owner (what is stored of it is a replica).
    pub(crate) fn is_owner(&self) -> bool {
        matches!(self, Upstream::Owner(_))
    }

    /// The other node asked, if any.
    pub(crate) fn node_hop(&self) -> Option<&NodeHop> {
        match self {
            Upstream::Origin => None,
            Upstream::Owner(hop) | Upstream::Shield(hop) | Upstream::Handoff(hop) => Some(hop),
        }
    }
}
