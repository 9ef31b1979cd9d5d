//! One exchange's record as it builds up; written exactly once, on `finish` or on drop.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http::header;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::body::RequestProgress;
use crate::capture::{self, Snapshot};
use crate::client_io::StatusLineFix;
use crate::flags::{self, Facts};
use crate::limits::BODY_PEEK_BYTES;
use crate::proxy::Shared;
use crate::record::{self, Event, Exchange, HttpRequest, Outcome, Record, Severity, Trace};
use crate::sio::{self, Sio};

/// Who the client connection is; holds its `--max-connections` slot until the
/// connection and any tunnel it became are gone.
#[derive(Debug)]
pub struct ConnInfo {
    pub conn: u64,
    pub client: std::net::SocketAddr,
    /// `client` and its IP as text, made once per connection for every record.
    pub client_text: String,
    pub client_ip: String,
    requests: std::sync::atomic::AtomicU64,
    /// Armed by an exchange whose response hyper would write with another version.
    pub status_line: StatusLineFix,
    /// Set by an exchange that answered 101: where the connection's socket goes once
    /// hyper has written the 101.
    handoff: Mutex<Option<oneshot::Sender<Handoff>>>,
    _slot: crate::server::Slot,
}

/// A client socket handed over to a tunnel after the 101, with the bytes hyper had
/// already read past the request head.
#[derive(Debug)]
pub struct Handoff {
    pub stream: TcpStream,
    pub early: Bytes,
}

impl ConnInfo {
    pub fn new(conn: u64, client: std::net::SocketAddr, slot: crate::server::Slot) -> Self {
        ConnInfo {
            conn,
            client,
            client_text: client.to_string(),
            client_ip: client.ip().to_string(),
            requests: Default::default(),
            status_line: StatusLineFix::default(),
            handoff: Mutex::new(None),
            _slot: slot,
        }
    }

    /// Called by the exchange that is about to answer 101: the connection's socket
    /// arrives on the receiver once hyper has written the answer, or the receiver
    /// fails if the connection ends first.
    pub fn expect_handoff(&self) -> oneshot::Receiver<Handoff> {
        let (tx, rx) = oneshot::channel();
        *self.lock_handoff() = Some(tx);
        rx
    }

    /// Gives the socket to the tunnel waiting for it; without one, gives it back.
    pub fn hand_off(&self, handoff: Handoff) -> Option<Handoff> {
        match self.lock_handoff().take() {
            Some(tx) => tx.send(handoff).err(),
            None => Some(handoff),
        }
    }

    /// The connection ended without a handoff: a waiting tunnel learns it now.
    pub fn cancel_handoff(&self) {
        self.lock_handoff().take();
    }

    fn lock_handoff(&self) -> std::sync::MutexGuard<'_, Option<oneshot::Sender<Handoff>>> {
        // Nothing panics while holding the lock; a poisoned slot is still a valid slot.
        self.handoff.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a request head received on this connection.
    pub fn count_request(&self) {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Request heads received on this connection so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The fields of an exchange gathered before the record is written.
pub struct Draft {
    pub id: String,
    pub conn: Arc<ConnInfo>,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub sio: Option<Sio>,
    pub headers: Snapshot,
    /// The request line's version, as received.
    pub version: http::Version,
    pub trace: Trace,
    pub start: Instant,
    pub status: u16,
    pub resp_headers: Snapshot,
    pub upstream_error: Option<String>,
    pub upstream_unreachable: bool,
    pub bytes_in: Arc<RequestProgress>,
    pub bytes_out: u64,
    /// The first bytes of a socket.io response body, while it is worth decoding.
    pub peek: Option<Vec<u8>>,
    pub sid_issued_here: Option<bool>,
    /// False for exchanges outside `--sio-path` without `--log-all`: no record unless
    /// sockproxy had to answer itself.
    pub recorded: bool,
    /// What sockproxy's own answer was about (`sockproxy_upstream_errors_total{kind}`).
    pub error_kind: Option<&'static str>,
}

/// Writes the exchange's record exactly once: on [`Guard::finish`], or from `Drop`
/// with `client_aborted` when the exchange was abandoned (client went away).
pub struct Guard {
    draft: Option<Box<Draft>>,
    shared: Arc<Shared>,
}

impl Guard {
    pub fn new(draft: Box<Draft>, shared: Arc<Shared>) -> Self {
        Guard {
            draft: Some(draft),
            shared,
        }
    }

    /// The draft, to fill in response fields.
    pub fn draft(&mut self) -> &mut Draft {
        self.draft
            .as_mut()
            .expect("a guard holds its draft until it is finished")
    }

    /// Notes a chunk of response body: counts it, keeps the first bytes for decoding.
    pub fn on_body(&mut self, data: &[u8]) {
        let d = self.draft();
        d.bytes_out += data.len() as u64;
        if let Some(peek) = d.peek.as_mut() {
            let room = BODY_PEEK_BYTES.saturating_sub(peek.len());
            peek.extend_from_slice(&data[..data.len().min(room)]);
        }
    }

    /// Writes the `request` record now.
    pub fn finish(mut self, outcome: Outcome) {
        if let Some(d) = self.draft.take() {
            self.shared.write_exchange(*d, outcome, false);
        }
    }

    /// Writes the `upgrade` record now (the 101 is being sent) and returns what the
    /// tunnel's own record needs.
    pub fn finish_upgrade(mut self) -> TunnelInfo {
        let d = self
            .draft
            .take()
            .expect("a guard holds its draft until it is finished");
        let info = TunnelInfo {
            id: d.id.clone(),
            conn: d.conn.clone(),
            path: d.path.clone(),
            sio: d.sio.clone(),
            method: d.method.clone(),
            request_url: d.request_url(),
            user_agent: d.headers.first(&header::USER_AGENT).map(str::to_string),
            remote_ip: d.remote_ip(),
            trace: d.trace.clone(),
        };
        self.shared.write_exchange(*d, Outcome::Complete, true);
        info
    }
}

/// What a tunnel's `tunnel_closed` record carries over from its upgrade.
pub struct TunnelInfo {
    pub id: String,
    pub conn: Arc<ConnInfo>,
    pub path: String,
    pub sio: Option<Sio>,
    pub method: String,
    pub request_url: String,
    pub user_agent: Option<String>,
    pub remote_ip: String,
    pub trace: Trace,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(d) = self.draft.take() {
            // Abandoned: by the client, unless the drain deadline cut the connection.
            let outcome = if self.shared.drain.is_cut() {
                Outcome::Shutdown
            } else {
                Outcome::ClientAborted
            };
            self.shared.write_exchange(*d, outcome, false);
        }
    }
}

impl Draft {
    /// `path?query` as the client sent it (query redacted).
    fn target(&self) -> String {
        let mut t =
            String::with_capacity(self.path.len() + 1 + self.query.as_ref().map_or(0, String::len));
        t.push_str(&self.path);
        if let Some(q) = &self.query {
            t.push('?');
            t.push_str(q);
        }
        t
    }

    /// The URL as the browser asked for it, for Cloud Logging's `requestUrl`:
    /// scheme from `X-Forwarded-Proto` (else http), host from `Host`.
    pub fn request_url(&self) -> String {
        self.request_url_of(self.target())
    }

    fn request_url_of(&self, target: String) -> String {
        match self.headers.first(&header::HOST) {
            Some(host) => {
                let xfp = self
                    .headers
                    .first(&header::HeaderName::from_static("x-forwarded-proto"));
                let scheme = xfp
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
            None => target,
        }
    }

    /// Cloud Logging's `remoteIp`: the first `X-Forwarded-For` entry, else the peer.
    pub fn remote_ip(&self) -> String {
        self.headers
            .first(&header::HeaderName::from_static("x-forwarded-for"))
            .and_then(|v| v.split(',').next())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| self.conn.client_ip.clone())
    }

    /// Builds the `request` / `upgrade` record: decodes the peeked body (handshake sid,
    /// engine.io error), learns an issued sid, derives flags and severity.
    pub fn into_record(
        mut self,
        outcome: Outcome,
        upgrade: bool,
        learn_sid: impl Fn(&str),
    ) -> Record {
        let elapsed = self.start.elapsed();
        let peeked = self.peek.take();
        let body = peeked.as_deref().unwrap_or_default();
        let mut sio_error = None;
        if let Some(s) = self.sio.as_mut() {
            if self.status >= 400 {
                // Only a body the upstream sent is an engine.io error: whatever it says
                // when seen to its end; when the client left first (engine.io's chunked
                // answer can be all there but its last-chunk marker not yet read), only
                // if it decodes as a whole engine.io error.
                if peeked.is_some() && self.upstream_error.is_none() {
                    let e = sio::decode_error(body);
                    let whole = match outcome {
                        Outcome::Complete => true,
                        Outcome::ClientAborted => e.code.is_some(),
                        _ => false,
                    };
                    sio_error = whole.then_some(e);
                }
            } else if self.status == 200
                && s.sid.is_none()
                && let Some(sid) = sio::open_packet_sid(body)
            {
                learn_sid(&sid);
                s.sid = Some(sid);
                s.handshake = true;
            }
        }
        let facts = Facts {
            method: &self.method,
            sio: self.sio.as_ref(),
            headers: &self.headers,
            status: self.status,
            sio_error: sio_error.as_ref(),
            sid_issued_here: self.sid_issued_here,
            outcome,
            upstream_unreachable: self.upstream_unreachable,
        };
        let flags = flags::derive_for(&facts, self.version);
        let bytes_in = self.bytes_in.bytes();
        let severity = if self.status >= 400
            || outcome != Outcome::Complete
            || flags.iter().any(|f| *f != flags::HEALTH_CHECK)
        {
            Severity::Warning
        } else {
            Severity::Info
        };
        let target = self.target();
        let message = message(&self.method, &target, self.status, outcome, elapsed, &flags);
        let http_request = HttpRequest {
            request_method: self.method.clone(),
            request_url: self.request_url_of(target),
            status: self.status,
            request_size: bytes_in,
            response_size: self.bytes_out,
            user_agent: self.headers.first(&header::USER_AGENT).map(str::to_string),
            remote_ip: self.remote_ip(),
            latency: elapsed,
            protocol: protocol(self.version),
        };
        let ex = Exchange {
            id: self.id,
            conn: self.conn.conn,
            client: self.conn.client_text.clone(),
            method: self.method,
            path: self.path,
            query: self.query,
            sio: self.sio,
            status: self.status,
            headers: self.headers,
            resp_headers: self.resp_headers,
            sio_error,
            flags,
            duration_ms: record::millis(elapsed),
            bytes_in,
            bytes_out: self.bytes_out,
            outcome,
            upstream_error: self.upstream_error,
            http_request,
            trace: self.trace,
        };
        Record {
            severity,
            message,
            event: if upgrade {
                Event::Upgrade(Box::new(ex))
            } else {
                Event::Request(Box::new(ex))
            },
        }
    }
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
    elapsed: std::time::Duration,
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

/// Captures what the record needs from a request head, before anything touches it.
pub fn capture_request(
    parts: &http::request::Parts,
    extra: &[header::HeaderName],
    sio_path: &str,
    project: Option<&str>,
) -> (Option<Sio>, Snapshot, Trace) {
    let path = parts.uri.path();
    let sio = sio::is_sio_path(path, sio_path).then(|| Sio::from_query(parts.uri.query()));
    let headers = capture::request(&parts.headers, extra);
    let trace = record::trace(
        headers.first(&header::HeaderName::from_static("x-cloud-trace-context")),
        headers.first(&header::HeaderName::from_static("traceparent")),
        project,
    );
    (sio, headers, trace)
}
