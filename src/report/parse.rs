//! Reads one JSON object — a sockproxy record, or a Cloud Logging entry wrapping one in
//! `jsonPayload` — into a flat view of the fields the report uses. Pure.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::flags;

/// What [`parse`] makes of one JSON text.
// The record is consumed right after parsing; boxing it would cost an allocation per line.
#[allow(clippy::large_enum_variant)]
pub enum Parsed<'a> {
    /// A record (directly, or unwrapped from a Cloud Logging entry).
    Record(RawEntry<'a>),
    /// A Cloud Logging entry whose `textPayload` may hold a record line: parse it again.
    Text(Str<'a>),
    /// Valid JSON, but not a record.
    NotRecord,
    /// Not valid JSON; `truncated` when the text ended in the middle of a value.
    Invalid { truncated: bool },
}

/// Parses `json` (one JSON object, nothing else but whitespace around it).
pub fn parse(json: &[u8]) -> Parsed<'_> {
    match serde_json::from_slice::<RawEntry<'_>>(json) {
        Ok(raw) => {
            if raw.event.is_some() {
                return Parsed::Record(raw);
            }
            let RawEntry {
                json_payload,
                text_payload,
                timestamp,
                resource,
                http_request,
                trace,
                ..
            } = raw;
            if let Some(mut payload) = json_payload.filter(|p| p.event.is_some()) {
                // Cloud Logging moves `time`, `httpRequest` out of the payload; the pod name
                // lives in the resource labels.
                if payload.time.is_none() {
                    payload.time = timestamp;
                }
                if payload.pod.is_none() {
                    payload.pod = resource.and_then(|r| r.labels).and_then(|l| l.pod_name);
                }
                if payload.http_request.is_none() {
                    payload.http_request = http_request;
                }
                if payload.trace.is_none() {
                    payload.trace = trace;
                }
                return Parsed::Record(*payload);
            }
            match text_payload {
                Some(t) if t.contains('{') => Parsed::Text(t),
                _ => Parsed::NotRecord,
            }
        }
        Err(e) if e.classify() == serde_json::error::Category::Data => Parsed::NotRecord,
        Err(e) => Parsed::Invalid {
            truncated: e.classify() == serde_json::error::Category::Eof,
        },
    }
}

/// The subset of a record (or of a Cloud Logging entry) the report reads; everything else
/// is skipped without being stored. Numbers are read as `f64` so that both `400` and
/// `400.0` (how some exports print protobuf numbers) are accepted.
#[derive(Deserialize, Default)]
pub struct RawEntry<'a> {
    #[serde(borrow)]
    time: Option<Str<'a>>,
    #[serde(borrow)]
    event: Option<Str<'a>>,
    #[serde(borrow)]
    pod: Option<Str<'a>>,
    #[serde(borrow)]
    pod_ip: Option<Str<'a>>,
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    method: Option<Str<'a>>,
    #[serde(borrow)]
    path: Option<Str<'a>>,
    #[serde(borrow)]
    sio: Option<RawSio<'a>>,
    status: Option<f64>,
    #[serde(borrow)]
    headers: Option<RawHeaders<'a>>,
    #[serde(borrow)]
    sio_error: Option<RawSioError<'a>>,
    flags: Option<Flags>,
    duration_ms: Option<f64>,
    #[serde(borrow)]
    outcome: Option<Str<'a>>,
    #[serde(borrow)]
    closed_by: Option<Str<'a>>,
    #[serde(borrow)]
    upstream_error: Option<Str<'a>>,
    #[serde(rename = "httpRequest", borrow)]
    http_request: Option<RawHttpRequest<'a>>,
    drained: Option<bool>,
    tunnels_closed_by_shutdown: Option<f64>,
    open_tunnels: Option<f64>,
    open_requests: Option<f64>,
    deadline_s: Option<f64>,
    count: Option<f64>,
    /// The record's trace id; on a Cloud Logging entry, `projects/P/traces/ID`.
    #[serde(borrow)]
    trace: Option<Str<'a>>,
    // Cloud Logging entry fields.
    #[serde(borrow)]
    timestamp: Option<Str<'a>>,
    #[serde(rename = "jsonPayload", borrow)]
    json_payload: Option<Box<RawEntry<'a>>>,
    #[serde(rename = "textPayload", borrow)]
    text_payload: Option<Str<'a>>,
    #[serde(borrow)]
    resource: Option<RawResource<'a>>,
}

#[derive(Deserialize, Default)]
struct RawSio<'a> {
    #[serde(borrow)]
    transport: Option<Str<'a>>,
    #[serde(borrow)]
    sid: Option<Str<'a>>,
    handshake: Option<bool>,
}

#[derive(Deserialize, Default)]
struct RawHeaders<'a> {
    #[serde(borrow)]
    upgrade: Option<HeaderValue<'a>>,
    #[serde(borrow)]
    connection: Option<HeaderValue<'a>>,
    #[serde(borrow)]
    host: Option<HeaderValue<'a>>,
    #[serde(borrow)]
    origin: Option<HeaderValue<'a>>,
    #[serde(rename = "user-agent", borrow)]
    user_agent: Option<HeaderValue<'a>>,
    #[serde(rename = "sec-websocket-key", borrow)]
    sec_websocket_key: Option<HeaderValue<'a>>,
    #[serde(rename = "sec-websocket-version", borrow)]
    sec_websocket_version: Option<HeaderValue<'a>>,
    #[serde(rename = "x-forwarded-for", borrow)]
    x_forwarded_for: Option<HeaderValue<'a>>,
}

#[derive(Deserialize, Default)]
struct RawSioError<'a> {
    code: Option<f64>,
    #[serde(borrow)]
    message: Option<Str<'a>>,
}

#[derive(Deserialize, Default)]
struct RawHttpRequest<'a> {
    #[serde(rename = "requestUrl", borrow)]
    request_url: Option<Str<'a>>,
    #[serde(rename = "remoteIp", borrow)]
    remote_ip: Option<Str<'a>>,
    #[serde(borrow)]
    protocol: Option<Str<'a>>,
}

#[derive(Deserialize, Default)]
struct RawResource<'a> {
    #[serde(borrow)]
    labels: Option<RawResourceLabels<'a>>,
}

#[derive(Deserialize, Default)]
struct RawResourceLabels<'a> {
    #[serde(borrow)]
    pod_name: Option<Str<'a>>,
}

/// A string field, borrowed from the input unless it holds escapes. (serde's own
/// `#[serde(borrow)]` does not reach through `Option<Cow<str>>`: it would copy each one.)
pub struct Str<'a>(Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A header as recorded: one string, or an array of the values of a repeated header
/// (joined here with `", "`, which is what they mean).
struct HeaderValue<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for HeaderValue<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HeaderValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a header value or an array of them")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(HeaderValue(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(HeaderValue(Cow::Owned(v.to_string())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut joined = String::new();
                while let Some(v) = seq.next_element::<Str<'de>>()? {
                    if !joined.is_empty() {
                        joined.push_str(", ");
                    }
                    joined.push_str(&v);
                }
                Ok(HeaderValue(Cow::Owned(joined)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A record's `flags` as a bit set over [`flags::ALL`]; unknown names are ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags(u16);

impl Flags {
    pub const UPGRADE_HEADER_MISSING: Flags = Flags(1 << 0);
    pub const CONNECTION_UPGRADE_MISSING: Flags = Flags(1 << 1);
    pub const SID_UNKNOWN: Flags = Flags(1 << 2);
    pub const SID_NOT_ISSUED_HERE: Flags = Flags(1 << 3);
    pub const ORIGIN_HOST_MISMATCH: Flags = Flags(1 << 4);
    pub const FORBIDDEN: Flags = Flags(1 << 5);
    pub const HEALTH_CHECK: Flags = Flags(1 << 6);
    pub const POLL_ABORTED: Flags = Flags(1 << 7);
    pub const UPSTREAM_UNREACHABLE: Flags = Flags(1 << 8);

    /// The flag called `name`, if it is one of the contract's.
    pub fn named(name: &str) -> Option<Flags> {
        flags::ALL
            .iter()
            .position(|f| *f == name)
            .map(|i| Flags(1 << i))
    }

    pub fn has(self, f: Flags) -> bool {
        self.0 & f.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn insert(&mut self, f: Flags) {
        self.0 |= f.0;
    }
}

impl<'de> Deserialize<'de> for Flags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Flags;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of flag names")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Flags, A::Error> {
                let mut out = Flags::default();
                while let Some(name) = seq.next_element::<Str<'de>>()? {
                    if let Some(f) = Flags::named(&name) {
                        out.insert(f);
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V)
    }
}

/// The record's `event`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Listening,
    Request,
    Upgrade,
    TunnelClosed,
    Draining,
    Stopped,
    RecordsDropped,
    StartupFailed,
    ClientError,
    ConnectionLimit,
    Other,
}

impl Event {
    pub const ALL: [Event; 11] = [
        Event::Listening,
        Event::Request,
        Event::Upgrade,
        Event::TunnelClosed,
        Event::Draining,
        Event::Stopped,
        Event::RecordsDropped,
        Event::StartupFailed,
        Event::ClientError,
        Event::ConnectionLimit,
        Event::Other,
    ];

    fn of(s: &str) -> Event {
        match s {
            "listening" => Event::Listening,
            "request" => Event::Request,
            "upgrade" => Event::Upgrade,
            "tunnel_closed" => Event::TunnelClosed,
            "draining" => Event::Draining,
            "stopped" => Event::Stopped,
            "records_dropped" => Event::RecordsDropped,
            "startup_failed" => Event::StartupFailed,
            "client_error" => Event::ClientError,
            "connection_limit" => Event::ConnectionLimit,
            _ => Event::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Event::Listening => "listening",
            Event::Request => "request",
            Event::Upgrade => "upgrade",
            Event::TunnelClosed => "tunnel_closed",
            Event::Draining => "draining",
            Event::Stopped => "stopped",
            Event::RecordsDropped => "records_dropped",
            Event::StartupFailed => "startup_failed",
            Event::ClientError => "client_error",
            Event::ConnectionLimit => "connection_limit",
            Event::Other => "other",
        }
    }
}

/// `sio.transport`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    None,
    Polling,
    Websocket,
    Other,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::None => "-",
            Transport::Polling => "polling",
            Transport::Websocket => "websocket",
            Transport::Other => "other",
        }
    }
}

/// `outcome` of a request record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Complete,
    ClientAborted,
    UpstreamError,
    Shutdown,
    Unknown,
}

/// `closed_by` of a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClosedBy {
    Client,
    Upstream,
    Shutdown,
    Error,
    /// sockproxy's own `--tunnel-idle-timeout`.
    IdleTimeout,
    Unknown,
}

impl ClosedBy {
    pub const ALL: [ClosedBy; 6] = [
        ClosedBy::Client,
        ClosedBy::Upstream,
        ClosedBy::Shutdown,
        ClosedBy::Error,
        ClosedBy::IdleTimeout,
        ClosedBy::Unknown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ClosedBy::Client => "client",
            ClosedBy::Upstream => "upstream",
            ClosedBy::Shutdown => "shutdown",
            ClosedBy::Error => "error",
            ClosedBy::IdleTimeout => "idle_timeout",
            ClosedBy::Unknown => "unknown",
        }
    }
}

/// A flat, borrowed view of one record.
#[derive(Clone, Copy, Debug)]
pub struct Rec<'r> {
    pub event: Event,
    /// Microseconds since the Unix epoch.
    pub time: Option<i64>,
    pub pod: Option<&'r str>,
    pub pod_ip: Option<&'r str>,
    pub id: Option<&'r str>,
    pub method: Option<&'r str>,
    pub path: Option<&'r str>,
    /// `Some` on socket.io paths.
    pub transport: Option<Transport>,
    pub sid: Option<&'r str>,
    pub handshake: bool,
    pub status: Option<u16>,
    pub upgrade: Option<&'r str>,
    pub connection: Option<&'r str>,
    pub host: Option<&'r str>,
    pub origin: Option<&'r str>,
    pub user_agent: Option<&'r str>,
    /// Whether the request carried `Sec-WebSocket-Key` and `Sec-WebSocket-Version`: every
    /// browser's websocket attempt does, whatever a hop did to Upgrade and Connection.
    pub ws_key: bool,
    /// The client as the load balancer saw it: `httpRequest.remoteIp`, else the first
    /// `X-Forwarded-For` entry.
    pub remote_ip: Option<&'r str>,
    /// `httpRequest.protocol` (`HTTP/1.1`, `HTTP/1.0`, `websocket`).
    pub protocol: Option<&'r str>,
    pub error_code: Option<i64>,
    pub error_message: Option<&'r str>,
    pub flags: Flags,
    pub duration_ms: Option<f64>,
    pub outcome: Outcome,
    pub closed_by: ClosedBy,
    pub upstream_error: Option<&'r str>,
    /// Whether the upgrade URL (a tunnel's `httpRequest.requestUrl`) carried a `sid`: a
    /// tunnel without one was a websocket-only handshake, its sid issued on that pod.
    pub url_has_sid: Option<bool>,
    pub drained: Option<bool>,
    pub tunnels_closed_by_shutdown: Option<u64>,
    pub open_tunnels: Option<u64>,
    pub open_requests: Option<u64>,
    pub deadline_s: Option<f64>,
    /// `records_dropped.count`.
    pub count: Option<u64>,
    /// `trace`: the id from `X-Cloud-Trace-Context` or `traceparent`.
    pub trace: Option<&'r str>,
}

impl<'r> Rec<'r> {
    /// The view of a parsed record; `None` when it has no `event`.
    pub fn of(raw: &'r RawEntry<'_>) -> Option<Rec<'r>> {
        let event = Event::of(raw.event.as_deref()?);
        let sio = raw.sio.as_ref();
        let headers = raw.headers.as_ref();
        Some(Rec {
            event,
            time: raw.time.as_deref().and_then(parse_time),
            pod: raw.pod.as_deref().filter(|p| !p.is_empty()),
            pod_ip: raw.pod_ip.as_deref().filter(|p| !p.is_empty()),
            id: raw.id.as_deref(),
            method: raw.method.as_deref(),
            path: raw.path.as_deref(),
            transport: sio.map(|s| transport_of(s.transport.as_deref())),
            sid: sio.and_then(|s| s.sid.as_deref()).filter(|s| !s.is_empty()),
            handshake: sio.and_then(|s| s.handshake).unwrap_or(false),
            status: raw.status.map(|s| s as u16),
            upgrade: headers.and_then(|h| header(&h.upgrade)),
            connection: headers.and_then(|h| header(&h.connection)),
            host: headers.and_then(|h| header(&h.host)),
            origin: headers.and_then(|h| header(&h.origin)),
            user_agent: headers.and_then(|h| header(&h.user_agent)),
            ws_key: headers.is_some_and(|h| {
                h.sec_websocket_key.is_some() && h.sec_websocket_version.is_some()
            }),
            remote_ip: remote_ip(raw),
            protocol: raw
                .http_request
                .as_ref()
                .and_then(|h| h.protocol.as_deref()),
            error_code: raw
                .sio_error
                .as_ref()
                .and_then(|e| e.code)
                .map(|c| c as i64),
            error_message: raw.sio_error.as_ref().and_then(|e| e.message.as_deref()),
            flags: raw.flags.unwrap_or_default(),
            duration_ms: raw.duration_ms,
            outcome: outcome_of(raw.outcome.as_deref()),
            closed_by: closed_by_of(raw.closed_by.as_deref()),
            upstream_error: raw.upstream_error.as_deref(),
            url_has_sid: raw
                .http_request
                .as_ref()
                .filter(|_| event == Event::TunnelClosed)
                .and_then(|h| h.request_url.as_deref())
                .map(url_has_sid),
            drained: raw.drained,
            tunnels_closed_by_shutdown: raw.tunnels_closed_by_shutdown.map(|n| n as u64),
            open_tunnels: raw.open_tunnels.map(|n| n as u64),
            open_requests: raw.open_requests.map(|n| n as u64),
            deadline_s: raw.deadline_s,
            count: raw.count.map(|n| n as u64),
            trace: raw.trace.as_deref().filter(|t| !t.is_empty()),
        })
    }
}

/// The client: the load balancer's `remoteIp`, else the first X-Forwarded-For address.
fn remote_ip<'r>(raw: &'r RawEntry<'_>) -> Option<&'r str> {
    raw.http_request
        .as_ref()
        .and_then(|h| h.remote_ip.as_deref())
        .or_else(|| {
            raw.headers
                .as_ref()
                .and_then(|h| header(&h.x_forwarded_for))
                .and_then(|x| x.split(',').next())
                .map(str::trim)
        })
        .filter(|ip| !ip.is_empty())
}

fn transport_of(s: Option<&str>) -> Transport {
    match s {
        None => Transport::None,
        Some("polling") => Transport::Polling,
        Some("websocket") => Transport::Websocket,
        Some(_) => Transport::Other,
    }
}

fn outcome_of(s: Option<&str>) -> Outcome {
    match s {
        Some("complete") => Outcome::Complete,
        Some("client_aborted") => Outcome::ClientAborted,
        Some("upstream_error") => Outcome::UpstreamError,
        Some("shutdown") => Outcome::Shutdown,
        _ => Outcome::Unknown,
    }
}

fn closed_by_of(s: Option<&str>) -> ClosedBy {
    match s {
        Some("client") => ClosedBy::Client,
        Some("upstream") => ClosedBy::Upstream,
        Some("shutdown") => ClosedBy::Shutdown,
        Some("error") => ClosedBy::Error,
        Some("idle_timeout") => ClosedBy::IdleTimeout,
        _ => ClosedBy::Unknown,
    }
}

fn header<'r>(v: &'r Option<HeaderValue<'_>>) -> Option<&'r str> {
    v.as_ref().map(|v| v.0.as_ref())
}

/// Whether the query of `url` has a `sid` parameter.
fn url_has_sid(url: &str) -> bool {
    match url.split_once('?') {
        Some((_, q)) => q.split('&').any(|kv| kv.starts_with("sid=")),
        None => false,
    }
}

/// Parses an RFC 3339 time (`2026-11-25T12:00:00.123456Z`, any fraction length, `Z` or an
/// offset) into microseconds since the Unix epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let mut n = 0i64;
        for &c in &b[from..to] {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + i64::from(c - b'0');
        }
        Some(n)
    };
    let seps = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if seps.iter().any(|&(i, c)| b[i] != c) || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 6 {
                micros = micros * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..6 {
            micros *= 10;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        &c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let o = num(i + 1, i + 3)? * 3600 + num(i + 4, i + 6)? * 60;
            if c == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(secs * 1_000_000 + micros)
}

/// Formats microseconds since the epoch as RFC 3339 UTC with six fractional digits.
pub fn format_time(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

// Howard Hinnant's `days_from_civil` / `civil_from_days`.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "2026-11-25T12:48:41.584831Z",
                Some("2026-11-25T12:48:41.584831Z"),
            ),
            ("1970-01-01T00:00:00Z", Some("1970-01-01T00:00:00.000000Z")),
            (
                "2026-11-25T12:48:41.584831123Z",
                Some("2026-11-25T12:48:41.584831Z"),
            ),
            (
                "2026-11-25T12:48:41.5Z",
                Some("2026-11-25T12:48:41.500000Z"),
            ),
            (
                "2026-11-25T13:48:41.5+01:00",
                Some("2026-11-25T12:48:41.500000Z"),
            ),
            (
                "2026-11-25T11:48:41.5-01:00",
                Some("2026-11-25T12:48:41.500000Z"),
            ),
            ("2024-02-29T23:59:59Z", Some("2024-02-29T23:59:59.000000Z")),
            (
                "1969-12-31T23:59:59.5Z",
                Some("1969-12-31T23:59:59.500000Z"),
            ),
            ("2026-11-25 12:48:41Z", Some("2026-11-25T12:48:41.000000Z")),
            ("2026-11-25T12:48:41", None),
            ("2026-11-25T12:48:41.Z", None),
            ("2026-13-25T12:48:41Z", None),
            ("2026-11-25T12:48:41Zjunk", None),
            ("not a time at all, no", None),
            ("", None),
        ];
        for (input, want) in cases {
            let got = parse_time(input).map(format_time);
            assert_eq!(got.as_deref(), *want, "{input}");
        }
        assert_eq!(parse_time("1970-01-01T00:00:01.000001Z"), Some(1_000_001));
    }

    #[test]
    fn flags_by_name() {
        let cases: &[(&str, Option<Flags>)] = &[
            (
                "upgrade_header_missing",
                Some(Flags::UPGRADE_HEADER_MISSING),
            ),
            (
                "connection_upgrade_missing",
                Some(Flags::CONNECTION_UPGRADE_MISSING),
            ),
            ("sid_unknown", Some(Flags::SID_UNKNOWN)),
            ("sid_not_issued_here", Some(Flags::SID_NOT_ISSUED_HERE)),
            ("origin_host_mismatch", Some(Flags::ORIGIN_HOST_MISMATCH)),
            ("forbidden", Some(Flags::FORBIDDEN)),
            ("health_check", Some(Flags::HEALTH_CHECK)),
            ("poll_aborted", Some(Flags::POLL_ABORTED)),
            ("upstream_unreachable", Some(Flags::UPSTREAM_UNREACHABLE)),
            ("something_new", None),
        ];
        for (name, want) in cases {
            assert!(Flags::named(name) == *want, "{name}");
        }
    }

    fn view<T>(json: &str, f: impl FnOnce(Option<Rec<'_>>) -> T) -> T {
        match parse(json.as_bytes()) {
            Parsed::Record(raw) => f(Rec::of(&raw)),
            _ => f(None),
        }
    }

    #[test]
    fn kinds_of_input() {
        // (input, what parse makes of it: "record", "text", "not", "invalid", "truncated")
        let cases: &[(&str, &str)] = &[
            (
                r#"{"event":"request","time":"2026-11-25T12:00:00.000000Z"}"#,
                "record",
            ),
            (r#"{"event":"something_new"}"#, "record"),
            (
                r#"{"jsonPayload":{"event":"request"},"timestamp":"x"}"#,
                "record",
            ),
            (r#"{"jsonPayload":{"message":"hello"}}"#, "not"),
            (r#"{"textPayload":"{\"event\":\"request\"}"}"#, "text"),
            (r#"{"textPayload":"plain words"}"#, "not"),
            (r#"{"level":"info","msg":"other json"}"#, "not"),
            (r#"{"event":"request","status":"four hundred"}"#, "not"),
            (r#"[1,2,3]"#, "not"),
            (
                r#"{"event":"request","time":"2026-11-25T12:00"#,
                "truncated",
            ),
            (r#"{"event":"request"} trailing"#, "invalid"),
            ("{not json}", "invalid"),
        ];
        for (input, want) in cases {
            let got = match parse(input.as_bytes()) {
                Parsed::Record(_) => "record",
                Parsed::Text(_) => "text",
                Parsed::NotRecord => "not",
                Parsed::Invalid { truncated: true } => "truncated",
                Parsed::Invalid { truncated: false } => "invalid",
            };
            assert_eq!(got, *want, "{input}");
        }
    }

    #[test]
    fn record_fields() {
        let line = r#"{"time":"2026-11-25T12:48:32.700734Z","severity":"WARNING","message":"GET x 400","event":"request","pod":"pod-a","id":"98e91d-3","conn":3,"method":"GET","path":"/socket.io/","sio":{"eio":"4","transport":"websocket","sid":"IZNn","t":null,"handshake":false},"status":400,"headers":{"upgrade":null,"connection":["keep-alive","Upgrade"],"host":"127.0.0.1","origin":null,"user-agent":"ua/1"},"sio_error":{"code":3,"message":"Bad request"},"flags":["upgrade_header_missing","brand_new_flag"],"duration_ms":13.087,"outcome":"complete","httpRequest":{"requestUrl":"http://h/socket.io/?EIO=4&transport=websocket&sid=IZNn","status":400}}"#;
        view(line, |r| {
            let r = r.expect("a record");
            assert_eq!(r.event, Event::Request);
            assert_eq!(
                r.time.map(format_time).as_deref(),
                Some("2026-11-25T12:48:32.700734Z")
            );
            assert_eq!(r.pod, Some("pod-a"));
            assert_eq!(r.id, Some("98e91d-3"));
            assert_eq!(r.transport, Some(Transport::Websocket));
            assert_eq!(r.sid, Some("IZNn"));
            assert!(!r.handshake);
            assert_eq!(r.status, Some(400));
            assert_eq!(r.upgrade, None);
            assert_eq!(r.connection, Some("keep-alive, Upgrade"));
            assert_eq!(r.host, Some("127.0.0.1"));
            assert_eq!(r.user_agent, Some("ua/1"));
            assert_eq!(r.error_code, Some(3));
            assert_eq!(r.error_message, Some("Bad request"));
            assert!(r.flags.has(Flags::UPGRADE_HEADER_MISSING));
            assert!(!r.flags.has(Flags::SID_UNKNOWN));
            assert_eq!(r.outcome, Outcome::Complete);
            assert_eq!(r.url_has_sid, None, "read on tunnels only");
        });
    }

    #[test]
    fn cloud_logging_entry_fills_time_pod_and_http_request() {
        let entry = r#"{"insertId":"x1","jsonPayload":{"message":"tunnel closed","event":"tunnel_closed","id":"a-2","sio":{"sid":"S1"},"duration_ms":2962.6,"closed_by":"client"},"httpRequest":{"requestUrl":"http://h/socket.io/?EIO=4&transport=websocket","protocol":"websocket"},"resource":{"type":"k8s_container","labels":{"pod_name":"web-7d9f","container_name":"sockproxy"}},"timestamp":"2026-11-25T12:55:51.915Z","severity":"INFO"}"#;
        view(entry, |r| {
            let r = r.expect("a record");
            assert_eq!(r.event, Event::TunnelClosed);
            assert_eq!(r.pod, Some("web-7d9f"));
            assert_eq!(
                r.time.map(format_time).as_deref(),
                Some("2026-11-25T12:55:51.915000Z")
            );
            assert_eq!(r.closed_by, ClosedBy::Client);
            assert_eq!(r.url_has_sid, Some(false));
            assert_eq!(r.sid, Some("S1"));
        });
        // The payload's own pod wins over the resource label.
        let own = r#"{"jsonPayload":{"event":"draining","pod":"pod-a","open_tunnels":1.0},"resource":{"labels":{"pod_name":"other"}},"timestamp":"2026-11-25T12:55:51Z"}"#;
        view(own, |r| {
            let r = r.expect("a record");
            assert_eq!(r.pod, Some("pod-a"));
            assert_eq!(r.open_tunnels, Some(1));
        });
    }

    #[test]
    fn url_sid() {
        let cases = [
            (
                "http://h/socket.io/?EIO=4&transport=websocket&sid=abc",
                true,
            ),
            ("http://h/socket.io/?sid=abc", true),
            ("http://h/socket.io/?EIO=4&transport=websocket", false),
            ("http://h/socket.io/?EIO=4&xsid=1", false),
            ("http://h/socket.io/", false),
        ];
        for (url, want) in cases {
            assert_eq!(url_has_sid(url), want, "{url}");
        }
    }
}
