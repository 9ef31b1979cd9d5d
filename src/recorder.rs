//! One exchange's record, from the request head to the written line.
//!
//! The [`Recorder`] is the process's: where records go (sink), what they are counted
//! in (metrics), the sids this process issued, and the drain (an exchange cut by the
//! drain deadline is `shutdown`, not `client_aborted`). [`Recorder::open`] captures a
//! request head into a [`Recording`]; the exchange tells it the response
//! ([`Recording::on_response`], [`Recording::on_body`]) and ends it one way:
//! [`Recording::finish`], [`Recording::answered_own`], [`Recording::body_failed`],
//! [`Recording::upgraded`], or dropping it (the client went away). Whichever comes
//! first writes the `request` or `upgrade` record; nothing writes it twice. An upgrade
//! leaves a [`TunnelRecording`] that writes the tunnel's `tunnel_closed`.
//!
//! The records themselves are built from plain data by [`exchange_record`] and
//! [`tunnel_record`], which tests and the field corpus call too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderName};
use http::{Response, StatusCode};

use crate::answer::{Fault, OwnAnswer};
use crate::capture::{self, Snapshot};
use crate::config::Config;
use crate::conn::{ConnInfo, Peer};
use crate::drain::Drain;
use crate::flags::{self, Facts};
use crate::limits::{BODY_PEEK_BYTES, SID_REGISTRY_CAPACITY};
use crate::memory::Bursts;
use crate::metrics::Metrics;
use crate::record::{
    self, ClosedBy, Event, Exchange, HttpRequest, Outcome, Record, Severity, Trace, TunnelClosed,
};
use crate::sids::SidRegistry;
use crate::sink::Sink;
use crate::sio::{self, Sio, SioError};
use crate::text;
use crate::tunnel::Spliced;

/// Where the process's records go and what they are counted in.
pub(crate) struct Recorder {
    pub(crate) sink: Sink,
    pub(crate) metrics: Metrics,
    /// Sids this process saw issued (`sid_unknown_here`).
    pub(crate) sids: SidRegistry,
    pub(crate) drain: Arc<Drain>,
    /// Open connections' peaks, for giving memory back after a burst.
    pub(crate) bursts: Arc<Bursts>,
    cfg: Arc<Config>,
    next_id: AtomicU64,
    /// Six hex digits that make `id` unique across restarts and pods.
    id_prefix: String,
}

impl Recorder {
    pub(crate) fn new(cfg: Arc<Config>, sink: Sink) -> Arc<Self> {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()).rotate_left(40);
        Arc::new(Recorder {
            sink,
            metrics: Metrics::default(),
            sids: SidRegistry::new(SID_REGISTRY_CAPACITY),
            drain: Arc::new(Drain::default()),
            bursts: Arc::default(),
            cfg,
            next_id: AtomicU64::new(1),
            id_prefix: format!("{:06x}", seed & 0xff_ffff),
        })
    }

    fn next_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.id_prefix)
    }

    /// Opens the record of the exchange whose request head is `parts`, received on
    /// `conn` at `start` (`upgrade`: it carries `Upgrade`): captures what the record
    /// needs before anything touches it.
    pub(crate) fn open(
        self: &Arc<Self>,
        conn: &Arc<ConnInfo>,
        parts: &http::request::Parts,
        start: Instant,
        upgrade: bool,
    ) -> Recording {
        let cfg = &self.cfg;
        let (sio, headers, trace) = capture_request(
            parts,
            &cfg.capture_headers,
            &cfg.sio_path,
            cfg.gcp_project.as_deref(),
        );
        let recorded = cfg.log_all || sio.is_some() || upgrade;
        let sid_issued_here = sio
            .as_ref()
            .and_then(|s| s.sid.as_deref())
            .map(|sid| self.sids.contains(sid));
        let facts = ExchangeFacts {
            id: self.next_id(),
            method: text::truncate(parts.method.to_string()),
            path: text::truncate(parts.uri.path().to_string()),
            query: parts
                .uri
                .query()
                .map(|q| text::truncate(capture::redact_query(q, &cfg.redact_query).into_owned())),
            sio,
            headers,
            version: parts.version,
            trace,
            status: 0,
            resp_headers: Snapshot::default(),
            upstream_error: None,
            upstream_unreachable: false,
            bytes_in: 0,
            bytes_out: 0,
            body: None,
            sid_issued_here,
        };
        Recording {
            pending: Some(Box::new(Pending {
                facts,
                conn: conn.clone(),
                start,
                progress: Arc::new(RequestProgress::default()),
                recorded,
                own: None,
            })),
            recorder: self.clone(),
        }
    }

    /// Counts a finished exchange and writes its record, if it is one to record.
    fn write(&self, p: Pending, outcome: Outcome, upgrade: bool) {
        let elapsed = p.start.elapsed();
        self.count(&p, outcome, elapsed);
        if !p.recorded {
            return;
        }
        let mut facts = p.facts;
        facts.bytes_in = p.progress.bytes();
        let rec = exchange_record(facts, &p.conn.peer, outcome, elapsed, upgrade);
        if let Event::Request(ex) | Event::Upgrade(ex) = &rec.event {
            if let Some(sid) = ex
                .sio
                .as_ref()
                .filter(|s| s.handshake)
                .and_then(|s| s.sid.as_deref())
            {
                self.sids.insert(sid);
            }
            self.metrics.flags(&ex.flags);
        }
        self.sink.emit(rec);
    }

    fn count(&self, p: &Pending, outcome: Outcome, elapsed: Duration) {
        let transport = match p.facts.sio.as_ref().map(|s| s.transport.as_deref()) {
            None => "none",
            Some(Some("polling")) => "polling",
            Some(Some("websocket")) => "websocket",
            Some(_) => "other",
        };
        self.metrics
            .exchange(transport, p.facts.status, elapsed.as_secs_f64());
        match p.own {
            Some((kind, Fault::Client)) => self.metrics.client_error(kind),
            Some((kind, Fault::Upstream)) => self.metrics.upstream_error(kind),
            None if outcome == Outcome::UpstreamError => {
                self.metrics.upstream_error("upstream_body");
            }
            None => {}
        }
    }
}

/// How far the client got with its request body (counted by the body on its way up).
#[derive(Debug, Default)]
pub(crate) struct RequestProgress {
    bytes: AtomicU64,
    failed: AtomicBool,
}

impl RequestProgress {
    /// Body bytes received from the client so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Counts `n` body bytes received.
    pub(crate) fn add(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Reading the body from the client failed (the client went away mid-body).
    pub(crate) fn fail(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }

    /// True when reading the body from the client failed: a failed exchange is then
    /// the client's doing, not the upstream's.
    pub(crate) fn client_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
}

/// The plain facts a `request` or `upgrade` record is built from.
#[derive(Debug, Clone)]
pub struct ExchangeFacts {
    pub id: String,
    /// Method, path and query as logged (cut to the logged limit; query redacted).
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub sio: Option<Sio>,
    pub headers: Snapshot,
    /// The request line's version, as received.
    pub version: http::Version,
    pub trace: Trace,
    /// The status sent to the client; 0 when none was.
    pub status: u16,
    pub resp_headers: Snapshot,
    /// Why sockproxy answered itself, or how the upstream's body failed.
    pub upstream_error: Option<String>,
    pub upstream_unreachable: bool,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The first bytes of a socket.io response body, kept when worth decoding (a
    /// handshake's open packet, an engine.io error); `None` when not kept.
    pub body: Option<Vec<u8>>,
    /// Whether this process saw the request's sid issued (`None` without a sid).
    pub sid_issued_here: Option<bool>,
}

/// What an open exchange holds until its record is written.
struct Pending {
    facts: ExchangeFacts,
    conn: Arc<ConnInfo>,
    start: Instant,
    progress: Arc<RequestProgress>,
    /// False for exchanges outside `--sio-path` without `--log-all`: no record unless
    /// sockproxy had to answer itself.
    recorded: bool,
    /// sockproxy's own answer: its metric kind and whose doing it was.
    own: Option<(&'static str, Fault)>,
}

/// One exchange's record while the exchange runs; written exactly once (see the
/// module's documentation), from `Drop` when the exchange was abandoned.
pub(crate) struct Recording {
    pending: Option<Box<Pending>>,
    recorder: Arc<Recorder>,
}

impl Recording {
    fn pending(&mut self) -> &mut Pending {
        self.with_capture().0
    }

    /// The open facts, and the extra headers `--capture-header` asks to log.
    fn with_capture(&mut self) -> (&mut Pending, &[HeaderName]) {
        let pending = self
            .pending
            .as_mut()
            .expect("a recording holds its facts until it is written");
        (pending, &self.recorder.cfg.capture_headers)
    }

    fn take(mut self) -> Pending {
        *self
            .pending
            .take()
            .expect("a recording holds its facts until it is written")
    }

    /// Where the request body counts its bytes.
    pub(crate) fn progress(&mut self) -> Arc<RequestProgress> {
        self.pending().progress.clone()
    }

    /// Notes the response head theia sent; decides whether its body is worth keeping
    /// (the first [`BODY_PEEK_BYTES`] of a socket.io error or handshake, when not
    /// content-encoded) for the record.
    pub(crate) fn on_response<B>(&mut self, resp: &Response<B>) {
        let (p, capture_headers) = self.with_capture();
        let f = &mut p.facts;
        let status = resp.status();
        f.status = status.as_u16();
        f.resp_headers = capture::response(resp.headers(), capture_headers);
        let decodable = resp
            .headers()
            .get(header::CONTENT_ENCODING)
            .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"identity"));
        let wants_body = status.as_u16() >= 400
            || (status == StatusCode::OK && f.sio.as_ref().is_some_and(|s| s.sid.is_none()));
        if f.sio.is_some() && decodable && wants_body {
            f.body = Some(Vec::new());
        }
    }

    /// Notes a chunk of response body: counts it, keeps the first bytes if wanted.
    pub(crate) fn on_body(&mut self, data: &[u8]) {
        let f = &mut self.pending().facts;
        f.bytes_out += data.len() as u64;
        if let Some(body) = f.body.as_mut() {
            let room = BODY_PEEK_BYTES.saturating_sub(body.len());
            body.extend_from_slice(&data[..data.len().min(room)]);
        }
    }

    /// The exchange ended: writes its `request` record.
    pub(crate) fn finish(self, outcome: Outcome) {
        let recorder = self.recorder.clone();
        recorder.write(self.take(), outcome, false);
    }

    /// theia's response body failed midway: writes the record as `upstream_error`.
    pub(crate) fn body_failed(mut self, e: &hyper::Error) {
        self.pending().facts.upstream_error = Some(format!("upstream body: {e}"));
        self.finish(Outcome::UpstreamError);
    }

    /// sockproxy answered `answer` itself with `resp`, whose body is `body_len` bytes:
    /// writes the record, always (even outside `--sio-path`).
    pub(crate) fn answered_own<B>(
        mut self,
        answer: &OwnAnswer,
        resp: &Response<B>,
        body_len: usize,
    ) {
        let (p, capture_headers) = self.with_capture();
        p.recorded = true;
        p.own = Some((answer.kind(), answer.fault()));
        let f = &mut p.facts;
        f.status = resp.status().as_u16();
        f.upstream_error = Some(answer.to_string());
        f.upstream_unreachable = answer.is_unreachable();
        f.resp_headers = capture::response(resp.headers(), capture_headers);
        f.body = None;
        f.bytes_out = body_len as u64;
        self.finish(Outcome::UpstreamError);
    }

    /// theia answered 101 and the answer is going out: writes the `upgrade` record and
    /// returns what the tunnel's own record needs.
    pub(crate) fn upgraded(self) -> TunnelRecording {
        let recorder = self.recorder.clone();
        let p = self.take();
        let start = TunnelStart::of(&p.facts, &p.conn.peer);
        let conn = p.conn.clone();
        recorder.write(p, Outcome::Complete, true);
        TunnelRecording {
            start,
            conn,
            recorder,
            opened: Instant::now(),
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            // Abandoned: by the client, unless the drain deadline cut the connection.
            let outcome = if self.recorder.drain.is_cut() {
                Outcome::Shutdown
            } else {
                Outcome::ClientAborted
            };
            self.recorder.write(*p, outcome, false);
        }
    }
}

/// What a tunnel's `tunnel_closed` record carries over from its upgrade.
#[derive(Debug, Clone)]
pub struct TunnelStart {
    pub id: String,
    pub path: String,
    pub sio: Option<Sio>,
    pub method: String,
    pub request_url: String,
    pub user_agent: Option<String>,
    pub remote_ip: String,
    pub trace: Trace,
}

impl TunnelStart {
    /// What the tunnel of the upgrade described by `f` carries over.
    pub fn of(f: &ExchangeFacts, peer: &Peer) -> Self {
        TunnelStart {
            id: f.id.clone(),
            path: f.path.clone(),
            sio: f.sio.clone(),
            method: f.method.clone(),
            request_url: request_url(&f.headers, target(&f.path, f.query.as_deref())),
            user_agent: f.headers.first(&header::USER_AGENT).map(str::to_string),
            remote_ip: remote_ip(&f.headers, peer),
            trace: f.trace.clone(),
        }
    }
}

/// A tunnel's record while it runs; it holds the client connection (and so its
/// `--max-connections` slot) until the record is written.
pub(crate) struct TunnelRecording {
    start: TunnelStart,
    conn: Arc<ConnInfo>,
    recorder: Arc<Recorder>,
    opened: Instant,
}

impl TunnelRecording {
    /// The `id` of the upgrade (and of `tunnel_closed`).
    pub(crate) fn id(&self) -> &str {
        &self.start.id
    }

    /// True when the tunnel should look for the sid of a websocket-only handshake in
    /// the first frame theia sends.
    pub(crate) fn wants_sid(&self) -> bool {
        self.start
            .sio
            .as_ref()
            .is_some_and(|s| s.is_websocket() && s.sid.is_none())
    }

    /// The tunnel ended as `s` says: counts it and writes its `tunnel_closed` record.
    pub(crate) fn closed(self, s: Spliced) {
        let m = &self.recorder.metrics;
        if s.closed_by == ClosedBy::Shutdown {
            self.recorder.drain.count_closed_by_shutdown();
        }
        let lifetime = s.ended.saturating_duration_since(self.opened);
        m.tunnel_closed(s.closed_by.as_str(), lifetime.as_secs_f64());
        let rec = tunnel_record(self.start, &self.conn.peer, s, lifetime);
        self.recorder.sink.emit(rec);
    }
}

/// Captures what the record needs from a request head: the engine.io query on a
/// socket.io path, the logged headers, the trace.
pub fn capture_request(
    parts: &http::request::Parts,
    extra: &[HeaderName],
    sio_path: &str,
    project: Option<&str>,
) -> (Option<Sio>, Snapshot, Trace) {
    let path = parts.uri.path();
    let sio = sio::is_sio_path(path, sio_path).then(|| Sio::from_query(parts.uri.query()));
    let headers = capture::request(&parts.headers, extra);
    let trace = record::trace(
        headers.first(&HeaderName::from_static("x-cloud-trace-context")),
        headers.first(&HeaderName::from_static("traceparent")),
        project,
    );
    (sio, headers, trace)
}

/// Builds the `request` (or, with `upgrade`, `upgrade`) record of an exchange that
/// ended with `outcome` after `elapsed`: decodes the kept body (a handshake's sid, an
/// engine.io error), derives flags and severity.
pub fn exchange_record(
    mut f: ExchangeFacts,
    peer: &Peer,
    outcome: Outcome,
    elapsed: Duration,
    upgrade: bool,
) -> Record {
    let sio_error = decode_body(&mut f, outcome);
    let facts = Facts {
        method: &f.method,
        sio: f.sio.as_ref(),
        headers: &f.headers,
        status: f.status,
        sio_error: sio_error.as_ref(),
        sid_issued_here: f.sid_issued_here,
        outcome,
        upstream_unreachable: f.upstream_unreachable,
    };
    let flags = flags::derive_for(&facts, f.version);
    let severity = if f.status >= 400
        || outcome != Outcome::Complete
        || flags.iter().any(|fl| *fl != flags::HEALTH_CHECK)
    {
        Severity::Warning
    } else {
        Severity::Info
    };
    let target = target(&f.path, f.query.as_deref());
    let message = message(&f.method, &target, f.status, outcome, elapsed, &flags);
    let http_request = HttpRequest {
        request_method: f.method.clone(),
        request_url: request_url(&f.headers, target),
        status: f.status,
        request_size: f.bytes_in,
        response_size: f.bytes_out,
        user_agent: f.headers.first(&header::USER_AGENT).map(str::to_string),
        remote_ip: remote_ip(&f.headers, peer),
        latency: elapsed,
        protocol: protocol(f.version),
    };
    let ex = Box::new(Exchange {
        id: f.id,
        conn: peer.conn,
        client: peer.client.clone(),
        method: f.method,
        path: f.path,
        query: f.query,
        sio: f.sio,
        status: f.status,
        headers: f.headers,
        resp_headers: f.resp_headers,
        sio_error,
        flags,
        duration_ms: record::millis(elapsed),
        bytes_in: f.bytes_in,
        bytes_out: f.bytes_out,
        outcome,
        upstream_error: f.upstream_error,
        http_request,
        trace: f.trace,
    });
    let event = if upgrade {
        Event::Upgrade(ex)
    } else {
        Event::Request(ex)
    };
    Record {
        severity,
        message,
        event,
    }
}

/// Decodes the kept body of a socket.io exchange: an engine.io error for a 4xx/5xx
/// theia sent (returned), or the sid of a handshake's open packet (set on `f.sio`,
/// with `handshake`).
fn decode_body(f: &mut ExchangeFacts, outcome: Outcome) -> Option<SioError> {
    let body = f.body.take()?;
    let s = f.sio.as_mut()?;
    if f.status >= 400 {
        // Only a body the upstream sent is an engine.io error: whatever it says when
        // seen to its end; when the client left first (engine.io's chunked answer can
        // be all there but its last-chunk marker not yet read), only if it decodes as
        // a whole engine.io error.
        if f.upstream_error.is_some() {
            return None;
        }
        let e = sio::decode_error(&body);
        let whole = match outcome {
            Outcome::Complete => true,
            Outcome::ClientAborted => e.code.is_some(),
            _ => false,
        };
        return whole.then_some(e);
    }
    if f.status == 200
        && s.sid.is_none()
        && let Some(sid) = sio::open_packet_sid(&body)
    {
        s.sid = Some(sid);
        s.handshake = true;
    }
    None
}

/// Builds the `tunnel_closed` record of the tunnel `start` began, ended as `s` says
/// after `lifetime`.
pub fn tunnel_record(start: TunnelStart, peer: &Peer, s: Spliced, lifetime: Duration) -> Record {
    let mut sio = start.sio;
    if let (Some(sio), Some(sid)) = (sio.as_mut(), s.sid)
        && sio.sid.is_none()
    {
        sio.sid = Some(sid);
    }
    let closed_by = s.closed_by.as_str();
    Record {
        severity: if s.closed_by == ClosedBy::Error {
            Severity::Warning
        } else {
            Severity::Info
        },
        message: format!(
            "tunnel {} closed by {closed_by} after {:.3}s ({} B client→upstream, {} B upstream→client)",
            start.id,
            lifetime.as_secs_f64(),
            s.client_to_upstream,
            s.upstream_to_client
        ),
        event: Event::TunnelClosed(Box::new(TunnelClosed {
            id: start.id,
            conn: peer.conn,
            client: peer.client.clone(),
            path: start.path,
            sio,
            duration_ms: record::millis(lifetime),
            bytes_client_to_upstream: s.client_to_upstream,
            bytes_upstream_to_client: s.upstream_to_client,
            closed_by: s.closed_by,
            error: s.error,
            http_request: HttpRequest {
                request_method: start.method,
                request_url: start.request_url,
                status: 101,
                request_size: s.client_to_upstream,
                response_size: s.upstream_to_client,
                user_agent: start.user_agent,
                remote_ip: start.remote_ip,
                latency: lifetime,
                protocol: "websocket",
            },
            trace: start.trace,
        })),
    }
}

/// `path?query` as the client sent it (query redacted).
fn target(path: &str, query: Option<&str>) -> String {
    let mut t = String::with_capacity(path.len() + 1 + query.map_or(0, str::len));
    t.push_str(path);
    if let Some(q) = query {
        t.push('?');
        t.push_str(q);
    }
    t
}

/// The URL as the browser asked for it, for Cloud Logging's `requestUrl`: scheme from
/// `X-Forwarded-Proto` (else http), host from `Host`; the bare target without a Host.
fn request_url(headers: &Snapshot, target: String) -> String {
    let Some(host) = headers.first(&header::HOST) else {
        return target;
    };
    let scheme = headers
        .first(&HeaderName::from_static("x-forwarded-proto"))
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|s| *s == "https" || *s == "http")
        .unwrap_or("http");
    let mut url = String::with_capacity(scheme.len() + 3 + host.len() + target.len());
    url.push_str(scheme);
    url.push_str("://");
    url.push_str(host);
    url.push_str(&target);
    url
}

/// Cloud Logging's `remoteIp`: the first `X-Forwarded-For` entry, else the peer.
fn remote_ip(headers: &Snapshot, peer: &Peer) -> String {
    headers
        .first(&HeaderName::from_static("x-forwarded-for"))
        .and_then(|v| v.split(',').next())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| peer.client_ip.clone())
}

/// `httpRequest.protocol` of a request: its version as it came in. hyper's server
/// parses HTTP/1.0 and HTTP/1.1 only (an HTTP/2 preface is a `client_error`).
fn protocol(version: http::Version) -> &'static str {
    if version == http::Version::HTTP_10 {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    }
}

/// The record's human line: `GET /socket.io/?… 200 1.2ms [flag,flag]`, built in one
/// allocation.
fn message(
    method: &str,
    target: &str,
    status: u16,
    outcome: Outcome,
    elapsed: Duration,
    flags: &[&str],
) -> String {
    use std::fmt::Write as _;
    let mut m = String::with_capacity(method.len() + target.len() + 48 + 24 * flags.len());
    let _ = write!(m, "{method} {target} {status}");
    match outcome {
        Outcome::ClientAborted => m.push_str(" (client went away)"),
        Outcome::Shutdown => m.push_str(" (cut by shutdown)"),
        _ => {}
    }
    let _ = write!(m, " {:.1}ms", record::millis(elapsed));
    for (i, flag) in flags.iter().enumerate() {
        m.push_str(if i == 0 { " [" } else { "," });
        m.push_str(flag);
    }
    if !flags.is_empty() {
        m.push(']');
    }
    m
}
