//! The contract's events as typed structs (shared/CONTRACT.md §2); serialisation only.
//!
//! `time`, `severity`, `message`, `event`, `pod` and `pod_ip` are written by `sink.rs`
//! in front of each event's own fields.

use serde::Serialize;

use crate::capture::Snapshot;
use crate::sio::{Sio, SioError};

/// Cloud Logging severity, spelled exactly as `LogSeverity` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
        }
    }
}

/// How an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The whole response was handed to the client.
    Complete,
    /// The client went away before the response ended.
    ClientAborted,
    /// sockproxy answered itself (502/504), or the upstream failed mid-response.
    UpstreamError,
    /// The drain deadline (or a second signal) cut the exchange (extension).
    Shutdown,
}

impl Outcome {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::ClientAborted => "client_aborted",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Shutdown => "shutdown",
        }
    }
}

/// Which side ended a tunnel first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClosedBy {
    Client,
    Upstream,
    Shutdown,
    Error,
    /// No byte either way for `--tunnel-idle-timeout` (extension).
    IdleTimeout,
}

impl ClosedBy {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ClosedBy::Client => "client",
            ClosedBy::Upstream => "upstream",
            ClosedBy::Shutdown => "shutdown",
            ClosedBy::Error => "error",
            ClosedBy::IdleTimeout => "idle_timeout",
        }
    }
}

/// One record: a severity, a human line, and the event's fields.
#[derive(Debug, Clone)]
pub struct Record {
    pub severity: Severity,
    pub message: String,
    pub event: Event,
}

/// The events of the contract, plus `records_dropped` and `startup_failed`.
#[derive(Debug, Clone)]
pub enum Event {
    Listening(Listening),
    Request(Box<Exchange>),
    Upgrade(Box<Exchange>),
    TunnelClosed(Box<TunnelClosed>),
    Draining(Draining),
    Stopped(Stopped),
    RecordsDropped(RecordsDropped),
    StartupFailed(StartupFailed),
    ClientError(ClientError),
    ConnectionLimit(ConnectionLimit),
}

impl Event {
    /// The `event` value.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Listening(_) => "listening",
            Event::Request(_) => "request",
            Event::Upgrade(_) => "upgrade",
            Event::TunnelClosed(_) => "tunnel_closed",
            Event::Draining(_) => "draining",
            Event::Stopped(_) => "stopped",
            Event::RecordsDropped(_) => "records_dropped",
            Event::StartupFailed(_) => "startup_failed",
            Event::ClientError(_) => "client_error",
            Event::ConnectionLimit(_) => "connection_limit",
        }
    }
}

/// `listening`: the real bound addresses.
#[derive(Debug, Clone, Serialize)]
pub struct Listening {
    pub listen: String,
    pub admin: Option<String>,
    pub upstream: String,
    pub version: &'static str,
    pub sio_path: String,
    pub log_all: bool,
    pub drain_timeout_s: f64,
}

/// `client_error` (extension): a client connection that sent something sockproxy (like
/// theia's own HTTP parser) refuses, answered by sockproxy and never forwarded.
#[derive(Debug, Clone, Serialize)]
pub struct ClientError {
    pub conn: u64,
    pub client: String,
    /// `bad_request` (400, or 0 for an HTTP/2 preface), `head_too_large` (431),
    /// `uri_too_long` (414) or `header_timeout` (0).
    pub error_kind: &'static str,
    pub error: String,
    /// The status sockproxy answered with.
    pub status: u16,
}

/// `connection_limit` (extension): `--max-connections` reached, accepting paused.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionLimit {
    pub max_connections: usize,
}

/// `request` and `upgrade`: one exchange.
#[derive(Debug, Clone, Serialize)]
pub struct Exchange {
    pub id: String,
    pub conn: u64,
    pub client: String,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sio: Option<Sio>,
    pub status: u16,
    pub headers: Snapshot,
    pub resp_headers: Snapshot,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sio_error: Option<SioError>,
    pub flags: Vec<&'static str>,
    pub duration_ms: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_error: Option<String>,
    #[serde(rename = "httpRequest")]
    pub http_request: HttpRequest,
    #[serde(flatten)]
    pub trace: Trace,
}

/// Trace correlation fields (contract §2 `trace`; Cloud Logging special keys).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Trace {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    #[serde(
        rename = "logging.googleapis.com/trace",
        skip_serializing_if = "Option::is_none"
    )]
    pub gcp_trace: Option<String>,
    #[serde(
        rename = "logging.googleapis.com/spanId",
        skip_serializing_if = "Option::is_none"
    )]
    pub span_id: Option<String>,
}

/// Cloud Logging's `HttpRequest` object.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequest {
    pub request_method: String,
    pub request_url: String,
    pub status: u16,
    /// Cloud Logging spells sizes as decimal strings (int64 in JSON).
    #[serde(serialize_with = "decimal_string")]
    pub request_size: u64,
    #[serde(serialize_with = "decimal_string")]
    pub response_size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    pub remote_ip: String,
    /// Written as Cloud Logging's Duration string, e.g. `"0.001234s"` ([`latency`]).
    #[serde(serialize_with = "duration_string")]
    pub latency: std::time::Duration,
    pub protocol: &'static str,
}

fn decimal_string<S: serde::Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(n)
}

fn duration_string<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&Latency(*d))
}

/// Cloud Logging's Duration text, written straight into the line.
struct Latency(std::time::Duration);

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:06}s", self.0.as_secs(), self.0.subsec_micros())
    }
}

/// `tunnel_closed`.
#[derive(Debug, Clone, Serialize)]
pub struct TunnelClosed {
    pub id: String,
    pub conn: u64,
    pub client: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sio: Option<Sio>,
    pub duration_ms: f64,
    pub bytes_client_to_upstream: u64,
    pub bytes_upstream_to_client: u64,
    pub closed_by: ClosedBy,
    pub error: Option<String>,
    #[serde(rename = "httpRequest")]
    pub http_request: HttpRequest,
    #[serde(flatten)]
    pub trace: Trace,
}

/// `draining`.
#[derive(Debug, Clone, Serialize)]
pub struct Draining {
    pub open_tunnels: u64,
    pub open_requests: u64,
    pub deadline_s: f64,
}

/// `stopped`.
#[derive(Debug, Clone, Serialize)]
pub struct Stopped {
    pub drained: bool,
    pub tunnels_closed_by_shutdown: u64,
    pub uptime_s: f64,
    pub records_dropped: u64,
}

/// `records_dropped` (extension): stdout was blocked or closed and records were lost.
#[derive(Debug, Clone, Serialize)]
pub struct RecordsDropped {
    pub count: u64,
    pub total: u64,
}

/// `startup_failed` (extension): the one ERROR record before exit 1.
#[derive(Debug, Clone, Serialize)]
pub struct StartupFailed {
    pub error: String,
}

/// Milliseconds as a JSON number with microsecond resolution.
pub fn millis(d: std::time::Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// Trace id and span from `X-Cloud-Trace-Context` (`TRACE/SPAN;o=1`, decimal span) or
/// W3C `traceparent` (`00-TRACE-SPAN-01`, hex span); the Google header wins.
/// With a project, also the `logging.googleapis.com/trace` and `spanId` keys.
pub fn trace(cloud: Option<&str>, traceparent: Option<&str>, project: Option<&str>) -> Trace {
    let from_cloud = cloud.and_then(|v| {
        let (id, rest) = v.split_once('/').unwrap_or((v, ""));
        let span = rest.split(';').next().unwrap_or("");
        let span = span.parse::<u64>().ok().map(|n| format!("{n:016x}"));
        is_hex(id, 32).then(|| (id.to_ascii_lowercase(), span))
    });
    let from_w3c = || {
        traceparent.and_then(|v| {
            let mut parts = v.trim().split('-');
            let (_ver, id, span) = (parts.next()?, parts.next()?, parts.next()?);
            (is_hex(id, 32) && is_hex(span, 16))
                .then(|| (id.to_ascii_lowercase(), Some(span.to_ascii_lowercase())))
        })
    };
    let Some((id, span)) = from_cloud.or_else(from_w3c) else {
        return Trace::default();
    };
    let gcp_trace = project.map(|p| format!("projects/{p}/traces/{id}"));
    Trace {
        span_id: gcp_trace.as_ref().and(span),
        gcp_trace,
        trace: Some(id),
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(
            Latency(Duration::from_micros(1234)).to_string(),
            "0.001234s"
        );
        assert_eq!(
            Latency(Duration::from_millis(30_500)).to_string(),
            "30.500000s"
        );
        assert_eq!(millis(Duration::from_micros(1234)), 1.234);
    }

    #[test]
    fn traces() {
        let id = "105445aa7843bc8bf206b12000100000";
        let t = trace(Some(&format!("{id}/1;o=1")), None, None);
        assert_eq!(t.trace.as_deref(), Some(id));
        assert_eq!((t.gcp_trace, t.span_id), (None, None));

        let t = trace(Some(&format!("{id}/255;o=1")), None, Some("proj-1"));
        assert_eq!(t.gcp_trace.unwrap(), format!("projects/proj-1/traces/{id}"));
        assert_eq!(t.span_id.as_deref(), Some("00000000000000ff"));

        let tp = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
        let t = trace(None, Some(tp), Some("p"));
        assert_eq!(t.trace.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(t.span_id.as_deref(), Some("00f067aa0ba902b7"));

        let t = trace(Some("garbage"), Some(tp), None);
        assert_eq!(t.trace.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(
            trace(Some("xyz/1"), Some("00-short-x-01"), None)
                .trace
                .is_none()
        );
        assert!(trace(None, None, Some("p")).gcp_trace.is_none());
    }

    #[test]
    fn severities_and_enums_spell_as_the_contract() {
        let s = serde_json::to_string(&(
            Severity::Warning,
            Outcome::ClientAborted,
            ClosedBy::Shutdown,
        ));
        assert_eq!(s.unwrap(), r#"["WARNING","client_aborted","shutdown"]"#);
        assert_eq!(Severity::Error.as_str(), "ERROR");
    }
}
