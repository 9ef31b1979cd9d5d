//! The load balancer's own request log: one Cloud Logging entry of the global external (or
//! classic) Application Load Balancer → a flat [`Entry`]. Everything the report knows about
//! that format lives in this file, so a correction from a real export is a one-file change.
//! Pure.
//!
//! # Where each fact comes from
//!
//! The project's researched notes are `shared/LB-LOGS.md` (cited below as LB-LOGS §n); each
//! fact there is tagged with its own source. The Google pages behind them:
//!
//! - **LBLOG**: "Global external Application Load Balancer logging and monitoring",
//!   <https://docs.cloud.google.com/load-balancing/docs/https/https-logging-monitoring>
//!   (same content as <https://docs.cloud.google.com/cdn/docs/cdn-logging-monitoring>, copy
//!   "Last updated 2026-04-13"): the field table, `resource.type = "http_load_balancer"`,
//!   the `@type` of `jsonPayload`, and the full `statusDetails` success and failure tables
//!   ([`TABLE`] below; LB-LOGS §1.1, §1.4, §2).
//! - **HTTPREQ**: Cloud Logging's `HttpRequest`
//!   (`google/logging/type/http_request.proto`; discovery docs for `latency`): "For
//!   WebSocket connections, this field refers to the entire time duration of the
//!   connection"; `requestSize`/`responseSize` are int64, so JSON strings; `status` a
//!   number, `0` and `101` valid; `latency` a Duration string `"0.005192s"` (LB-LOGS §1.3).
//! - **LOGENTRY** / **TRACELOG**: `trace` is `projects/PROJECT/traces/TRACE_ID`, the id 32
//!   hex digits (<https://cloud.google.com/trace/docs/trace-log-integration>); entries with
//!   the same `insertId` and `timestamp` are duplicates (LB-LOGS §1.1).
//! - **ALB**: the global external and classic ALBs "set the `X-Cloud-Trace-Context` header
//!   if it is not already present" (<https://docs.cloud.google.com/load-balancing/docs/https>,
//!   proxy-added headers; LB-LOGS §4). That the id in the log's `trace` is the id in the
//!   header the backend gets is the design intent (Logs Explorer groups LB and backend
//!   entries by `trace`) but no page says so in those words: **unverified** (LB-LOGS §4
//!   rule 2, §8 question 3). The join is on the 32-hex id only, case-insensitively; the
//!   project part of `trace` is the load balancer's and is ignored.
//! - **GCLOUD-READ**: `gcloud logging read --format=json` prints one JSON array, newest
//!   first unless `--order=asc` (<https://cloud.google.com/sdk/gcloud/reference/logging/read>);
//!   log sinks write one entry per line (LB-LOGS §5.2). Both are read by `input.rs`; this
//!   module sees one object at a time.
//! - **OTEL**: open-telemetry/opentelemetry-collector-contrib's `apploadbalancerlog` parser
//!   and its captured global-ALB fixture (the real entry in LB-LOGS §1.5): `@type` checked,
//!   `jsonPayload.remoteIp` present, `serverIp` the backend (a pod IP on GKE).
//!
//! What is **not** documented, and how this module copes (LB-LOGS §3, §7):
//! - `statusDetails` is marked Required but real GKE Gateway 404s lack it: missing is
//!   [`Family::Missing`], never an error. The set is open: unknown values are kept by name
//!   as [`Family::Unknown`].
//! - One entry per websocket, written when it ends, with `timestamp` = the handshake and
//!   `latency` = the whole connection: inferred from HTTPREQ and from `statusDetails`
//!   naming how it ended (`websocket_closed`, `backend_timeout`, `client_disconnected_…`
//!   with status 101); no captured 101 entry confirms it.
//! - `backend_timeout` on a websocket: LBLOG says the **global** external ALB closes it
//!   after the backend service timeout of *idle* time, the **classic** ALB (what a GKE
//!   `gce` Ingress builds, per ingress-gce's source) after that much time *idle or active*.
//! - `protocol` is documented as not populated for `http_load_balancer` but was seen
//!   (`HTTP/1.1`) on 2026 entries: read when present, never required.
//! - The regional external ALB logs `resource.type = "http_external_regional_lb_rule"`
//!   with `proxyStatus` instead of `statusDetails` and no `trace`: recognised and set
//!   aside ([`Parsed::OtherLoadBalancer`]).
//! - BigQuery and Log Analytics exports rename the payload
//!   (`jsonpayload_type_loadbalancerlogentry`, lower-case keys): not read. The snake_case
//!   envelope keys of Log Analytics (`http_request`, `json_payload`) are accepted.

use serde::Deserialize;

use super::parse::{Str, parse_time};

/// `resource.type` of the global external and classic Application Load Balancers (LBLOG).
pub const RESOURCE_TYPE: &str = "http_load_balancer";
/// `jsonPayload["@type"]` of their request entries (LBLOG, CDNSETUP, OTEL).
pub const PAYLOAD_TYPE: &str =
    "type.googleapis.com/google.cloud.loadbalancing.type.LoadBalancerLogEntry";
/// The regional external ALB's `resource.type` (LB-LOGS §1.6): another format.
const REGIONAL_TYPE: &str = "http_external_regional_lb_rule";

/// Why the load balancer answered as it did: the `statusDetails` values grouped by what
/// they say about the path from the browser to theia.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// The backend answered and the load balancer passed it on (or a CDN cache did).
    Backend,
    /// A websocket ended normally (`websocket_closed`, status 101).
    WebsocketClosed,
    /// The backend service's timeout ended it (`backend_timeout`): a websocket cut at
    /// `timeoutSec` (status 101), or a request theia did not answer in time (502/503).
    BackendTimeout,
    /// No healthy backend to send it to (`failed_to_pick_backend`): the health check.
    NoHealthyBackend,
    /// No connection to the chosen backend (connect failures, TLS/ALPN to the backend).
    ConnectFailed,
    /// The backend broke its answer (closed early, corrupt, headers too long, …).
    BackendBroke,
    /// The client left or stalled (`client_disconnected_…`, `client_timed_out`).
    ClientLeft,
    /// The load balancer refused the request itself (malformed, `upgrade_header_rejected`,
    /// `websocket_handshake_failed`, …).
    Refused,
    /// Cloud Armor or IAP.
    Policy,
    /// The load balancer's own infrastructure (`config_not_found`, `internal_error`, …).
    Platform,
    /// mTLS: the client's certificate.
    ClientCert,
    /// The entry has no `statusDetails`.
    Missing,
    /// A value not in [`TABLE`] (the set grows; LB-LOGS §2 parser note).
    Unknown,
}

/// Whether a request of this family reached a backend, by what the value means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// The backend was involved (it answered, timed out or broke its answer).
    Yes,
    /// Answered by the load balancer without any backend (LB-LOGS §4 rule 7).
    No,
    /// Either: the client left, or the value says nothing about it.
    Unknown,
}

impl Family {
    pub const ALL: [Family; 13] = [
        Family::Backend,
        Family::WebsocketClosed,
        Family::BackendTimeout,
        Family::NoHealthyBackend,
        Family::ConnectFailed,
        Family::BackendBroke,
        Family::ClientLeft,
        Family::Refused,
        Family::Policy,
        Family::Platform,
        Family::ClientCert,
        Family::Missing,
        Family::Unknown,
    ];

    /// The family's key in the JSON report.
    pub fn key(self) -> &'static str {
        match self {
            Family::Backend => "backend",
            Family::WebsocketClosed => "websocket_closed",
            Family::BackendTimeout => "backend_timeout",
            Family::NoHealthyBackend => "no_healthy_backend",
            Family::ConnectFailed => "connect_failed",
            Family::BackendBroke => "backend_broke",
            Family::ClientLeft => "client_left",
            Family::Refused => "refused_by_lb",
            Family::Policy => "policy",
            Family::Platform => "lb_platform",
            Family::ClientCert => "client_cert",
            Family::Missing => "missing",
            Family::Unknown => "unknown",
        }
    }

    pub fn reach(self) -> Reach {
        match self {
            Family::Backend
            | Family::WebsocketClosed
            | Family::BackendTimeout
            | Family::BackendBroke => Reach::Yes,
            Family::NoHealthyBackend
            | Family::ConnectFailed
            | Family::Refused
            | Family::Policy
            | Family::Platform
            | Family::ClientCert => Reach::No,
            Family::ClientLeft | Family::Missing | Family::Unknown => Reach::Unknown,
        }
    }
}

/// Every `statusDetails` value of LBLOG's success and failure tables (copy of 2026-04-13)
/// plus the two only ARMOR documents, with its family (LB-LOGS §2).
pub const TABLE: &[(&str, Family)] = &[
    // Success (LBLOG): the backend's answer, or a cache's.
    ("response_sent_by_backend", Family::Backend),
    ("response_from_cache", Family::Backend),
    ("response_from_cache_validated", Family::Backend),
    ("byte_range_caching", Family::Backend),
    // Websockets and the backend service timeout.
    ("websocket_closed", Family::WebsocketClosed),
    ("backend_timeout", Family::BackendTimeout),
    // No backend.
    ("failed_to_pick_backend", Family::NoHealthyBackend),
    ("failed_to_connect_to_backend", Family::ConnectFailed),
    ("failed_to_negotiate_alpn", Family::ConnectFailed),
    (
        "ssl_certificate_san_verification_failed",
        Family::ConnectFailed,
    ),
    (
        "ssl_certificate_chain_verification_failed",
        Family::ConnectFailed,
    ),
    ("server_cert_chain_exceeded_limit", Family::ConnectFailed),
    ("server_cert_chain_invalid_eku", Family::ConnectFailed),
    (
        "server_cert_chain_max_name_constraints_exceeded",
        Family::ConnectFailed,
    ),
    ("server_cert_exceeded_size_limit", Family::ConnectFailed),
    ("server_cert_invalid_rsa_key_size", Family::ConnectFailed),
    ("server_cert_not_provided", Family::ConnectFailed),
    ("server_cert_pki_too_large", Family::ConnectFailed),
    ("server_cert_trust_config_not_found", Family::ConnectFailed),
    (
        "server_cert_unsupported_elliptic_curve_key",
        Family::ConnectFailed,
    ),
    (
        "server_cert_unsupported_key_algorithm",
        Family::ConnectFailed,
    ),
    (
        "server_cert_validation_internal_error",
        Family::ConnectFailed,
    ),
    (
        "server_cert_validation_not_performed",
        Family::ConnectFailed,
    ),
    (
        "server_cert_validation_search_limit_exceeded",
        Family::ConnectFailed,
    ),
    ("server_cert_validation_timed_out", Family::ConnectFailed),
    ("server_cert_validation_unavailable", Family::ConnectFailed),
    ("serverless_neg_routing_failed", Family::ConnectFailed),
    ("invalid_external_origin_endpoint", Family::ConnectFailed),
    // The backend broke its answer.
    (
        "aborted_request_due_to_backend_early_response",
        Family::BackendBroke,
    ),
    (
        "backend_connection_closed_after_partial_response_sent",
        Family::BackendBroke,
    ),
    (
        "backend_connection_closed_before_data_sent_to_client",
        Family::BackendBroke,
    ),
    (
        "backend_early_response_with_non_error_status",
        Family::BackendBroke,
    ),
    (
        "backend_interim_response_not_supported",
        Family::BackendBroke,
    ),
    ("backend_response_corrupted", Family::BackendBroke),
    ("backend_response_headers_too_long", Family::BackendBroke),
    ("error_uncompressing_gzipped_body", Family::BackendBroke),
    ("request_body_too_large", Family::BackendBroke),
    ("request_loop_detected", Family::BackendBroke),
    // The client.
    (
        "client_disconnected_after_partial_response",
        Family::ClientLeft,
    ),
    (
        "client_disconnected_before_any_response",
        Family::ClientLeft,
    ),
    ("client_timed_out", Family::ClientLeft),
    // Refused by the load balancer.
    ("body_not_allowed", Family::Refused),
    ("failed_parsing_client_headers", Family::Refused),
    ("headers_too_long", Family::Refused),
    ("http_version_not_supported", Family::Refused),
    ("invalid_chunk_framing", Family::Refused),
    ("invalid_request_headers", Family::Refused),
    ("invalid_http2_client_header_format", Family::Refused),
    ("invalid_http2_client_request_path", Family::Refused),
    ("malformed_chunked_body", Family::Refused),
    ("required_body_but_no_content_length", Family::Refused),
    ("secure_url_rejected", Family::Refused),
    ("unsupported_method", Family::Refused),
    ("unsupported_100_continue", Family::Refused),
    ("upgrade_header_rejected", Family::Refused),
    ("early_data_rejected", Family::Refused),
    ("websocket_handshake_failed", Family::Refused),
    // Client certificates (mTLS).
    ("client_cert_invalid_rsa_key_size", Family::ClientCert),
    (
        "client_cert_unsupported_elliptic_curve_key",
        Family::ClientCert,
    ),
    ("client_cert_unsupported_key_algorithm", Family::ClientCert),
    ("client_cert_pki_too_large", Family::ClientCert),
    (
        "client_cert_chain_max_name_constraints_exceeded",
        Family::ClientCert,
    ),
    ("client_cert_chain_invalid_eku", Family::ClientCert),
    ("client_cert_validation_timed_out", Family::ClientCert),
    (
        "client_cert_validation_search_limit_exceeded",
        Family::ClientCert,
    ),
    ("client_cert_validation_not_performed", Family::ClientCert),
    ("client_cert_not_provided", Family::ClientCert),
    ("client_cert_validation_failed", Family::ClientCert),
    // Cloud Armor and IAP (the last two from ARMOR only).
    ("denied_by_security_policy", Family::Policy),
    ("banned_by_security_policy", Family::Policy),
    ("throttled_by_security_policy", Family::Policy),
    ("redirected_by_security_policy", Family::Policy),
    ("body_denied_by_security_policy", Family::Policy),
    ("handled_by_identity_aware_proxy", Family::Policy),
    ("multiple_iap_policies", Family::Policy),
    // The load balancer's own infrastructure and configured answers.
    ("config_not_found", Family::Platform),
    ("retriable_error", Family::Platform),
    ("internal_error", Family::Platform),
    ("direct_response", Family::Platform),
    ("fault_filter_abort", Family::Platform),
    ("service_extension_error", Family::Platform),
    // Cloud CDN byte ranges and cache fills: the backend or a cache was involved.
    ("byte_range_caching_aborted", Family::Backend),
    (
        "byte_range_caching_forwarded_backend_response",
        Family::Backend,
    ),
    ("byte_range_caching_retrieval_abandoned", Family::ClientLeft),
    (
        "byte_range_caching_retrieval_from_backend_failed_after_partial_response",
        Family::BackendBroke,
    ),
    (
        "cache_lookup_failed_after_partial_response",
        Family::Platform,
    ),
    (
        "cache_lookup_timeout_after_partial_response",
        Family::ClientLeft,
    ),
];

/// The family of a `statusDetails` value.
pub fn family_of(details: Option<&str>) -> Family {
    match details {
        None | Some("") => Family::Missing,
        Some(d) => TABLE
            .iter()
            .find(|(name, _)| *name == d)
            .map_or(Family::Unknown, |(_, f)| *f),
    }
}

/// The entry's trace, as far as it can be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceId {
    /// The 32-hex id as a number (case does not matter).
    Id(u128),
    /// No `trace` field (or an empty one).
    Missing,
    /// A `trace` that holds no 32-hex id.
    Malformed,
}

/// Reads a trace id from `projects/P/traces/ID` (the log's form) or a bare id (the form in
/// sockproxy's records).
pub fn trace_id(s: Option<&str>) -> TraceId {
    let Some(s) = s.map(str::trim).filter(|s| !s.is_empty()) else {
        return TraceId::Missing;
    };
    let id = s.rsplit_once("/traces/").map_or(s, |(_, id)| id);
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        u128::from_str_radix(id, 16).map_or(TraceId::Malformed, TraceId::Id)
    } else {
        TraceId::Malformed
    }
}

/// One load balancer entry, as the report uses it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// `timestamp`: when the first-layer GFE received the request (a websocket's handshake).
    pub time: Option<i64>,
    pub trace: TraceId,
    /// `httpRequest.status`: what the browser got; 0 when it got nothing.
    pub status: u16,
    /// `statusDetails` as written, when present.
    pub details: Option<Box<str>>,
    pub family: Family,
    /// `httpRequest.latency` in ms: for a websocket, its whole life.
    pub latency_ms: Option<f64>,
    pub method: Option<Box<str>>,
    pub url: Option<Box<str>>,
    pub user_agent: Option<Box<str>>,
    /// The client as the load balancer saw it (`httpRequest.remoteIp`, no port).
    pub remote_ip: Option<Box<str>>,
    /// The backend it used (`httpRequest.serverIp`: on GKE, a pod IP).
    pub server_ip: Option<Box<str>>,
    pub backend_service: Option<Box<str>>,
    /// `insertId`, for de-duplication with `timestamp`.
    pub insert_id: Option<Box<str>>,
}

impl Entry {
    /// Whether it is a websocket's entry: status 101 (LBLOG's "WS" rows, `websocket_closed`).
    pub fn websocket(&self) -> bool {
        self.status == 101
    }

    /// The URL's path (no scheme, host or query).
    pub fn path(&self) -> Option<&str> {
        let url = self.url.as_deref()?;
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let path = rest.find('/').map_or("/", |i| &rest[i..]);
        Some(path.split(['?', '#']).next().unwrap_or(path))
    }

    /// The URL's host (with its port, if any).
    pub fn host(&self) -> Option<&str> {
        let url = self.url.as_deref()?;
        let (_, rest) = url.split_once("://")?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        (!host.is_empty()).then_some(host)
    }
}

/// What [`parse`] makes of one JSON object that is not a sockproxy record.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Entry(Box<Entry>),
    /// A load balancer entry of another kind (regional ALB, proxy/passthrough NLB): its
    /// fields differ and it is set aside.
    OtherLoadBalancer,
    /// Not a load balancer entry at all.
    NotLoadBalancer,
}

/// Reads one JSON object; entries are recognised by `resource.type` and `jsonPayload.@type`.
pub fn parse(json: &[u8]) -> Parsed {
    let Ok(raw) = serde_json::from_slice::<RawEntry<'_>>(json) else {
        return Parsed::NotLoadBalancer;
    };
    let resource = raw.resource.as_ref().and_then(|r| r.kind.as_deref());
    let payload = raw.json_payload.as_ref();
    let payload_type = payload.and_then(|p| p.kind.as_deref());
    if resource == Some(REGIONAL_TYPE) {
        return Parsed::OtherLoadBalancer;
    }
    if resource != Some(RESOURCE_TYPE) || payload_type != Some(PAYLOAD_TYPE) {
        return if payload_type == Some(PAYLOAD_TYPE) {
            Parsed::OtherLoadBalancer
        } else {
            Parsed::NotLoadBalancer
        };
    }
    let Some(http) = raw.http_request.as_ref() else {
        // Proxy and passthrough network load balancers share the `@type` but log
        // `connection{…}` instead of `httpRequest` (LB-LOGS §1.6).
        return Parsed::OtherLoadBalancer;
    };
    let own = |s: &Option<Str<'_>>| s.as_deref().filter(|s| !s.is_empty()).map(Box::from);
    let details = payload.and_then(|p| own(&p.status_details));
    Parsed::Entry(Box::new(Entry {
        time: raw.timestamp.as_deref().and_then(parse_time),
        trace: trace_id(raw.trace.as_deref()),
        status: http
            .status
            .filter(|s| (0.0..1000.0).contains(s))
            .unwrap_or(0.0) as u16,
        family: family_of(details.as_deref()),
        details,
        latency_ms: http.latency.as_deref().and_then(latency_ms),
        method: own(&http.request_method),
        url: own(&http.request_url),
        user_agent: own(&http.user_agent),
        remote_ip: own(&http.remote_ip)
            .or_else(|| payload.and_then(|p| own(&p.remote_ip)))
            .map(|ip| Box::from(strip_port(&ip))),
        server_ip: own(&http.server_ip),
        backend_service: raw
            .resource
            .as_ref()
            .and_then(|r| r.labels.as_ref())
            .and_then(|l| own(&l.backend_service_name)),
        insert_id: own(&raw.insert_id),
    }))
}

/// `"1843.207114s"` (a protobuf Duration in JSON) → milliseconds.
pub fn latency_ms(s: &str) -> Option<f64> {
    let secs: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some(secs * 1000.0)
}

/// `203.0.113.24:60102` → `203.0.113.24`; `[2001:db8::1]:443` → `2001:db8::1`; a bare IPv6
/// address stays whole ("can include port information", HTTPREQ).
fn strip_port(ip: &str) -> &str {
    if let Some(rest) = ip.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match ip.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => ip,
    }
}

#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(borrow)]
    resource: Option<RawResource<'a>>,
    #[serde(rename = "jsonPayload", alias = "json_payload", borrow)]
    json_payload: Option<RawPayload<'a>>,
    #[serde(rename = "httpRequest", alias = "http_request", borrow)]
    http_request: Option<RawHttpRequest<'a>>,
    #[serde(borrow)]
    timestamp: Option<Str<'a>>,
    #[serde(borrow)]
    trace: Option<Str<'a>>,
    #[serde(rename = "insertId", alias = "insert_id", borrow)]
    insert_id: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct RawResource<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    labels: Option<RawLabels<'a>>,
}

#[derive(Deserialize)]
struct RawLabels<'a> {
    #[serde(borrow)]
    backend_service_name: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct RawPayload<'a> {
    #[serde(rename = "@type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(rename = "statusDetails", borrow)]
    status_details: Option<Str<'a>>,
    #[serde(rename = "remoteIp", borrow)]
    remote_ip: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct RawHttpRequest<'a> {
    #[serde(rename = "requestMethod", alias = "request_method", borrow)]
    request_method: Option<Str<'a>>,
    #[serde(rename = "requestUrl", alias = "request_url", borrow)]
    request_url: Option<Str<'a>>,
    status: Option<f64>,
    #[serde(rename = "userAgent", alias = "user_agent", borrow)]
    user_agent: Option<Str<'a>>,
    #[serde(rename = "remoteIp", alias = "remote_ip", borrow)]
    remote_ip: Option<Str<'a>>,
    #[serde(rename = "serverIp", alias = "server_ip", borrow)]
    server_ip: Option<Str<'a>>,
    #[serde(borrow)]
    latency: Option<Str<'a>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real global-ALB entry of LB-LOGS §1.5 (OTEL fixture), whole.
    const OTEL: &str = r#"{"httpRequest":{"latency":"0.005192s","remoteIp":"79.117.34.252","requestMethod":"GET","requestSize":"29","requestUrl":"https://35.227.246.6/","responseSize":"780","serverIp":"10.20.0.4","status":200,"userAgent":"curl/8.7.1"},"insertId":"h91ql8g1lpdqh2","jsonPayload":{"@type":"type.googleapis.com/google.cloud.loadbalancing.type.LoadBalancerLogEntry","backendTargetProjectNumber":"projects/8560181848","cacheDecision":["RESPONSE_HAS_ETAG","RESPONSE_HAS_LAST_MODIFIED","RESPONSE_HAS_CONTENT_TYPE","CACHE_MODE_USE_ORIGIN_HEADERS"],"remoteIp":"79.117.34.252","statusDetails":"response_sent_by_backend","tls":{"cipher":"TLS_CHACHA20_POLY1305_SHA256","protocol":"TLSv1.3"}},"logName":"projects/elastic-observability/logs/requests","receiveTimestamp":"2025-11-20T13:35:28.360361140Z","resource":{"labels":{"backend_service_name":"gcp-fixture-alb-backend-service","forwarding_rule_name":"gcp-fixture-alb-forwarding-rule","project_id":"elastic-observability","target_proxy_name":"gcp-fixture-alb-https-proxy","url_map_name":"gcp-fixture-alb-url-map","zone":"global"},"type":"http_load_balancer"},"severity":"INFO","spanId":"e9004ce8eccc7c2d","timestamp":"2025-11-20T13:35:27.558637Z","trace":"projects/elastic-observability/traces/5334e0e7aee6ec1b1a8c34db601241ab"}"#;

    fn entry(json: &str) -> Entry {
        match parse(json.as_bytes()) {
            Parsed::Entry(e) => *e,
            other => panic!("{other:?}: {json}"),
        }
    }

    /// A minimal entry with `http` inside `httpRequest` and `payload` inside `jsonPayload`.
    fn lb(http: &str, payload: &str, rest: &str) -> String {
        format!(
            r#"{{"resource":{{"type":"http_load_balancer"}},"httpRequest":{{{http}}},"jsonPayload":{{"@type":"{PAYLOAD_TYPE}"{payload}}}{rest}}}"#
        )
    }

    #[test]
    fn the_real_entry() {
        let e = entry(OTEL);
        assert_eq!(
            e.trace,
            TraceId::Id(0x5334e0e7aee6ec1b1a8c34db601241ab),
            "the id part of projects/…/traces/…"
        );
        assert_eq!(e.status, 200);
        assert_eq!(e.family, Family::Backend);
        assert_eq!(e.details.as_deref(), Some("response_sent_by_backend"));
        assert!((e.latency_ms.unwrap() - 5.192).abs() < 1e-9);
        assert_eq!(e.remote_ip.as_deref(), Some("79.117.34.252"));
        assert_eq!(e.server_ip.as_deref(), Some("10.20.0.4"));
        assert_eq!(
            e.backend_service.as_deref(),
            Some("gcp-fixture-alb-backend-service")
        );
        assert_eq!(e.path(), Some("/"));
        assert_eq!(e.host(), Some("35.227.246.6"));
        assert_eq!(
            e.time.map(crate::report::parse::format_time).as_deref(),
            Some("2025-11-20T13:35:27.558637Z")
        );
        assert_eq!(e.insert_id.as_deref(), Some("h91ql8g1lpdqh2"));
        assert!(!e.websocket());
    }

    #[test]
    fn what_is_and_is_not_a_load_balancer_entry() {
        let other = |p: &Parsed| match p {
            Parsed::Entry(_) => "entry",
            Parsed::OtherLoadBalancer => "other lb",
            Parsed::NotLoadBalancer => "not",
        };
        let cases: Vec<(String, &str)> = vec![
            (OTEL.to_string(), "entry"),
            (lb(r#""status":502"#, "", ""), "entry"),
            (
                OTEL.replace("http_load_balancer", "http_external_regional_lb_rule"),
                "other lb",
            ),
            (
                format!(
                    r#"{{"resource":{{"type":"l4_proxy_rule"}},"jsonPayload":{{"@type":"{PAYLOAD_TYPE}","connection":{{}}}}}}"#
                ),
                "other lb",
            ),
            (
                r#"{"resource":{"type":"http_load_balancer"},"jsonPayload":{"@type":"type.googleapis.com/other"}}"#.to_string(),
                "not",
            ),
            (
                r#"{"resource":{"type":"k8s_container"},"jsonPayload":{"event":"request"}}"#
                    .to_string(),
                "not",
            ),
            (r#"{"level":"info"}"#.to_string(), "not"),
            ("[1,2]".to_string(), "not"),
            ("{not json".to_string(), "not"),
            (
                OTEL.replace(r#""status":200"#, r#""status":"two hundred""#),
                "not",
            ),
        ];
        for (json, want) in cases {
            assert_eq!(other(&parse(json.as_bytes())), want, "{json}");
        }
    }

    #[test]
    fn statuses_latencies_and_missing_fields() {
        // (httpRequest fields, payload fields, top-level, status, family, latency ms, trace)
        type Case<'a> = (&'a str, &'a str, &'a str, u16, Family, Option<f64>, TraceId);
        let id = "9f2d0c7a61be4e0b8a3c5d7e1f2a4b6c";
        let t = format!(r#","trace":"projects/acme/traces/{id}""#);
        let upper = format!(
            r#","trace":"projects/acme/traces/{}""#,
            id.to_ascii_uppercase()
        );
        let want_id = TraceId::Id(u128::from_str_radix(id, 16).unwrap());
        let cases: Vec<Case> = vec![
            (
                r#""status":101,"latency":"1843.207114s""#,
                r#","statusDetails":"websocket_closed""#,
                &t,
                101,
                Family::WebsocketClosed,
                Some(1_843_207.114),
                want_id,
            ),
            (
                r#""status":101,"latency":"30.001527s""#,
                r#","statusDetails":"backend_timeout""#,
                &upper,
                101,
                Family::BackendTimeout,
                Some(30_001.527),
                want_id,
            ),
            (
                r#""status":0,"latency":"0.5s""#,
                r#","statusDetails":"client_disconnected_before_any_response""#,
                "",
                0,
                Family::ClientLeft,
                Some(500.0),
                TraceId::Missing,
            ),
            (
                r#""status":502.0"#,
                r#","statusDetails":"failed_to_pick_backend""#,
                r#","trace":"""#,
                502,
                Family::NoHealthyBackend,
                None,
                TraceId::Missing,
            ),
            (
                r#""status":404,"latency":"bad""#,
                "",
                r#","trace":"projects/p/traces/xyz""#,
                404,
                Family::Missing,
                None,
                TraceId::Malformed,
            ),
            (
                r#""latency":"-1s""#,
                r#","statusDetails":"a_value_from_2027""#,
                "",
                0,
                Family::Unknown,
                None,
                TraceId::Missing,
            ),
        ];
        for (http, payload, rest, status, family, latency, trace) in cases {
            let json = lb(http, payload, rest);
            let e = entry(&json);
            assert_eq!(
                (e.status, e.family, e.latency_ms, e.trace),
                (status, family, latency, trace),
                "{json}"
            );
        }
    }

    #[test]
    fn every_family_has_values_and_a_reach() {
        // One value per family, as a fixture of its own: what reached theia and what did not.
        let cases = [
            ("response_sent_by_backend", Family::Backend, Reach::Yes),
            ("websocket_closed", Family::WebsocketClosed, Reach::Yes),
            ("backend_timeout", Family::BackendTimeout, Reach::Yes),
            (
                "failed_to_pick_backend",
                Family::NoHealthyBackend,
                Reach::No,
            ),
            (
                "failed_to_connect_to_backend",
                Family::ConnectFailed,
                Reach::No,
            ),
            (
                "backend_connection_closed_before_data_sent_to_client",
                Family::BackendBroke,
                Reach::Yes,
            ),
            (
                "client_disconnected_before_any_response",
                Family::ClientLeft,
                Reach::Unknown,
            ),
            ("upgrade_header_rejected", Family::Refused, Reach::No),
            ("websocket_handshake_failed", Family::Refused, Reach::No),
            ("denied_by_security_policy", Family::Policy, Reach::No),
            ("config_not_found", Family::Platform, Reach::No),
            ("client_cert_not_provided", Family::ClientCert, Reach::No),
        ];
        for (name, family, reach) in cases {
            assert_eq!(family_of(Some(name)), family, "{name}");
            assert_eq!(family.reach(), reach, "{name}");
        }
        assert_eq!(family_of(None), Family::Missing);
        assert_eq!(family_of(Some("")), Family::Missing);
        // LBLOG lists 4 success and 81 failure values; ARMOR adds 2.
        assert_eq!(TABLE.len(), 4 + 81 + 2);
        for f in Family::ALL {
            let listed = TABLE.iter().any(|(_, g)| *g == f);
            assert_eq!(
                listed,
                !matches!(f, Family::Missing | Family::Unknown),
                "{f:?}"
            );
        }
        let mut names: Vec<&str> = TABLE.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLE.len(), "no value listed twice");
    }

    #[test]
    fn ips_urls_and_traces() {
        let cases = [
            ("203.0.113.24", "203.0.113.24"),
            ("79.117.34.252:60102", "79.117.34.252"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
        ];
        for (ip, want) in cases {
            assert_eq!(strip_port(ip), want, "{ip}");
        }
        let e = entry(&lb(
            r#""requestUrl":"https://ide.example.com:8443/theia/socket.io/?EIO=4&transport=websocket&sid=x","remoteIp":"198.51.100.7:5000""#,
            "",
            "",
        ));
        assert_eq!(e.path(), Some("/theia/socket.io/"));
        assert_eq!(e.host(), Some("ide.example.com:8443"));
        assert_eq!(e.remote_ip.as_deref(), Some("198.51.100.7"));
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let n = u128::from_str_radix(id, 16).unwrap();
        for (s, want) in [
            (Some(id), TraceId::Id(n)),
            (
                Some("projects/p/traces/4BF92F3577B34DA6A3CE929D0E0E4736"),
                TraceId::Id(n),
            ),
            (Some("projects/p/traces/"), TraceId::Malformed),
            (Some("4bf92f3577b34da6a3ce929d0e0e47"), TraceId::Malformed),
            (Some("  "), TraceId::Missing),
            (None, TraceId::Missing),
        ] {
            assert_eq!(trace_id(s), want, "{s:?}");
        }
    }

    #[test]
    fn snake_case_envelope_of_log_analytics() {
        let json = format!(
            r#"{{"resource":{{"type":"http_load_balancer"}},"http_request":{{"status":502,"request_url":"http://h/","remote_ip":"1.2.3.4"}},"json_payload":{{"@type":"{PAYLOAD_TYPE}","statusDetails":"failed_to_pick_backend"}}}}"#
        );
        let e = entry(&json);
        assert_eq!(
            (e.status, e.family, e.remote_ip.as_deref()),
            (502, Family::NoHealthyBackend, Some("1.2.3.4"))
        );
    }
}
