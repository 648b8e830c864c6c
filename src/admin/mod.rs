//! The admin listener, separate from client traffic. Endpoints:
//!
//! | method | path       | auth   | what |
//! |--------|------------|--------|------|
//! | GET    | `/metrics` | none   | Prometheus metrics: OpenMetrics if the scraper accepts it, else text 0.0.4 |
//! | GET    | `/healthz` | none   | 200 while the process runs |
//! | GET    | `/readyz`  | none   | 200 when serving, 503 while draining or before the first probe of every peer |
//! | POST   | `/purge`   | bearer | `{"urls": [..], "tags": [..], "soft": false}`: remove (or, soft, mark stale) every variant of each URL and every entry with each tag, here, on every cluster member, the shield tier and every other region; totals per URL and tag, each node's answer, and the nodes that did not confirm |
//! | POST   | `/reload`  | bearer | re-read the configuration file, as SIGHUP does: `{"reloaded": true}`, or 422 with the reason (the running configuration stays) |
//! | GET    | `/log`     | bearer | the access log as NDJSON while the client stays, filtered by `status=5xx`, `cache=miss`, `host=`, `path_prefix=`, `site=`; a follower that falls behind gets `{"lost": n}` |
//! | GET    | `/cluster` | none   | this node, the members with their health and ring shares, when the membership last changed |
//! | GET    | `/cluster/owner?url=…` | none | the cache key of an absolute URL and the node that owns it |
//!
//! Mutations need `Authorization: Bearer <[admin] token>`; without a configured token they are
//! refused, so an admin port exposed by mistake cannot wipe the cache.

use std::sync::Arc;

use crate::service::ClientBody;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};

use crate::cluster::broadcast::{Delivery, Reach};
use crate::cluster::{Cluster, Group, Route};
use crate::observability::access::{AccessLog, Filter};
use crate::observability::metrics::Metrics;
use crate::proxy::Proxy;
use crate::proxy::purge::PurgeRequest;
use crate::service::{ClientInfo, Handler, ProxyBody, json, text};

/// Largest purge request body accepted.
const MAX_PURGE_BODY: usize = 1 << 20;

/// The admin API of a running node: reads the node's current state on every request, so it
/// follows reloads (proxy, cluster, token).
pub(crate) struct Admin<N> {
    pub(crate) node: Arc<N>,
}

/// What the admin API needs of the running node. The runtime implements it, so the admin API
/// sits below the runtime that starts it and follows its reloads (proxy, cluster, token).
pub(crate) trait Node: Send + Sync + 'static {
    /// The proxy serving now (replaced whole by a reload).
    fn proxy(&self) -> Arc<Proxy>;
    fn metrics(&self) -> &Arc<Metrics>;
    /// False while draining or starting.
    fn is_ready(&self) -> bool;
    /// True once the node is stopping.
    fn is_draining(&self) -> bool;
    /// The bearer token mutations need; `None` refuses them all.
    fn token(&self) -> Arc<Option<String>>;
    /// Re-read the configuration file; the error says why it was refused.
    fn reload(&self) -> impl std::future::Future<Output = Result<(), String>> + Send;
    /// The access log, which `GET /log` follows.
    fn access_log(&self) -> Arc<AccessLog>;
}

impl<N: Node> Handler for Admin<N> {
    async fn call(
        self: Arc<Self>,
        request: Request<ClientBody>,
        _client: ClientInfo,
    ) -> Response<ProxyBody> {
        let proxy = self.node.proxy();
        let view = View {
            proxy: &proxy,
            cluster: proxy.cluster.as_ref(),
            metrics: self.node.metrics(),
            draining: self.node.is_draining(),
        };
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/metrics") => view.metrics_page(&request).await,
            (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
            (&Method::GET, "/readyz") if self.node.is_ready() => text(StatusCode::OK, "ready\n"),
            (&Method::GET, "/readyz") => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready (starting: peers not probed yet, or draining)\n",
            ),
            (&Method::GET, "/log") => match self.authorize(&request) {
                Ok(()) => follow_log(&self.node.access_log(), view.metrics, request.uri().query()),
                Err(refusal) => refusal.response(),
            },
            (&Method::GET, "/cluster") => view.cluster_page(),
            (&Method::GET, "/cluster/owner") => view.owner(request.uri().query()),
            (&Method::POST, "/purge") => match self.authorize(&request) {
                Ok(()) => view.purge(request).await,
                Err(refusal) => refusal.response(),
            },
            (&Method::POST, "/reload") => match self.authorize(&request) {
                Ok(()) => match self.node.reload().await {
                    Ok(()) => json(StatusCode::OK, &serde_json::json!({ "reloaded": true })),
                    Err(e) => json(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &serde_json::json!({ "reloaded": false, "error": e.to_string() }),
                    ),
                },
                Err(refusal) => refusal.response(),
            },
            (
                _,
                "/metrics" | "/healthz" | "/readyz" | "/purge" | "/reload" | "/cluster"
                | "/cluster/owner" | "/log",
            ) => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

/// One admin request's view of the node.
struct View<'a> {
    proxy: &'a Arc<Proxy>,
    cluster: Option<&'a Arc<Cluster>>,
    metrics: &'a Arc<Metrics>,
    /// True once the node is stopping.
    draining: bool,
}

impl<N: Node> Admin<N> {
    fn authorize(&self, request: &Request<ClientBody>) -> Result<(), Refusal> {
        let token = self.node.token();
        let Some(token) = token.as_deref() else {
            return Err(Refusal::NoToken);
        };
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            Some(p) if constant_time_eq(p.trim().as_bytes(), token.as_bytes()) => Ok(()),
            _ => Err(Refusal::BadToken),
        }
    }
}

impl View<'_> {
    async fn metrics_page(&self, request: &Request<ClientBody>) -> Response<ProxyBody> {
        let store = self.proxy.store();
        store.run_pending_tasks().await;
        self.metrics
            .store
            .cache_bytes
            .set(gauge(store.weighted_size()));
        self.metrics
            .store
            .cache_entries
            .set(gauge(store.entry_count()));
        let (owner, replica) = store.role_bytes();
        self.metrics.store.set_role_bytes(owner, replica);
        self.proxy.purges.observe_lease();
        let openmetrics = request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/openmetrics-text"));
        let (body, content_type) = if openmetrics {
            (
                self.metrics.encode_openmetrics(),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        } else {
            (
                self.metrics.encode_prometheus(),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        };
        let mut response = Response::new(ProxyBody::full(Bytes::from(body)));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    }

    async fn purge(&self, request: Request<ClientBody>) -> Response<ProxyBody> {
        let body = match Limited::new(request.into_body(), MAX_PURGE_BODY)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "purge body too large or broken\n",
                );
            }
        };
        let purge: PurgeRequest = match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({ "error": e.to_string() }),
                );
            }
        };
        if purge.is_empty() {
            let error = "give \"urls\" or \"tags\" (a list each) to purge";
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "error": error }),
            );
        }
        let (here, delivered) = self.proxy.purge_everywhere(&purge).await;
        let Some(cluster) = self.cluster else {
            return json(StatusCode::OK, &here);
        };
        json(
            StatusCode::OK,
            &purge_answer(cluster, &purge, here, delivered),
        )
    }

    /// `GET /cluster`: members, health, ring share, last change.
    fn cluster_page(&self) -> Response<ProxyBody> {
        let Some(cluster) = self.cluster else {
            return json(
                StatusCode::OK,
                &serde_json::json!({
                    "enabled": false,
                    "node": self.proxy.node_name(),
                    "region": self.proxy.region(),
                }),
            );
        };
        let view = cluster.view();
        let members: Vec<_> = view
            .ring
            .shares()
            .into_iter()
            .map(|(id, share)| match view.peers.get(id) {
                Some(peer) => serde_json::json!({
                    "address": id.0,
                    "name": peer.name(),
                    "self": false,
                    "alive": peer.is_alive(),
                    "leaving": peer.is_leaving(),
                    "share": share,
                    "last_change": httpdate::fmt_http_date(peer.last_change()),
                }),
                // This node, with the keys of every other member: it serves while it is
                // alive, and leaves when it drains.
                None => serde_json::json!({
                    "address": id.0,
                    "name": cluster.name,
                    "self": true,
                    "alive": true,
                    "leaving": self.draining,
                    "share": share,
                    "last_change": httpdate::fmt_http_date(view.changed),
                }),
            })
            .collect();
        // Each site's shield tier: its nodes, alive or ejected.
        let shields: serde_json::Map<String, serde_json::Value> = self
            .proxy
            .sites()
            .iter()
            .filter_map(|site| {
                let tier = site.shield.as_ref()?;
                let nodes: Vec<_> = tier
                    .nodes()
                    .map(|node| {
                        serde_json::json!({
                            "address": node.id.0,
                            "name": node.name(),
                            "alive": node.is_alive(),
                            "last_change": httpdate::fmt_http_date(node.last_change()),
                        })
                    })
                    .collect();
                Some((site.name.clone(), serde_json::Value::from(nodes)))
            })
            .collect();
        json(
            StatusCode::OK,
            &serde_json::json!({
                "enabled": true,
                "node": cluster.name,
                "region": self.proxy.region(),
                "shields": shields,
                "advertise": cluster.me.0,
                "replicate": format!("{:?}", cluster.replicate).to_lowercase(),
                "membership_changed": httpdate::fmt_http_date(view.changed),
                "members": members,
            }),
        )
    }

    /// `GET /cluster/owner?url=<absolute url>`: which node owns the URL's cache key now.
    fn owner(&self, query: Option<&str>) -> Response<ProxyBody> {
        let url = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("url="))
            .map(percent_decode);
        let Some(url) = url else {
            let error = "give the object as ?url=<absolute URL>";
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "error": error }),
            );
        };
        let key = match self.proxy.key_of(&url) {
            Ok(key) => key,
            Err(e) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({ "error": e.to_string() }),
                );
            }
        };
        let Some(cluster) = self.cluster else {
            // The keys of a cluster's answer: no cluster address, no other node to prefer.
            let name = self.proxy.node_name();
            return json(
                StatusCode::OK,
                &serde_json::json!({
                    "owner": name,
                    "address": null,
                    "self": true,
                    "key": key,
                    "preference": [],
                }),
            );
        };
        let hash = crate::hash::key(&key);
        let view = cluster.view();
        let preference: Vec<&str> = view
            .ring
            .preference(hash, view.ring.len())
            .into_iter()
            .map(|id| id.0.as_str())
            .collect();
        let (owner, address) = match cluster.route(hash) {
            Route::Local => (cluster.name.clone(), cluster.me.0.clone()),
            Route::Peer(peer) => (
                peer.name().unwrap_or_else(|| peer.id.0.clone()),
                peer.id.0.clone(),
            ),
        };
        json(
            StatusCode::OK,
            &serde_json::json!({
                "owner": owner,
                "address": address,
                "self": address == cluster.me.0,
                "key": key,
                "preference": preference,
            }),
        )
    }
}

/// The answer to `POST /purge` in a cluster: totals per URL and tag across every node that
/// answered, each node's own answer (members under `nodes`, this one first; the shield tier
/// under `shields`; other regions under `regions`), and the nodes that did not confirm.
fn purge_answer(
    cluster: &Cluster,
    purge: &PurgeRequest,
    here: serde_json::Value,
    delivered: Vec<Delivery>,
) -> serde_json::Value {
    let mut total = here["purged"].as_u64().unwrap_or(0);
    let mut urls: Vec<serde_json::Value> = here["urls"].as_array().cloned().unwrap_or_default();
    let mut tags: Vec<serde_json::Value> = here["tags"].as_array().cloned().unwrap_or_default();
    let mut nodes =
        vec![serde_json::json!({ "node": cluster.name, "address": cluster.me.0, "result": here })];
    let mut shields = Vec::new();
    let mut regions = serde_json::Map::new();
    let mut unconfirmed = Vec::new();
    for delivery in delivered {
        let node = delivery
            .peer
            .name()
            .unwrap_or_else(|| delivery.peer.id.0.clone());
        let mut entry = serde_json::json!({ "node": node, "address": delivery.peer.id.0 });
        match delivery.answer {
            Ok(value) => {
                total += value["purged"].as_u64().unwrap_or(0);
                merge_counts(&mut urls, &value["urls"], "url");
                merge_counts(&mut tags, &value["tags"], "tag");
                entry["result"] = value;
            }
            Err(error) => {
                entry["error"] = error.into();
                unconfirmed.push(serde_json::json!({
                    "node": entry["node"],
                    "address": entry["address"],
                    "timed_out": delivery.timed_out,
                }));
            }
        }
        match delivery.reach {
            Reach::Member => nodes.push(entry),
            Reach::Remote(Group::Shield) => shields.push(entry),
            Reach::Remote(Group::Region(name)) => {
                let list = regions.entry(name).or_insert_with(|| serde_json::json!([]));
                if let Some(list) = list.as_array_mut() {
                    list.push(entry);
                }
            }
        }
    }
    // A region none of whose nodes answered is named.
    let unreachable: Vec<&String> = regions
        .iter()
        .filter(|(_, list)| {
            list.as_array()
                .is_some_and(|l| l.iter().all(|n| n.get("error").is_some()))
        })
        .map(|(name, _)| name)
        .collect();
    let mut answer = serde_json::json!({
        "id": nodes[0]["result"]["id"],
        "purged": total,
        "soft": purge.soft,
        "urls": urls,
        "tags": tags,
        "nodes": nodes,
        "complete": unconfirmed.is_empty(),
        "unconfirmed": unconfirmed,
    });
    if !shields.is_empty() {
        answer["shields"] = shields.into();
    }
    if !regions.is_empty() {
        answer["unreachable_regions"] = serde_json::json!(unreachable);
        answer["regions"] = regions.into();
    }
    answer
}

/// Add another node's per-URL (`"purged": bool`) or per-tag (`"purged": n`) answers to the
/// totals, item by item (every node answers in the request's order).
fn merge_counts(totals: &mut [serde_json::Value], theirs: &serde_json::Value, name: &str) {
    let Some(theirs) = theirs.as_array() else {
        return;
    };
    for (total, their) in totals.iter_mut().zip(theirs) {
        if total[name] != their[name] {
            continue;
        }
        match (&total["purged"], &their["purged"]) {
            (serde_json::Value::Bool(a), serde_json::Value::Bool(b)) => {
                total["purged"] = (*a || *b).into();
            }
            (a, b) if a.is_u64() && b.is_u64() => {
                total["purged"] = (a.as_u64().unwrap_or(0) + b.as_u64().unwrap_or(0)).into();
            }
            _ => {}
        }
    }
}

/// `GET /log`: every request from now on as a JSON line, those the query's filter keeps,
/// until the client goes. Lines a slow client missed are said (`{"lost": n}`) and counted.
fn follow_log(
    access: &AccessLog,
    metrics: &Arc<Metrics>,
    query: Option<&str>,
) -> Response<ProxyBody> {
    let filter = match Filter::parse(query) {
        Ok(filter) => filter,
        Err(error) => {
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "error": error }),
            );
        }
    };
    let followed = access.follow();
    let lost = metrics.front.log_follower_lost.clone();
    let lines = futures_util::stream::unfold(followed, move |mut followed| {
        let filter = filter.clone();
        let lost = lost.clone();
        async move {
            loop {
                match followed.recv().await {
                    Ok(record) if filter.keeps(&record) => {
                        return Some((Ok(Bytes::from(record.line.clone())), followed));
                    }
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        lost.inc_by(n);
                        let line = format!("{{\"lost\": {n}}}\n");
                        return Some((Ok(Bytes::from(line)), followed));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    let mut response = Response::new(ProxyBody::Stream {
        chunks: Box::pin(lines),
        len: None,
    });
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

/// `%XX` escapes of a query value (the URL given to `/cluster/owner`).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a mutation was refused.
enum Refusal {
    NoToken,
    BadToken,
}

impl Refusal {
    fn response(self) -> Response<ProxyBody> {
        match self {
            Self::NoToken => text(
                StatusCode::FORBIDDEN,
                "mutations are disabled: no [admin] token is configured\n",
            ),
            Self::BadToken => {
                let mut response =
                    text(StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n");
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
        }
    }
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Compare secrets without leaking, through timing, how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
