//! Counters, gauges and histograms of the proxy, and their Prometheus text rendering.
//!
//! Rendered by prometheus-client in the OpenMetrics text format (counters carry the
//! `_total` suffix). Names start with `sockproxy_`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::render`]'s output.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Request duration buckets (seconds): a long-poll is held up to engine.io's
/// `pingInterval` (25 s default, 30 s in Theia), so the top buckets bracket those.
const REQUEST_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 20.0, 26.0, 31.0, 60.0, 120.0,
];
/// Tunnel lifetime buckets (seconds): edges either side of GKE's default backend
/// `timeoutSec` (30 s) and of the seed's 3600 s, where hypothesis 6 clusters lifetimes.
const TUNNEL_BUCKETS: [f64; 14] = [
    1.0, 5.0, 10.0, 29.0, 31.0, 60.0, 300.0, 600.0, 1800.0, 3599.0, 3601.0, 7200.0, 43200.0,
    86400.0,
];

/// The `class` label: the status class sent to the client (`none` when nothing was sent).
pub(crate) fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExchangeLabels {
    /// `polling`, `websocket`, `other` (a socket.io path without a known transport) or
    /// `none` (not a socket.io path).
    transport: &'static str,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabels {
    name: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// Every metric of the process.
pub(crate) struct Metrics {
    registry: Registry,
    exchanges: Family<ExchangeLabels, Counter>,
    request_duration: Family<ExchangeLabels, Histogram, fn() -> Histogram>,
    pub(crate) upgrades_attempted: Counter,
    pub(crate) upgrades_succeeded: Counter,
    pub(crate) upgrades_refused: Counter,
    pub(crate) tunnels_open: Gauge,
    tunnel_bytes: Family<DirectionLabels, Counter>,
    pub(crate) tunnel_lifetime: Histogram,
    tunnels_closed: Family<NameLabels, Counter>,
    flags: Family<NameLabels, Counter>,
    upstream_errors: Family<KindLabels, Counter>,
    records_not_written: Counter,
    pub(crate) requests_in_flight: Gauge,
    pub(crate) draining: Gauge,
    client_errors: Family<KindLabels, Counter>,
    pub(crate) connections_open: Gauge,
    pub(crate) accept_errors: Counter,
    pub(crate) accept_paused: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    // Over 80 lines on purpose: one registration per metric, in the order `/metrics`
    // lists them; it is a list, and split it would only be scattered.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("sockproxy");
        let exchanges = Family::<ExchangeLabels, Counter>::default();
        registry.register(
            "exchanges",
            "Exchanges that did not switch protocols, by transport and status class",
            exchanges.clone(),
        );
        let request_duration =
            Family::<ExchangeLabels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                Histogram::new(REQUEST_BUCKETS)
            });
        registry.register(
            "request_duration_seconds",
            "From request head to response end",
            request_duration.clone(),
        );
        let upgrades_attempted = Counter::default();
        registry.register(
            "upgrades_attempted",
            "Requests carrying an Upgrade header",
            upgrades_attempted.clone(),
        );
        let upgrades_succeeded = Counter::default();
        registry.register(
            "upgrades_succeeded",
            "Upgrades the upstream answered with 101",
            upgrades_succeeded.clone(),
        );
        let upgrades_refused = Counter::default();
        registry.register(
            "upgrades_refused",
            "Upgrades answered with anything but 101",
            upgrades_refused.clone(),
        );
        let tunnels_open = Gauge::default();
        registry.register(
            "tunnels_open",
            "Tunnels (upgraded connections) open now",
            tunnels_open.clone(),
        );
        let tunnel_bytes = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "tunnel_bytes",
            "Bytes spliced through tunnels, counted as they flow",
            tunnel_bytes.clone(),
        );
        let tunnel_lifetime = Histogram::new(TUNNEL_BUCKETS);
        registry.register(
            "tunnel_lifetime_seconds",
            "Tunnel lifetime from the 101 to the close",
            tunnel_lifetime.clone(),
        );
        let tunnels_closed = Family::<NameLabels, Counter>::default();
        registry.register(
            "tunnels_closed",
            "Tunnels closed, by the side that ended them first (label name)",
            tunnels_closed.clone(),
        );
        let flags = Family::<NameLabels, Counter>::default();
        registry.register(
            "flags",
            "Diagnostic flags set on records, by flag name",
            flags.clone(),
        );
        let upstream_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Exchanges sockproxy answered itself because the upstream failed, by kind",
            upstream_errors.clone(),
        );
        let records_not_written = Counter::default();
        registry.register(
            "records_not_written",
            "Records lost because stdout was blocked or closed",
            records_not_written.clone(),
        );
        let requests_in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Exchanges in progress",
            requests_in_flight.clone(),
        );
        let client_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "client_errors",
            "Client connections and requests refused by sockproxy's own parser, limits and \
             rules, by kind (bad_request, head_too_large, uri_too_long, header_timeout, \
             idle_timeout, connect_method, bad_transfer_encoding, bad_target)",
            client_errors.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections open, tunnels included",
            connections_open.clone(),
        );
        let accept_errors = Counter::default();
        registry.register(
            "accept_errors",
            "Failed accepts (EMFILE and friends), each followed by a short back-off",
            accept_errors.clone(),
        );
        let accept_paused = Counter::default();
        registry.register(
            "accept_paused",
            "Times accepting paused because --max-connections was reached",
            accept_paused.clone(),
        );
        let draining = Gauge::default();
        registry.register(
            "draining",
            "1 after SIGTERM, while draining",
            draining.clone(),
        );
        Metrics {
            registry,
            exchanges,
            request_duration,
            upgrades_attempted,
            upgrades_succeeded,
            upgrades_refused,
            tunnels_open,
            tunnel_bytes,
            tunnel_lifetime,
            tunnels_closed,
            flags,
            upstream_errors,
            records_not_written,
            requests_in_flight,
            draining,
            client_errors,
            connections_open,
            accept_errors,
            accept_paused,
        }
    }

    /// Counts one finished exchange.
    pub(crate) fn exchange(&self, transport: &'static str, status: u16, seconds: f64) {
        let labels = ExchangeLabels {
            transport,
            class: status_class(status),
        };
        self.exchanges.get_or_create(&labels).inc();
        self.request_duration
            .get_or_create(&labels)
            .observe(seconds);
    }

    /// Counts the flags of one record.
    pub(crate) fn flags(&self, flags: &[&'static str]) {
        for name in flags {
            self.flags.get_or_create(&NameLabels { name }).inc();
        }
    }

    /// Counts one answer sockproxy gave itself because the upstream failed.
    pub(crate) fn upstream_error(&self, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// Counts one client connection or request refused by sockproxy's own parser,
    /// limits or rules.
    pub(crate) fn client_error(&self, kind: &'static str) {
        self.client_errors.get_or_create(&KindLabels { kind }).inc();
    }

    /// The two live byte counters of tunnels: client→upstream, upstream→client.
    pub(crate) fn tunnel_byte_counters(&self) -> [Counter; 2] {
        // One statement each: `get_or_create` returns a lock guard, and a second call
        // while the first guard lives would wait on itself.
        let c2u = self
            .tunnel_bytes
            .get_or_create(&DirectionLabels {
                direction: "client_to_upstream",
            })
            .clone();
        let u2c = self
            .tunnel_bytes
            .get_or_create(&DirectionLabels {
                direction: "upstream_to_client",
            })
            .clone();
        [c2u, u2c]
    }

    /// Counts one closed tunnel by who closed it.
    pub(crate) fn tunnel_closed(&self, closed_by: &'static str, seconds: f64) {
        self.tunnels_closed
            .get_or_create(&NameLabels { name: closed_by })
            .inc();
        self.tunnel_lifetime.observe(seconds);
    }

    /// Renders every metric; `records_dropped` is the sink's current count.
    pub(crate) fn render(&self, records_dropped: u64) -> String {
        let seen = self.records_not_written.get();
        if records_dropped > seen {
            self.records_not_written.inc_by(records_dropped - seen);
        }
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
