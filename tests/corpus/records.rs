//! Builds real `sockproxy::record::Record`s with the project's own code, the way the
//! running proxy fills them (src/exchange.rs `Draft::into_record`, src/proxy.rs
//! `tunnel_record`, src/server.rs for listening / draining / stopped).

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use sockproxy::capture::{self, Snapshot};
use sockproxy::flags::{self, Facts};
use sockproxy::record::{
    self, ClosedBy, Draining, Event, Exchange, HttpRequest, Listening, Outcome, Record, Severity,
    Stopped, TunnelClosed,
};
use sockproxy::sio::{self, Sio};

/// What sockproxy's `--sio-path` default matches.
pub const SIO_PATH: &str = "/socket.io/";

/// One exchange as the proxy saw it: the request head nginx sent, what came back.
#[derive(Debug, Clone)]
pub struct Ex {
    pub method: &'static str,
    pub path: String,
    pub query: Option<String>,
    /// Request headers as nginx sent them (any order: capture fixes the order).
    pub headers: Vec<(&'static str, String)>,
    /// Status sent to the client; 0 when the exchange ended before a response.
    pub status: u16,
    pub resp_headers: Vec<(&'static str, String)>,
    /// The response body's first bytes as the upstream sent them (the proxy peeks at
    /// them to find the handshake sid or the engine.io error).
    pub body: Vec<u8>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub outcome: Outcome,
    /// sockproxy answered itself (502): its reason, and whether the connect failed.
    pub upstream_error: Option<String>,
    pub unreachable: bool,
    /// Whether this process saw the request's sid issued (`None` without a sid).
    pub sid_issued_here: Option<bool>,
    /// The upstream answered 101: an `upgrade` record, not a `request`.
    pub upgrade: bool,
}

/// Ids and the connection an exchange got on its pod.
#[derive(Debug, Clone)]
pub struct Slot {
    pub id: String,
    pub conn: u64,
    pub client: String,
}

fn header_map(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(
            HeaderName::from_static(k),
            HeaderValue::from_str(v).expect("generated header values are visible ASCII"),
        );
    }
    m
}

fn target(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}

/// Cloud Logging's `requestUrl` as src/exchange.rs builds it: scheme from
/// `X-Forwarded-Proto` (else http), host from `Host`.
fn request_url(headers: &Snapshot, target: &str) -> String {
    match headers.first(&header::HOST) {
        Some(host) => {
            let scheme = headers
                .first(&HeaderName::from_static("x-forwarded-proto"))
                .and_then(|v| v.split(',').next())
                .map(str::trim)
                .filter(|s| *s == "https" || *s == "http")
                .unwrap_or("http");
            format!("{scheme}://{host}{target}")
        }
        None => target.to_string(),
    }
}

/// `remoteIp`: the first `X-Forwarded-For` entry, else the peer's IP.
fn remote_ip(headers: &Snapshot, client: &str) -> String {
    headers
        .first(&HeaderName::from_static("x-forwarded-for"))
        .and_then(|v| v.split(',').next())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            client
                .rsplit_once(':')
                .map_or(client, |(ip, _)| ip)
                .to_string()
        })
}

/// The record's human line, as src/exchange.rs `message()` writes it.
fn message(
    method: &str,
    target: &str,
    status: u16,
    outcome: Outcome,
    elapsed: Duration,
    flags: &[&str],
) -> String {
    let mut m = format!("{method} {target} {status}");
    match outcome {
        Outcome::ClientAborted => m.push_str(" (client went away)"),
        Outcome::Shutdown => m.push_str(" (cut by shutdown)"),
        _ => {}
    }
    m.push_str(&format!(" {:.1}ms", record::millis(elapsed)));
    if !flags.is_empty() {
        m.push_str(&format!(" [{}]", flags.join(",")));
    }
    m
}

/// What a tunnel's record carries over from its upgrade.
#[derive(Debug, Clone)]
pub struct TunnelInfo {
    pub slot: Slot,
    pub path: String,
    pub sio: Option<Sio>,
    pub method: String,
    pub request_url: String,
    pub user_agent: Option<String>,
    pub remote_ip: String,
    pub trace: record::Trace,
}

/// The `request` or `upgrade` record of `ex`, and for an upgrade what its tunnel needs.
pub fn exchange(
    ex: &Ex,
    slot: &Slot,
    elapsed: Duration,
    project: Option<&str>,
) -> (Record, Option<TunnelInfo>) {
    let headers = capture::request(&header_map(&ex.headers), &[]);
    let resp_headers = capture::response(&header_map(&ex.resp_headers), &[]);
    let trace = record::trace(
        headers.first(&HeaderName::from_static("x-cloud-trace-context")),
        headers.first(&HeaderName::from_static("traceparent")),
        project,
    );
    let mut sio = ex
        .path
        .contains(SIO_PATH)
        .then(|| Sio::from_query(ex.query.as_deref()));
    let mut sio_error = None;
    // The proxy peeks at a body only on socket.io paths, for errors and for a
    // handshake's 200, and never at its own answers.
    if let Some(s) = sio.as_mut()
        && ex.upstream_error.is_none()
        && ex.status != 0
    {
        if ex.status >= 400 {
            let e = sio::decode_error(&ex.body);
            let whole = match ex.outcome {
                Outcome::Complete => true,
                Outcome::ClientAborted => e.code.is_some(),
                _ => false,
            };
            sio_error = whole.then_some(e);
        } else if ex.status == 200
            && s.sid.is_none()
            && let Some(sid) = sio::open_packet_sid(&ex.body)
        {
            s.sid = Some(sid);
            s.handshake = true;
        }
    }
    let facts = Facts {
        method: ex.method,
        sio: sio.as_ref(),
        headers: &headers,
        status: ex.status,
        sio_error: sio_error.as_ref(),
        sid_issued_here: ex.sid_issued_here,
        outcome: ex.outcome,
        upstream_unreachable: ex.unreachable,
    };
    let flags = flags::derive(&facts);
    let severity = if ex.status >= 400
        || ex.outcome != Outcome::Complete
        || flags.iter().any(|f| *f != flags::HEALTH_CHECK)
    {
        Severity::Warning
    } else {
        Severity::Info
    };
    let target = target(&ex.path, ex.query.as_deref());
    let message = message(ex.method, &target, ex.status, ex.outcome, elapsed, &flags);
    let url = request_url(&headers, &target);
    let user_agent = headers.first(&header::USER_AGENT).map(str::to_string);
    let remote = remote_ip(&headers, &slot.client);
    let http_request = HttpRequest {
        request_method: ex.method.to_string(),
        request_url: url.clone(),
        status: ex.status,
        request_size: ex.bytes_in,
        response_size: ex.bytes_out,
        user_agent: user_agent.clone(),
        remote_ip: remote.clone(),
        latency: elapsed,
        protocol: "HTTP/1.1",
    };
    let tunnel = ex.upgrade.then(|| TunnelInfo {
        slot: slot.clone(),
        path: ex.path.clone(),
        sio: sio.clone(),
        method: ex.method.to_string(),
        request_url: url,
        user_agent,
        remote_ip: remote,
        trace: trace.clone(),
    });
    let e = Exchange {
        id: slot.id.clone(),
        conn: slot.conn,
        client: slot.client.clone(),
        method: ex.method.to_string(),
        path: ex.path.clone(),
        query: ex.query.clone(),
        sio,
        status: ex.status,
        headers,
        resp_headers,
        sio_error,
        flags,
        duration_ms: record::millis(elapsed),
        bytes_in: ex.bytes_in,
        bytes_out: ex.bytes_out,
        outcome: ex.outcome,
        upstream_error: ex.upstream_error.clone(),
        http_request,
        trace,
    };
    let event = if ex.upgrade {
        Event::Upgrade(Box::new(e))
    } else {
        Event::Request(Box::new(e))
    };
    (
        Record {
            severity,
            message,
            event,
        },
        tunnel,
    )
}

/// How a tunnel ended.
#[derive(Debug, Clone)]
pub struct TunnelEnd {
    pub lifetime: Duration,
    pub c2u: u64,
    pub u2c: u64,
    pub closed_by: ClosedBy,
    pub error: Option<String>,
    /// The sid of a websocket-only handshake's open packet (the first frame).
    pub first_frame_sid: Option<String>,
}

/// The `tunnel_closed` record, as src/proxy.rs `tunnel_record` writes it.
pub fn tunnel_closed(info: &TunnelInfo, end: &TunnelEnd) -> Record {
    let mut sio = info.sio.clone();
    if let (Some(s), Some(sid)) = (sio.as_mut(), end.first_frame_sid.as_ref())
        && s.sid.is_none()
    {
        s.sid = Some(sid.clone());
    }
    Record {
        severity: if end.closed_by == ClosedBy::Error {
            Severity::Warning
        } else {
            Severity::Info
        },
        message: format!(
            "tunnel {} closed by {} after {:.3}s ({} B client→upstream, {} B upstream→client)",
            info.slot.id,
            end.closed_by.as_str(),
            end.lifetime.as_secs_f64(),
            end.c2u,
            end.u2c
        ),
        event: Event::TunnelClosed(Box::new(TunnelClosed {
            id: info.slot.id.clone(),
            conn: info.slot.conn,
            client: info.slot.client.clone(),
            path: info.path.clone(),
            sio,
            duration_ms: record::millis(end.lifetime),
            bytes_client_to_upstream: end.c2u,
            bytes_upstream_to_client: end.u2c,
            closed_by: end.closed_by,
            error: end.error.clone(),
            http_request: HttpRequest {
                request_method: info.method.clone(),
                request_url: info.request_url.clone(),
                status: 101,
                request_size: end.c2u,
                response_size: end.u2c,
                user_agent: info.user_agent.clone(),
                remote_ip: info.remote_ip.clone(),
                latency: end.lifetime,
                protocol: "websocket",
            },
            trace: info.trace.clone(),
        })),
    }
}

/// sockproxy's configuration as its `listening` record shows it.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub admin: Option<String>,
    pub upstream: String,
    pub log_all: bool,
    pub drain_timeout_s: f64,
}

pub fn listening(c: &Config) -> Record {
    Record {
        severity: Severity::Info,
        message: format!(
            "sockproxy {} listening on {}, upstream {}",
            env!("CARGO_PKG_VERSION"),
            c.listen,
            c.upstream
        ),
        event: Event::Listening(Listening {
            listen: c.listen.clone(),
            admin: c.admin.clone(),
            upstream: c.upstream.clone(),
            version: env!("CARGO_PKG_VERSION"),
            sio_path: SIO_PATH.to_string(),
            log_all: c.log_all,
            drain_timeout_s: c.drain_timeout_s,
        }),
    }
}

pub fn draining(open_tunnels: u64, open_requests: u64, deadline_s: f64) -> Record {
    Record {
        severity: Severity::Info,
        message: format!(
            "draining: {open_tunnels} tunnels, {open_requests} requests open, deadline {deadline_s:.0}s"
        ),
        event: Event::Draining(Draining {
            open_tunnels,
            open_requests,
            deadline_s,
        }),
    }
}

pub fn stopped(drained: bool, closed_by_shutdown: u64, uptime: Duration) -> Record {
    Record {
        severity: if drained {
            Severity::Info
        } else {
            Severity::Warning
        },
        message: format!(
            "stopped ({}), {closed_by_shutdown} tunnels closed by shutdown",
            if drained {
                "drained"
            } else {
                "drain cut short"
            }
        ),
        event: Event::Stopped(Stopped {
            drained,
            tunnels_closed_by_shutdown: closed_by_shutdown,
            uptime_s: (uptime.as_millis() as f64) / 1000.0,
            records_dropped: 0,
        }),
    }
}
