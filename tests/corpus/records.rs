//! Builds real `sockproxy::record::Record`s with the project's own code: requests,
//! upgrades and tunnels with the proxy's own builders (src/recorder.rs
//! `exchange_record`, `tunnel_record`); listening / draining / stopped as src/server.rs
//! fills them.

use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use sockproxy::capture;
use sockproxy::conn::Peer;
use sockproxy::record::{
    self, ClosedBy, Draining, Event, Listening, Outcome, Record, Severity, Stopped,
};
use sockproxy::recorder::{self, ExchangeFacts, TunnelStart};
use sockproxy::sio::Sio;
use sockproxy::tunnel::Spliced;

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

/// What a tunnel's record carries over from its upgrade.
#[derive(Debug, Clone)]
pub struct TunnelInfo {
    pub start: TunnelStart,
    pub peer: Peer,
}

/// The `request` or `upgrade` record of `ex`, and for an upgrade what its tunnel needs,
/// built by the proxy's own `recorder::exchange_record`.
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
    let sio = ex
        .path
        .contains(SIO_PATH)
        .then(|| Sio::from_query(ex.query.as_deref()));
    // The proxy keeps a body only on socket.io paths, and never of its own answers.
    let body =
        (sio.is_some() && ex.upstream_error.is_none() && ex.status != 0).then(|| ex.body.clone());
    let facts = ExchangeFacts {
        id: slot.id.clone(),
        method: ex.method.to_string(),
        path: ex.path.clone(),
        query: ex.query.clone(),
        sio,
        headers,
        version: http::Version::HTTP_11,
        trace,
        status: ex.status,
        resp_headers,
        upstream_error: ex.upstream_error.clone(),
        upstream_unreachable: ex.unreachable,
        bytes_in: ex.bytes_in,
        bytes_out: ex.bytes_out,
        body,
        sid_issued_here: ex.sid_issued_here,
    };
    let peer = slot.peer();
    let tunnel = ex.upgrade.then(|| TunnelInfo {
        start: TunnelStart::of(&facts, &peer),
        peer: peer.clone(),
    });
    let rec = recorder::exchange_record(facts, &peer, ex.outcome, elapsed, ex.upgrade);
    (rec, tunnel)
}

impl Slot {
    /// The connection as the proxy names it in records.
    fn peer(&self) -> Peer {
        Peer {
            conn: self.conn,
            client: self.client.clone(),
            client_ip: self
                .client
                .rsplit_once(':')
                .map_or(self.client.as_str(), |(ip, _)| ip)
                .to_string(),
        }
    }
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

/// The `tunnel_closed` record, built by the proxy's own `recorder::tunnel_record`.
pub fn tunnel_closed(info: &TunnelInfo, end: &TunnelEnd) -> Record {
    let spliced = Spliced {
        client_to_upstream: end.c2u,
        upstream_to_client: end.u2c,
        closed_by: end.closed_by,
        error: end.error.clone(),
        sid: end.first_frame_sid.clone(),
        ended: std::time::Instant::now(),
    };
    recorder::tunnel_record(info.start.clone(), &info.peer, spliced, end.lifetime)
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
