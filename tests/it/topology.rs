//! One caching behaviour, every placement. Each case of a [`both_ways!`] table runs against
//! one node, and through a node of a cluster that does not hold the object, so every request
//! crosses the peer hop to the owner: with one holder per object (3 nodes), with `replicas =
//! 2` (3 nodes) and `replicas = 3` (4 nodes), where the owner pushes what it stores to the
//! other holders, and with `replicate = "all"`, where the asking node keeps its own copy. A
//! case is an `async fn(Ctx)`: it programs the origin, sends requests through the [`Ctx`], and
//! asserts what the client sees (status, body bytes, headers) and exactly what the origin was
//! asked. The assertions are the same code every way, so a placement that changes what a
//! client or the origin sees fails them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Method;

use crate::cluster::TestCluster;
use crate::harness::*;

/// Where a case's requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One node, which owns every key.
    Single,
    /// A 3-node cluster without replicas, each request sent to a node that does not own its
    /// path.
    ThroughNonOwner,
    /// A cluster where each object has `holders` holders (`replicas`), each request sent to a
    /// node that holds none of its path's.
    Replicas { nodes: usize, holders: usize },
    /// A 3-node cluster with `replicate = "all"`: the node asked keeps a copy of what it
    /// fetched through the owner, and may answer later requests from it.
    ReplicateAll,
}

impl Topology {
    /// Every placement a case runs through besides one node.
    pub const CLUSTERED: [Topology; 4] = [
        Topology::ThroughNonOwner,
        Topology::Replicas {
            nodes: 3,
            holders: 2,
        },
        Topology::Replicas {
            nodes: 4,
            holders: 3,
        },
        Topology::ReplicateAll,
    ];

    fn cluster(self) -> Option<(usize, String, usize)> {
        match self {
            Topology::Single => None,
            Topology::ThroughNonOwner => Some((3, "replicate = \"none\"".to_owned(), 1)),
            Topology::Replicas { nodes, holders } => Some((
                nodes,
                format!("replicate = \"none\"\nreplicas = {holders}"),
                holders,
            )),
            Topology::ReplicateAll => Some((3, "replicate = \"all\"".to_owned(), 1)),
        }
    }
}

type Answer = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

enum Nodes {
    Single(Node),
    Cluster(TestCluster),
}

/// What a case gets: the origin, and requests sent the way its topology says.
pub struct Ctx {
    pub topology: Topology,
    pub origin: Origin,
    answer: Arc<Mutex<Option<Answer>>>,
    nodes: Nodes,
    /// The node each path is sent through, and the caches it crosses (owner first).
    routes: tokio::sync::Mutex<HashMap<String, (usize, Vec<String>)>>,
}

impl Ctx {
    /// `site_extra` goes into the site's table (more keys, or its subtables).
    pub async fn start(topology: Topology, site_extra: &str) -> Self {
        let answer: Arc<Mutex<Option<Answer>>> = Arc::default();
        let reply = answer.clone();
        let origin = Origin::start(move |seen, n| {
            let answer = reply.lock().expect("origin answer").clone();
            answer.expect("the case sets the origin's answers first")(seen, n)
        })
        .await;
        let nodes = match topology.cluster() {
            None => {
                // The site table comes last: what follows it is in it.
                let toml = site_config(&origin.url(), "") + site_extra;
                Nodes::Single(Node::start(&toml).await)
            }
            Some((n, cluster_extra, _)) => Nodes::Cluster(
                TestCluster::start_with_site(n, &origin, &cluster_extra, site_extra).await,
            ),
        };
        Self {
            topology,
            origin,
            answer,
            nodes,
            routes: tokio::sync::Mutex::default(),
        }
    }

    /// How the origin answers from now on: `answer(request, n)` for the n-th request
    /// (1-based) of its path.
    pub fn origin_answers(&self, answer: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) {
        *self.answer.lock().expect("origin answer") = Some(Arc::new(answer));
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(Method::GET, path, headers, Bytes::new()).await
    }

    pub async fn head(&self, path: &str) -> Resp {
        self.send(Method::HEAD, path, &[], Bytes::new()).await
    }

    /// Any request for `path` on host `example.test`. Through a non-owner, a GET or HEAD
    /// must have crossed the hop: the owner's `Cache-Status` member first, then the edge's
    /// (with `replicate = "all"`, or the edge's alone when it answered from its copy).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Resp {
        let (node, caches) = self.route(path).await;
        let cacheable = method == Method::GET || method == Method::HEAD;
        let r = send(node.http, method, path, "example.test", headers, body).await;
        let own_copy = self.topology == Topology::ReplicateAll && names(&r) == caches[1..];
        if cacheable && self.topology != Topology::Single && !own_copy {
            assert_eq!(
                names(&r),
                caches,
                "{path} did not cross the hop: {}",
                r.cache_status()
            );
        }
        // What nodes tell each other stays between them.
        for internal in [
            "outpost-fetched",
            "outpost-hop",
            "outpost-signature",
            "outpost-chunk",
        ] {
            assert!(
                r.headers.get(internal).is_none(),
                "{path}: the client got {internal}: {:?}",
                r.headers
            );
        }
        r
    }

    /// `POST /purge` with `body` on the admin listener of the node `path` is sent through.
    pub async fn purge(&self, path: &str, body: &str) -> Resp {
        let (node, _) = self.route(path).await;
        crate::util::purge(node.admin, Some("secret"), body).await
    }

    /// The caches a response for `path` crosses, the one holding the object first.
    pub async fn caches(&self, path: &str) -> Vec<String> {
        self.route(path).await.1
    }

    /// The `Cache-Status` member of the cache that holds the object (the owner through a
    /// non-owner), without its name: `hit; ttl=59`. The same both ways.
    pub fn holder(&self, r: &Resp) -> String {
        let status = r.cache_status();
        let first = status.split(',').next().unwrap_or_default().trim();
        match first.split_once(';') {
            Some((_, rest)) => rest.trim().to_owned(),
            None => String::new(),
        }
    }

    /// Requests the origin received for `path` with `method`.
    pub fn count(&self, method: Method, path: &str) -> usize {
        self.origin
            .requests()
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .count()
    }

    /// The node that serves `path` and the caches its responses cross: a node that holds
    /// none of its copies (its owner's, nor a replica's).
    async fn route(&self, path: &str) -> (&Node, Vec<String>) {
        let cluster = match &self.nodes {
            Nodes::Single(node) => return (node, vec!["edge-test".to_owned()]),
            Nodes::Cluster(cluster) => cluster,
        };
        let holders = self.topology.cluster().map_or(1, |(_, _, h)| h);
        let mut routes = self.routes.lock().await;
        if !routes.contains_key(path) {
            let (owner, preference) = cluster.preference(0, path).await;
            let edge = (0..cluster.len())
                .find(|i| !preference[..holders].contains(&cluster.address(*i)))
                .expect("a node that holds nothing of the path");
            routes.insert(path.to_owned(), (edge, vec![owner, format!("node-{edge}")]));
        }
        let (edge, caches) = routes[path].clone();
        (cluster.node(edge), caches)
    }
}

/// Names in `Cache-Status`, in order (closest to the origin first).
pub fn names(r: &Resp) -> Vec<String> {
    r.cache_status()
        .split(',')
        .filter_map(|member| member.split(';').next())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect()
}

/// The table: `both_ways! { case, other_case with "site key = 1", ... }` makes, for each
/// `async fn case(ctx: Ctx)`, a module `case` with the tests `on_one_node`,
/// `through_a_non_owner`, `with_two_replicas`, `with_three_replicas` and `replicate_all`.
/// `with` adds keys to the site's table for that case.
macro_rules! both_ways {
    ($($case:ident $(with $site:literal)?),* $(,)?) => {$(
        mod $case {
            use $crate::topology::{Ctx, Topology};

            async fn run(topology: Topology) {
                super::$case(Ctx::start(topology, concat!("" $(, $site)?)).await).await;
            }

            #[tokio::test]
            async fn on_one_node() {
                run(Topology::Single).await;
            }

            #[tokio::test]
            async fn through_a_non_owner() {
                run(Topology::CLUSTERED[0]).await;
            }

            #[tokio::test]
            async fn with_two_replicas() {
                run(Topology::CLUSTERED[1]).await;
            }

            #[tokio::test]
            async fn with_three_replicas() {
                run(Topology::CLUSTERED[2]).await;
            }

            #[tokio::test]
            async fn replicate_all() {
                run(Topology::CLUSTERED[3]).await;
            }
        }
    )*};
}
pub(crate) use both_ways;
