//! Front door: client connections, TLS handshakes, responses to clients, configuration reloads
//! and the access log.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::{Registrar, SiteLabel, latency_histogram, names};

/// Status classes: the `class` label of `outpost_responses_total`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    site: String,
    class: &'static str,
}

/// The node-wide front-door handles (public fields of [`super::Metrics`]).
pub(crate) struct FrontDoor {
    pub(crate) connections_open: Gauge,
    pub(crate) connections_accepted: Counter,
    pub(crate) connections_refused: Counter,
    /// Of those, refused because their address held `max_connections_per_client` already.
    pub(crate) client_limit_refusals: Counter,
    pub(crate) tls_handshakes: Counter,
    pub(crate) tls_handshake_failures: Counter,
    pub(crate) config_reloads: Counter,
    pub(crate) config_reload_failures: Counter,
    pub(crate) access_log_dropped: Counter,
    /// Lines a `GET /log` follower lost because it read too slowly.
    pub(crate) log_follower_lost: Counter,
}

impl FrontDoor {
    pub(super) fn register(reg: &mut Registrar<'_>) -> Self {
        Self {
            connections_open: reg.register(
                names::CONNECTIONS_OPEN,
                "Client connections open",
                Gauge::default(),
            ),
            connections_accepted: reg.register(
                names::CONNECTIONS_ACCEPTED,
                "Client connections accepted",
                Counter::default(),
            ),
            connections_refused: reg.register(
                names::CONNECTIONS_REFUSED,
                "Client connections closed at once: listen.max_connections or max_connections_per_client reached",
                Counter::default(),
            ),
            client_limit_refusals: reg.register(
                names::CLIENT_LIMIT_REFUSALS,
                "Client connections closed at once because their address held listen.max_connections_per_client",
                Counter::default(),
            ),
            tls_handshakes: reg.register(
                names::TLS_HANDSHAKES,
                "TLS handshakes attempted",
                Counter::default(),
            ),
            tls_handshake_failures: reg.register(
                names::TLS_HANDSHAKE_FAILURES,
                "TLS handshakes that failed or timed out",
                Counter::default(),
            ),
            config_reloads: reg.register(
                names::CONFIG_RELOADS,
                "Configuration reloads applied (SIGHUP or POST /reload)",
                Counter::default(),
            ),
            config_reload_failures: reg.register(
                names::CONFIG_RELOAD_FAILURES,
                "Configuration reloads refused (invalid file, unbindable listener, bad certificate)",
                Counter::default(),
            ),
            access_log_dropped: reg.register(
                names::ACCESS_LOG_DROPPED,
                "Access log lines dropped because the log writer fell behind",
                Counter::default(),
            ),
            log_follower_lost: reg.register(
                names::LOG_FOLLOWER_LOST,
                "Access log lines a GET /log follower lost because it read too slowly",
                Counter::default(),
            ),
        }
    }
}

/// The per-site response families.
pub(super) struct ResponseFamilies {
    responses: Family<ClassLabels, Counter>,
    duration: Family<SiteLabel, Histogram>,
    bytes: Family<SiteLabel, Counter>,
}

impl ResponseFamilies {
    pub(super) fn register(reg: &mut Registrar<'_>) -> Self {
        Self {
            responses: reg.register(
                names::RESPONSES,
                "Responses sent to clients by site and status class",
                Family::default(),
            ),
            duration: reg.register(
                names::REQUEST_DURATION,
                "Time from a client request to its response headers",
                Family::new_with_constructor(latency_histogram as fn() -> _),
            ),
            bytes: reg.register(
                names::RESPONSE_BYTES,
                "Body bytes announced to clients (Content-Length of responses that have one)",
                Family::default(),
            ),
        }
    }

    pub(super) fn site(&self, site: &str) -> SiteResponses {
        let label = SiteLabel {
            site: site.to_owned(),
        };
        SiteResponses {
            classes: CLASSES.map(|class| {
                self.responses.get_or_create_owned(&ClassLabels {
                    site: site.to_owned(),
                    class,
                })
            }),
            duration: self.duration.get_or_create_owned(&label),
            bytes: self.bytes.get_or_create_owned(&label),
        }
    }
}

/// One site's responses to clients.
#[derive(Clone, Debug)]
pub(super) struct SiteResponses {
    classes: [Counter; CLASSES.len()],
    duration: Histogram,
    bytes: Counter,
}

impl SiteResponses {
    pub(super) fn response(&self, status: http::StatusCode, seconds: f64, bytes: Option<u64>) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.classes[class].inc();
        self.duration.observe(seconds);
        if let Some(bytes) = bytes {
            self.bytes.inc_by(bytes);
        }
    }
}
