//! Origins: requests each site sends to its origin, and per origin server its requests,
//! errors, latency, connections, queue, health and DNS.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::{Registrar, SiteLabel, latency_histogram, names};
use crate::error::OriginFailure;

/// Outcome of one request to an origin: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OriginOutcome {
    Response,
    Connect,
    Timeout,
    Protocol,
}

impl OriginOutcome {
    pub(super) const ALL: [OriginOutcome; 4] =
        [Self::Response, Self::Connect, Self::Timeout, Self::Protocol];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Response => "response",
            Self::Connect => "connect_error",
            Self::Timeout => "timeout",
            Self::Protocol => "protocol_error",
        }
    }

    /// The outcome a failed request counts as.
    pub(crate) fn of(failure: OriginFailure) -> Self {
        match failure {
            OriginFailure::Timeout => Self::Timeout,
            OriginFailure::Connect | OriginFailure::Tls | OriginFailure::Overload => Self::Connect,
            OriginFailure::Reset | OriginFailure::Protocol => Self::Protocol,
        }
    }
}

/// Why a fill that said `stored` in its response's `Cache-Status` stored nothing after all:
/// the `reason` label of `outpost_fills_discarded_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Discard {
    /// The origin's body broke: cut short, reset, or stalled past the timeout.
    BodyFailed,
    /// A body without a length outgrew `max_object` or the fill budget, and streamed.
    TooLarge,
    /// A purge came while it was in flight.
    Purged,
}

impl Discard {
    pub(super) const ALL: [Discard; 3] = [Self::BodyFailed, Self::TooLarge, Self::Purged];

    fn as_str(self) -> &'static str {
        match self {
            Self::BodyFailed => "body-failed",
            Self::TooLarge => "too-large",
            Self::Purged => "purged",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiscardLabels {
    site: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabels {
    site: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    site: String,
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerErrorLabels {
    site: String,
    server: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerStateLabels {
    site: String,
    server: String,
    state: &'static str,
}

/// Handles for one origin server.
#[derive(Clone, Debug)]
pub(crate) struct OriginServerMetrics {
    pub(crate) up: Gauge,
    pub(crate) ejections: Counter,
    /// Requests sent (probes excluded), whatever came of them.
    pub(crate) requests: Counter,
    errors: [Counter; OriginFailure::ALL.len()],
    /// Time to the response head of answered requests.
    pub(crate) duration: Histogram,
    pub(crate) open: Gauge,
    pub(crate) idle: Gauge,
    pub(crate) queued: Gauge,
    pub(crate) addresses: Gauge,
    pub(crate) dns_refreshes: Counter,
    pub(crate) dns_failures: Counter,
}

impl OriginServerMetrics {
    /// One failed request, under the failure's `kind` label.
    pub(crate) fn error(&self, failure: OriginFailure) {
        self.errors[failure as usize].inc();
    }
}

/// The per-site origin families.
pub(super) struct SiteOriginFamilies {
    requests: Family<OriginLabels, Counter>,
    duration: Family<SiteLabel, Histogram>,
    bytes: Family<SiteLabel, Counter>,
    panic: Family<SiteLabel, Gauge>,
    panic_requests: Family<SiteLabel, Counter>,
    discarded: Family<DiscardLabels, Counter>,
}

/// One site's origin handles, for [`super::SiteMetrics`].
pub(super) struct SiteOrigin {
    pub(crate) outcomes: [Counter; OriginOutcome::ALL.len()],
    pub(crate) duration: Histogram,
    pub(crate) bytes: Counter,
    pub(crate) panic: Gauge,
    pub(crate) panic_requests: Counter,
    pub(crate) discarded: [Counter; Discard::ALL.len()],
}

impl SiteOriginFamilies {
    pub(super) fn register(reg: &mut Registrar<'_>) -> Self {
        Self {
            requests: reg.register(
                names::ORIGIN_REQUESTS,
                "Requests sent to origins by site and outcome",
                Family::default(),
            ),
            duration: reg.register(
                names::ORIGIN_DURATION,
                "Time from sending a request to an origin to its response headers",
                Family::new_with_constructor(latency_histogram as fn() -> _),
            ),
            bytes: reg.register(
                names::ORIGIN_BYTES,
                "Body bytes received from origins (and owner peers) by fills",
                Family::default(),
            ),
            panic: reg.register(
                names::ORIGIN_PANIC,
                "1 while every server of a site's origin is out of rotation and requests go to all of them (panic mode)",
                Family::default(),
            ),
            panic_requests: reg.register(
                names::ORIGIN_PANIC_REQUESTS,
                "Requests sent to an origin in panic mode (every server out of rotation)",
                Family::default(),
            ),
            discarded: reg.register(
                names::FILLS_DISCARDED,
                "Fills whose response said stored in Cache-Status (sent before the body) that stored nothing: the body broke, outgrew the limits, or was purged",
                Family::default(),
            ),
        }
    }

    pub(super) fn site(&self, site: &str) -> SiteOrigin {
        let label = SiteLabel {
            site: site.to_owned(),
        };
        SiteOrigin {
            outcomes: OriginOutcome::ALL.map(|o| {
                self.requests.get_or_create_owned(&OriginLabels {
                    site: site.to_owned(),
                    outcome: o.as_str(),
                })
            }),
            duration: self.duration.get_or_create_owned(&label),
            bytes: self.bytes.get_or_create_owned(&label),
            panic: self.panic.get_or_create_owned(&label),
            panic_requests: self.panic_requests.get_or_create_owned(&label),
            discarded: Discard::ALL.map(|reason| {
                self.discarded.get_or_create_owned(&DiscardLabels {
                    site: site.to_owned(),
                    reason: reason.as_str(),
                })
            }),
        }
    }
}

/// The per-origin-server families.
pub(super) struct ServerFamilies {
    up: Family<ServerLabels, Gauge>,
    ejections: Family<ServerLabels, Counter>,
    requests: Family<ServerLabels, Counter>,
    errors: Family<ServerErrorLabels, Counter>,
    duration: Family<ServerLabels, Histogram>,
    connections: Family<ServerStateLabels, Gauge>,
    queued: Family<ServerLabels, Gauge>,
    addresses: Family<ServerLabels, Gauge>,
    dns_refreshes: Family<ServerLabels, Counter>,
    dns_failures: Family<ServerLabels, Counter>,
}

impl ServerFamilies {
    pub(super) fn register(reg: &mut Registrar<'_>) -> Self {
        Self {
            up: reg.register(
                names::ORIGIN_SERVER_UP,
                "1 while an origin server is in rotation, 0 while failures keep it out",
                Family::default(),
            ),
            ejections: reg.register(
                names::ORIGIN_EJECTIONS,
                "Times an origin server was taken out of rotation after consecutive failures",
                Family::default(),
            ),
            requests: reg.register(
                names::ORIGIN_SERVER_REQUESTS,
                "Requests sent to an origin server (health probes excluded)",
                Family::default(),
            ),
            errors: reg.register(
                names::ORIGIN_SERVER_ERRORS,
                "Requests to an origin server that failed, by kind (connect, tls, timeout, reset, protocol, overload)",
                Family::default(),
            ),
            duration: reg.register(
                names::ORIGIN_SERVER_DURATION,
                "Time from sending a request to an origin server to its response headers",
                Family::new_with_constructor(latency_histogram as fn() -> _),
            ),
            connections: reg.register(
                names::ORIGIN_SERVER_CONNECTIONS,
                "Connections to an origin server: open, and idle among them",
                Family::default(),
            ),
            queued: reg.register(
                names::ORIGIN_SERVER_QUEUED,
                "Requests waiting for a free connection to an origin server (max_connections reached)",
                Family::default(),
            ),
            addresses: reg.register(
                names::ORIGIN_SERVER_ADDRESSES,
                "Addresses an origin server's name resolves to (1 for an IP literal)",
                Family::default(),
            ),
            dns_refreshes: reg.register(
                names::ORIGIN_DNS_REFRESHES,
                "Successful DNS resolutions of an origin server's name",
                Family::default(),
            ),
            dns_failures: reg.register(
                names::ORIGIN_DNS_FAILURES,
                "Failed DNS resolutions of an origin server's name (the last good addresses stay in use)",
                Family::default(),
            ),
        }
    }

    pub(super) fn server(&self, site: &str, server: &str) -> OriginServerMetrics {
        let labels = ServerLabels {
            site: site.to_owned(),
            server: server.to_owned(),
        };
        let up = self.up.get_or_create_owned(&labels);
        up.set(1);
        let state = |state| {
            self.connections.get_or_create_owned(&ServerStateLabels {
                site: site.to_owned(),
                server: server.to_owned(),
                state,
            })
        };
        OriginServerMetrics {
            up,
            ejections: self.ejections.get_or_create_owned(&labels),
            requests: self.requests.get_or_create_owned(&labels),
            errors: OriginFailure::ALL.map(|kind| {
                self.errors.get_or_create_owned(&ServerErrorLabels {
                    site: site.to_owned(),
                    server: server.to_owned(),
                    kind: kind.as_str(),
                })
            }),
            duration: self.duration.get_or_create_owned(&labels),
            open: state("open"),
            idle: state("idle"),
            queued: self.queued.get_or_create_owned(&labels),
            addresses: self.addresses.get_or_create_owned(&labels),
            dns_refreshes: self.dns_refreshes.get_or_create_owned(&labels),
            dns_failures: self.dns_failures.get_or_create_owned(&labels),
        }
    }
}
