//! Phase 1, request: find the site by `Host` / `:authority` (unknown hosts are refused, so
//! the node is never an open proxy), compute the cache key, read request Cache-Control, and
//! build the header set sent to the origin.

use std::collections::HashMap;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Version};

use super::headers::{append_list, strip_hop_by_hop};
use crate::cache::chunk::ChunkRequest;
use crate::cache::control::RequestDirectives;
use crate::cache::freshness::HeuristicPolicy;
use crate::cache::key::KeyRules;
use crate::cache::policy::{KEY_FIELD, Policy, set_key_field};
use crate::cache::storable::SetCookie;
use crate::cluster::Cluster;
use crate::cluster::hop::Hops;
use crate::cluster::peer::Reads;
use crate::cluster::shield::ShieldTier;
use crate::config::{DnsConfig, HostPattern, SiteConfig};
use crate::error::ProxyError;
use crate::observability::metrics::{Metrics, SiteMetrics};
use crate::origin::upload::UploadLimits;
use crate::origin::{Origin, OriginSetupError};
use crate::service::{AmbiguousFraming, ClientInfo};

pub(crate) struct Site {
    pub(crate) name: String,
    pub(crate) origin: Origin,
    pub(crate) metrics: SiteMetrics,
    pub(crate) policy: Policy,
    pub(crate) key_rules: KeyRules,
    /// Request bodies: the most accepted, what is buffered, how slow they may be.
    pub(crate) upload: UploadLimits,
    /// A HEAD the cache cannot answer goes to the origin as a HEAD, not as a GET fill.
    pub(crate) head_to_origin: bool,
    /// The parent tier a miss this node owns is asked of before the origin.
    pub(crate) shield: Option<Arc<ShieldTier>>,
    /// Edge compression; `None`: off.
    pub(crate) compress: Option<crate::cache::encoding::Rules>,
}

impl Site {
    fn new(
        config: &SiteConfig,
        heuristic: HeuristicPolicy,
        dns: &DnsConfig,
        metrics: &Metrics,
        cluster: Option<&Arc<Cluster>>,
    ) -> Result<Self, OriginSetupError> {
        let cache = &config.cache;
        let rules = &config.cache_key;
        let key_fields = if rules.headers.is_empty() && rules.cookies.is_empty() {
            Vec::new()
        } else {
            vec![KEY_FIELD]
        };
        let grace = |d: std::time::Duration| (!d.is_zero()).then_some(d.as_secs().max(1));
        let policy = Policy {
            own_field: cache.targeted_field.clone(),
            cdn_cache_control: cache.cdn_cache_control,
            surrogate_control: cache.surrogate_control,
            heuristic,
            status_ttl: cache
                .status_ttl
                .iter()
                .map(|(status, ttl)| (*status, ttl.as_secs()))
                .collect(),
            stale_while_revalidate: grace(cache.stale_while_revalidate),
            stale_if_error: grace(cache.stale_if_error),
            stale_when_disconnected: grace(cache.stale_when_disconnected),
            set_cookie: if cache.store_set_cookie {
                SetCookie::StoreWithout
            } else {
                SetCookie::Refuse
            },
            max_variants: cache.max_variants,
            tag_header: cache.tag_header.clone(),
            key_fields,
        };
        Ok(Site {
            name: config.name.clone(),
            origin: Origin::new(&config.origin, dns, &config.name, metrics)?,
            metrics: metrics.site(&config.name),
            policy,
            key_rules: config.cache_key.clone(),
            upload: UploadLimits {
                max: config.max_request_body,
                buffer: config.request_buffering,
                timeout: config.request_body_timeout,
                min_rate: config.request_body_min_rate,
            },
            head_to_origin: cache.head_to_origin,
            compress: config.compress.clone(),
            // Config validation makes sure a site with shields has a cluster (its secret).
            shield: cluster
                .filter(|_| !config.shield.is_empty())
                .map(|cluster| {
                    ShieldTier::start(
                        &config.name,
                        &config.shield,
                        metrics,
                        cluster.client.clone(),
                        cluster.probe_interval,
                        cluster.probe_timeout(),
                    )
                }),
        })
    }

    /// The primary cache key of a request for this site.
    pub(crate) fn key(
        &self,
        scheme: &Scheme,
        host: &str,
        port: Option<u16>,
        path_and_query: &PathAndQuery,
    ) -> String {
        let query = self.key_rules.query(path_and_query.query());
        cache_key(scheme, host, port, path_and_query.path(), query.as_deref())
    }
}

/// Sites by host: exact names in a map, `*.suffix` patterns longest first.
#[derive(Default)]
pub struct Sites {
    exact: HashMap<String, Arc<Site>>,
    suffixes: Vec<(HostPattern, Arc<Site>)>,
    /// Each site once, in configuration order.
    all: Vec<Arc<Site>>,
}

impl Sites {
    /// The sites of a node without a cluster (and so without shields).
    pub fn build(
        configs: &[SiteConfig],
        heuristic: HeuristicPolicy,
        dns: &DnsConfig,
        metrics: &Metrics,
    ) -> Result<Self, OriginSetupError> {
        Self::build_in(configs, heuristic, dns, metrics, None)
    }

    /// The sites of a node in `cluster`, whose client and probe interval their shield tiers
    /// use.
    pub(crate) fn build_in(
        configs: &[SiteConfig],
        heuristic: HeuristicPolicy,
        dns: &DnsConfig,
        metrics: &Metrics,
        cluster: Option<&Arc<Cluster>>,
    ) -> Result<Self, OriginSetupError> {
        let mut sites = Sites::default();
        for config in configs {
            let site = Arc::new(Site::new(config, heuristic, dns, metrics, cluster)?);
            sites.all.push(site.clone());
            for pattern in &config.hosts {
                match pattern {
                    HostPattern::Exact(host) => {
                        sites.exact.insert(host.clone(), site.clone());
                    }
                    HostPattern::Suffix(_) => sites.suffixes.push((pattern.clone(), site.clone())),
                }
            }
        }
        sites.suffixes.sort_by_key(|(pattern, _)| match pattern {
            HostPattern::Exact(name) | HostPattern::Suffix(name) => std::cmp::Reverse(name.len()),
        });
        Ok(sites)
    }

    /// Every site, once each.
    pub(crate) fn all(&self) -> &[Arc<Site>] {
        &self.all
    }

    pub(crate) fn find(&self, host: &str) -> Option<&Arc<Site>> {
        self.exact.get(host).or_else(|| {
            self.suffixes
                .iter()
                .find(|(pattern, _)| pattern.matches(host))
                .map(|(_, site)| site)
        })
    }
}

/// Everything later phases need about the client's request.
pub struct RequestContext {
    pub(crate) site: Arc<Site>,
    pub(crate) method: Method,
    pub(crate) version: Version,
    /// `scheme://host/path?query`: the primary cache key (RFC 9111 §2).
    pub key: String,
    /// The `Host` as the client sent it (port included), forwarded to the origin.
    pub(crate) authority: HeaderValue,
    pub(crate) path_and_query: PathAndQuery,
    pub headers: HeaderMap,
    pub directives: RequestDirectives,
    pub(crate) client: ClientInfo,
    /// The hops it took to reach this node (a verified hop header); none from a client.
    pub(crate) hops: Hops,
    /// A request for one chunk of an object stored in chunks (`key` is then the chunk's):
    /// made by the node serving the object, and on a verified hop.
    pub(crate) chunk: Option<ChunkRequest>,
    /// Who reads the chunks of an object stored in chunks, when another node holds it.
    pub(crate) manifest: Manifest,
    /// How an answer forwarded from another node is read.
    pub(crate) reads: Reads,
}

/// Which node reads an object's chunks when the object's owner is another node: reading
/// them where the client is sends each chunk across one hop (its owner to this node), not two
/// (its owner to the object's owner, then on to this node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Manifest {
    /// A client's GET here: a hop to the object's owner asks for the manifest, and this node
    /// reads the chunks.
    Offer,
    /// A hop whose node asked for the manifest: a chunked object is answered with it.
    Answer,
    /// Neither (a HEAD, a chunk's own request, a retry after a manifest failed): the object's
    /// holder sends its bytes.
    No,
}

impl RequestContext {
    /// Requests whose responses must not be shared with other clients while in flight.
    pub(crate) fn is_private(&self) -> bool {
        self.headers.contains_key(header::AUTHORIZATION) || self.directives.no_store
    }
}

/// RFC 9112 §6.1, §7: message framing, checked before anything reads the body. A head that
/// had Content-Length next to Transfer-Encoding (the listener marks it: hyper drops the
/// length) or applies chunked twice is refused 400; a coding other than chunked, which
/// hyper would pass on still encoded, is refused 501. hyper itself refuses a request whose
/// final coding is not chunked.
pub(crate) fn check_framing(parts: &Parts) -> Result<(), ProxyError> {
    if parts.extensions.get::<AmbiguousFraming>().is_some() {
        return Err(ProxyError::AmbiguousFraming(
            "transfer-encoding with content-length",
        ));
    }
    transfer_codings(&parts.headers)
}

fn transfer_codings(headers: &HeaderMap) -> Result<(), ProxyError> {
    let mut chunked = 0;
    for line in headers.get_all(header::TRANSFER_ENCODING) {
        let line = line.to_str().map_err(|_| ProxyError::TransferCoding)?;
        // RFC 9110 §5.6.1: empty list elements do not count.
        let codings = line
            .split(',')
            .map(|c| c.trim_matches([' ', '\t']))
            .filter(|c| !c.is_empty());
        for coding in codings {
            if !coding.eq_ignore_ascii_case("chunked") {
                return Err(ProxyError::TransferCoding);
            }
            chunked += 1;
        }
    }
    if chunked > 1 {
        return Err(ProxyError::AmbiguousFraming("chunked more than once"));
    }
    Ok(())
}

/// A request refused before it had a site, and its head, for the refusal's log line.
#[derive(Debug)]
pub struct Refused {
    pub error: ProxyError,
    pub parts: Parts,
}

/// Takes the request head by value: its headers move into the context instead of being
/// copied on every request. A refused request gets its head back.
pub fn prepare(
    sites: &Sites,
    parts: Parts,
    client: &ClientInfo,
    node: &str,
    hops: Hops,
) -> Result<RequestContext, Box<Refused>> {
    let (authority, host, port, site) = match site_of(sites, &parts, node, hops) {
        Ok(found) => found,
        Err(error) => return Err(Box::new(Refused { error, parts })),
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let parts_method_is_get = parts.method == Method::GET;
    let mut headers = parts.headers;
    if !site.policy.key_fields.is_empty() {
        let extra = site.key_rules.extra(&headers);
        set_key_field(&mut headers, extra);
    }
    Ok(RequestContext {
        key: site.key(&client.scheme, &host, port, &path_and_query),
        site,
        method: parts.method,
        version: parts.version,
        authority,
        path_and_query,
        directives: RequestDirectives::parse(&headers),
        headers,
        client: client.clone(),
        manifest: if parts_method_is_get {
            Manifest::Offer
        } else {
            Manifest::No
        },
        hops,
        chunk: None,
        reads: Reads::Large,
    })
}

/// The request's authority, host, port and site, or why it has none.
fn site_of(
    sites: &Sites,
    parts: &Parts,
    node: &str,
    hops: Hops,
) -> Result<(HeaderValue, String, Option<u16>, Arc<Site>), ProxyError> {
    // A verified hop passed through a peer (possibly named like this node); the hop itself
    // guarantees it is forwarded at most once.
    if !hops.any() && came_through(node, &parts.headers) {
        return Err(ProxyError::Loop);
    }
    let authority = request_authority(parts).ok_or(ProxyError::MissingHost)?;
    let (host, port) = split_authority(authority.to_str().map_err(|_| ProxyError::MissingHost)?)
        .ok_or(ProxyError::MissingHost)?;
    let site = sites
        .find(&host)
        .ok_or_else(|| ProxyError::UnknownHost(host.clone()))?
        .clone();
    Ok((authority, host, port, site))
}

/// The absolute URI's authority wins over `Host` (RFC 9112 §3.2.2); h2 and h3 carry
/// `:authority`.
pub(crate) fn request_authority(parts: &Parts) -> Option<HeaderValue> {
    match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    }
}

/// Host (lowercase, no trailing dot) and port of an authority; `None` unless the host is
/// made of host characters and the port, if any, of digits. The validated authority is what
/// reaches the origin in `Host` and `Forwarded`, so nothing else can be smuggled in.
pub(crate) fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let authority = authority.trim();
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        // RFC 3986 §3.2.2: an IP literal, then nothing or `:port`. Anything else after the
        // `]` would be forwarded in `Host` while the key named only the literal.
        let (literal, after) = rest.split_once(']')?;
        let ip = |b: u8| b.is_ascii_hexdigit() || matches!(b, b':' | b'.');
        if literal.is_empty() || !literal.bytes().all(ip) {
            return None;
        }
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':')?),
        };
        (&authority[..literal.len() + 2], port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse().ok()?)
        }
        Some(_) => return None,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b':')
        });
    valid.then_some((host, port))
}

/// `scheme://host[:port]/path?query`. The port is part of the key unless it is the scheme's
/// default: the origin sees the client's `Host`, port included, and may answer differently
/// for another port (a redirect naming it, say), so two ports must not share a response.
pub(crate) fn cache_key(
    scheme: &Scheme,
    host: &str,
    port: Option<u16>,
    path: &str,
    query: Option<&str>,
) -> String {
    let default = if *scheme == Scheme::HTTPS { 443 } else { 80 };
    let port = port.filter(|p| *p != default);
    let query_len = query.map_or(0, |q| q.len() + 1);
    let mut key =
        String::with_capacity(scheme.as_str().len() + host.len() + path.len() + query_len + 9);
    key.push_str(scheme.as_str());
    key.push_str("://");
    key.push_str(host);
    if let Some(port) = port {
        key.push(':');
        key.push_str(&port.to_string());
    }
    key.push_str(path);
    if let Some(query) = query {
        key.push('?');
        key.push_str(query);
    }
    key
}

/// Never passed to a fill: client validators are answered by the cache, and a fill is a GET
/// without a body, so the client's framing must not make the origin wait for bytes that never
/// come.
const NOT_FOR_FILLS: [HeaderName; 6] = [
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::CONTENT_LENGTH,
    header::EXPECT,
];

/// What the origin request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forward {
    /// A method passed through as the client sent it.
    Pass,
    /// A fill others may join: it fetches the whole representation, ranges are cut from it.
    SharedFill,
    /// A fill for this client alone (its response cannot be shared or stored): `Range` and
    /// `If-Range` go to the origin, and a 206 comes back through untouched.
    PrivateFill,
}

/// Headers for the origin: the client's, minus hop-by-hop fields, with `Host` kept and `Via`,
/// `X-Forwarded-For`, `X-Forwarded-Proto` and `Forwarded` added (RFC 9110 §7.6.3, RFC 7239).
pub(crate) fn origin_headers(ctx: &RequestContext, node: &str, forward: Forward) -> HeaderMap {
    let mut headers = ctx.headers.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(&KEY_FIELD);
    if forward != Forward::Pass {
        for name in &NOT_FOR_FILLS {
            headers.remove(name);
        }
    }
    if forward == Forward::SharedFill {
        headers.remove(header::RANGE);
        headers.remove(header::IF_RANGE);
    }
    headers.insert(header::HOST, ctx.authority.clone());
    append_list(
        &mut headers,
        header::VIA,
        &format!("{} {node}", via_version(ctx.version)),
    );
    let ip = ctx.client.addr.ip();
    append_list(
        &mut headers,
        HeaderName::from_static("x-forwarded-for"),
        &ip.to_string(),
    );
    let proto = ctx.client.scheme.as_str();
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(if proto == "https" { "https" } else { "http" }),
    );
    let for_value = if ip.is_ipv6() {
        format!("\"[{ip}]\"")
    } else {
        ip.to_string()
    };
    let mut forwarded = format!("for={for_value};proto={proto}");
    if let Ok(host) = ctx.authority.to_str() {
        forwarded.push_str(&format!(";host=\"{host}\""));
    }
    append_list(&mut headers, header::FORWARDED, &forwarded);
    headers
}

fn via_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        Version::HTTP_10 => "1.0",
        _ => "1.1",
    }
}

/// Whether this node already handled the request (its name is in `Via`): an origin that
/// points back at the node would otherwise loop forever.
fn came_through(node: &str, headers: &HeaderMap) -> bool {
    headers
        .get_all(header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|hop| hop.split_whitespace().nth(1) == Some(node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_table() {
        // (Transfer-Encoding lines, marked by the listener, result)
        let cases: &[(&[&str], bool, Result<(), ProxyError>)] = &[
            (&[], false, Ok(())),
            (&["chunked"], false, Ok(())),
            (&["Chunked"], false, Ok(())),
            (&[" chunked ,"], false, Ok(())),
            (&[",", "chunked"], false, Ok(())),
            (&["gzip, chunked"], false, Err(ProxyError::TransferCoding)),
            (&["gzip", "chunked"], false, Err(ProxyError::TransferCoding)),
            (
                &["x-custom, chunked"],
                false,
                Err(ProxyError::TransferCoding),
            ),
            (
                &["chunked;x=1, chunked"],
                false,
                Err(ProxyError::TransferCoding),
            ),
            (
                &["chunked, chunked"],
                false,
                Err(ProxyError::AmbiguousFraming("chunked more than once")),
            ),
            (
                &["chunked", "chunked"],
                false,
                Err(ProxyError::AmbiguousFraming("chunked more than once")),
            ),
            (
                &["chunked"],
                true,
                Err(ProxyError::AmbiguousFraming(
                    "transfer-encoding with content-length",
                )),
            ),
        ];
        for (lines, marked, want) in cases {
            let mut request = http::Request::builder();
            for line in *lines {
                request = request.header(header::TRANSFER_ENCODING, *line);
            }
            let (mut parts, ()) = request.body(()).unwrap().into_parts();
            if *marked {
                parts.extensions.insert(AmbiguousFraming);
            }
            assert_eq!(check_framing(&parts), *want, "{lines:?} {marked}");
        }
        let errors = [
            ProxyError::TransferCoding,
            ProxyError::AmbiguousFraming("x"),
        ];
        for e in errors {
            assert!(e.closes_connection(), "{e}");
        }
        assert!(!ProxyError::MissingHost.closes_connection());
        assert_eq!(ProxyError::TransferCoding.status().as_u16(), 501);
        assert_eq!(ProxyError::AmbiguousFraming("x").status().as_u16(), 400);
    }

    #[test]
    fn hosts_are_normalized() {
        let cases = [
            ("Example.COM", Some("example.com")),
            ("example.com:8080", Some("example.com")),
            ("example.com.", Some("example.com")),
            ("[::1]:8080", Some("[::1]")),
            ("127.0.0.1:80", Some("127.0.0.1")),
            ("", None),
            ("exa mple.com", None),
            ("a/b", None),
            ("[::1", None),
            ("example.com:", None),
            ("example.com:8x", None),
            ("example.com:99999", None),
            ("example.com:\",for=6.6.6.6", None),
            ("[::1]8080", None),
            ("[::1].", None),
            ("[2001:db8::1]-443", None),
            ("[]", None),
            ("[::1]:", None),
            ("[::1]:8080]", None),
            ("[::g]", None),
        ];
        for (input, want) in cases {
            let host = split_authority(input).map(|(host, _)| host);
            assert_eq!(host.as_deref(), want, "{input:?}");
        }
    }

    /// Found by the `vary_key` fuzz target (`fuzz/regressions/vary_key/`): an empty IP literal
    /// followed by a byte that is not `:` was accepted as the host `[]`, and the bytes after
    /// it were forwarded in `Host` but left out of the cache key.
    #[test]
    fn regression_ip_literal_with_trailing_bytes() {
        let input = String::from_utf8_lossy(b"[]\xff");
        assert_eq!(split_authority(&input), None);
        assert_eq!(split_authority("[::1]x"), None);
        assert_eq!(
            split_authority("[::1]:8080"),
            Some(("[::1]".to_owned(), Some(8080)))
        );
    }

    #[test]
    fn key_has_scheme_host_port_path_and_query() {
        let pq = PathAndQuery::from_static("/a/b?x=1");
        let cases = [
            (Scheme::HTTPS, None, "https://example.com/a/b?x=1"),
            (Scheme::HTTPS, Some(443), "https://example.com/a/b?x=1"),
            (Scheme::HTTP, Some(80), "http://example.com/a/b?x=1"),
            (Scheme::HTTP, Some(8080), "http://example.com:8080/a/b?x=1"),
            (Scheme::HTTPS, Some(80), "https://example.com:80/a/b?x=1"),
        ];
        for (scheme, port, want) in cases {
            let key = cache_key(&scheme, "example.com", port, pq.path(), pq.query());
            assert_eq!(key, want);
        }
    }

    #[test]
    fn via_with_our_name_is_a_loop() {
        let mut h = HeaderMap::new();
        h.insert(
            header::VIA,
            HeaderValue::from_static("1.1 other, 1.1 edge-1"),
        );
        assert!(came_through("edge-1", &h));
        assert!(!came_through("edge-2", &h));
    }
}
