//! Runs one probe session, step by step, the way a browser's socket.io client does, and
//! keeps what each step saw.
//!
//! Order (engine.io-client `_probe`, PROTOCOL-NOTES §A.4–A.5): polling handshake, POST
//! and GET on the sid, websocket upgrade on the same sid, `2probe` → `3probe`, `5`, one
//! message round trip, optionally `--hold`, close. The first failing step ends the
//! session; the ones after it are listed as skipped. A step refused with engine.io code 4
//! is followed by one diagnostic `no-origin` step: the same request without Origin, to
//! tell Theia's Origin check from its other checks.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::diagnose::{Failure, Hypothesis, OriginCheck, Pods, Resend, StepName, diagnose};
use super::net::{Answer, Connector, exchange};
use super::packets;
use super::steps::{FailureReport, Seen, Session, Step};
use super::target::{Eio, Target};
use super::websocket::{Ws, WsEnd, hold_open, next_text, send};
use crate::sio::{CODE_FORBIDDEN, SioError, decode_error, open_packet_sid};

/// The namespace the websocket round trip connects to: any socket.io server answers a
/// namespace connect, with `40…` (accepted) or `44…` ("Invalid namespace").
pub const PROBE_NAMESPACE: &str = "/sockproxy-probe";
/// GETs on the sid before the probe gives up waiting for the answer to its POST
/// (a poll may return only a noop or a ping first).
const POLLS: usize = 3;
const USER_AGENT: &str = concat!("sockproxy-probe/", env!("CARGO_PKG_VERSION"));
/// Theia's connection token cookie (browser-connection-token.ts), checked by the same
/// `allowRequest` as Origin.
const THEIA_TOKEN_COOKIE: &str = "theia-connection-token";

/// How to probe: everything the command line decided.
pub struct Options {
    pub target: Target,
    pub eio: Eio,
    /// `None`: send no Origin.
    pub origin: Option<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Bound on each step.
    pub timeout: Duration,
    /// Send cookies back (browser-like); `--no-cookies` turns it off.
    pub cookies: bool,
    /// Keep the websocket open this long before closing (zero: no hold step).
    pub hold: Duration,
    pub connector: Connector,
}

impl Options {
    /// The steps a session takes, in order.
    pub fn plan(&self) -> Vec<StepName> {
        use StepName::*;
        let mut plan = vec![Handshake, Post, Poll, Upgrade, Probe, Message];
        if !self.hold.is_zero() {
            plan.push(Hold);
        }
        plan.push(Close);
        plan
    }
}

/// Cookies set by the server (the load balancer's `GCLB`, engine.io's `io`, …), sent back
/// the way a browser would, across sessions.
#[derive(Debug, Default)]
pub struct Jar(Vec<(String, String)>);

impl Jar {
    /// Keeps the `name=value` of every `Set-Cookie` (a later value replaces an earlier one).
    pub fn store(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(header::SET_COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            let pair = v.split(';').next().unwrap_or("");
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let (name, value) = (name.trim().to_string(), value.trim().to_string());
            match self.0.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = value,
                None => self.0.push((name, value)),
            }
        }
    }

    fn header(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| {
            self.0
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn names(&self) -> Vec<String> {
        self.0.iter().map(|(n, _)| n.clone()).collect()
    }
}

/// Runs session number `index`.
pub async fn run(opts: &Options, jar: &mut Jar, index: usize) -> Session {
    let started = Instant::now();
    let mut r = Run {
        opts,
        jar,
        steps: Vec::new(),
        sid: None,
        issued_by: None,
        upgrade_pod: None,
        failure: None,
        last: None,
    };
    r.all().await;
    let mut pods: Vec<String> = Vec::new();
    for p in r.steps.iter().filter_map(|s| s.pod.clone()) {
        if !pods.contains(&p) {
            pods.push(p);
        }
    }
    let done: Vec<StepName> = r.steps.iter().map(|s| s.step).collect();
    let skipped = opts
        .plan()
        .into_iter()
        .filter(|s| !done.contains(s))
        .collect();
    let sid_refused = r.steps.iter().any(|s| {
        s.step != StepName::Handshake && s.sio_error.as_ref().and_then(|e| e.code) == Some(1)
    });
    Session {
        session: index,
        ok: r.failure.is_none(),
        sid: r.sid,
        pods,
        sid_refused,
        steps: r.steps,
        skipped,
        failure: r.failure,
        ms: millis(started.elapsed()),
    }
}

struct Run<'a> {
    opts: &'a Options,
    jar: &'a mut Jar,
    steps: Vec<Step>,
    sid: Option<String>,
    /// `X-Pod-Name` of the handshake: the pod that issued the sid.
    issued_by: Option<String>,
    upgrade_pod: Option<String>,
    failure: Option<FailureReport>,
    /// The last request sent, kept to send it again without Origin after a code 4.
    last: Option<Sent>,
}

/// A request as it went out.
#[derive(Clone)]
struct Sent {
    method: Method,
    target: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A step's outcome before it is recorded: detail on success, the failure otherwise.
type Outcome = Result<String, Failure>;

impl Run<'_> {
    async fn all(&mut self) {
        let Some(_) = self.handshake().await else {
            return;
        };
        if !self.post().await || !self.poll().await {
            return;
        }
        let Some(ws) = self.upgrade().await else {
            return;
        };
        self.websocket(ws).await;
    }

    // --- polling ---------------------------------------------------------------------

    async fn handshake(&mut self) -> Option<()> {
        let target = self
            .opts
            .target
            .polling(self.opts.eio, None, &cache_buster());
        let (started, result, cookies) = self.send(Method::GET, &target, None, None).await;
        let outcome = match &result {
            Ok(a) if a.status == 200 => self.read_open(a),
            Ok(a) => Err(status_failure(a)),
            Err(f) => Err(f.clone()),
        };
        if let Ok(a) = &result {
            self.issued_by = pod_of(&a.headers);
        }
        self.record_http(
            StepName::Handshake,
            format!("GET {target}"),
            started,
            &result,
            cookies,
            outcome,
        )
        .await
    }

    fn read_open(&mut self, a: &Answer) -> Outcome {
        let text = String::from_utf8_lossy(&a.body);
        let Some(sid) = open_packet_sid(&a.body) else {
            return Err(Failure::Unexpected(format!(
                "200 without an engine.io open packet: {:?}",
                clip(&text)
            )));
        };
        self.sid = Some(sid.clone());
        let packets = packets::split(self.opts.eio, &text);
        let mut detail = format!("sid {sid}");
        if let Some(open) = packets.first().and_then(|p| packets::open(p)) {
            detail.push_str(&format!(", upgrades {:?}", open.upgrades));
            if let (Some(i), Some(t)) = (open.ping_interval, open.ping_timeout) {
                detail.push_str(&format!(", ping {i}/{t} ms"));
            }
            if !open.upgrades.iter().any(|u| u == "websocket") {
                detail.push_str(" (no websocket upgrade offered: a browser would stay on polling)");
            }
        }
        if packets.len() > 1 {
            detail.push_str(&format!(", then {}", packets[1..].join(" ")));
        }
        Ok(detail)
    }

    async fn post(&mut self) -> bool {
        let sid = self.sid.clone();
        let target = self
            .opts
            .target
            .polling(self.opts.eio, sid.as_deref(), &cache_buster());
        // v4: socket.io's namespace connect; v3 (socket.io 2 joins "/" by itself): a ping.
        let packet = match self.opts.eio {
            Eio::V4 => "40",
            Eio::V3 => "2",
        };
        let body = packets::encode(self.opts.eio, &[packet]);
        let (started, result, cookies) = self
            .send(Method::POST, &target, Some(body.clone()), None)
            .await;
        let outcome = match &result {
            Ok(a) if a.status == 200 && a.body.as_ref() == b"ok" => Ok("ok".to_string()),
            Ok(a) if a.status == 200 => Err(Failure::Unexpected(format!(
                "200 with {:?} instead of ok",
                clip(&String::from_utf8_lossy(&a.body))
            ))),
            Ok(a) => Err(status_failure(a)),
            Err(f) => Err(f.clone()),
        };
        let request = format!("POST {target} body {body:?}");
        self.record_http(StepName::Post, request, started, &result, cookies, outcome)
            .await
            .is_some()
    }

    async fn poll(&mut self) -> bool {
        let sid = self.sid.clone();
        let mut seen = Vec::new();
        let started = Instant::now();
        let mut n = 0;
        loop {
            n += 1;
            let target = self
                .opts
                .target
                .polling(self.opts.eio, sid.as_deref(), &cache_buster());
            let (_, result, cookies) = self.send(Method::GET, &target, None, None).await;
            let outcome = match &result {
                Ok(a) if a.status == 200 => self.read_answer(a, &mut seen),
                Ok(a) => Some(Err(status_failure(a))),
                Err(f) => Some(Err(f.clone())),
            };
            let outcome = match outcome {
                Some(o) => o,
                None if n < POLLS => continue,
                None => Err(Failure::Unexpected(format!(
                    "{POLLS} polls brought no answer to the POST, only {}",
                    seen.join(" ")
                ))),
            };
            let request = if n == 1 {
                format!("GET {target}")
            } else {
                format!("GET {target} (poll {n})")
            };
            return self
                .record_http(StepName::Poll, request, started, &result, cookies, outcome)
                .await
                .is_some();
        }
    }

    /// `None`: nothing conclusive yet (noop, ping), poll again.
    fn read_answer(&self, a: &Answer, seen: &mut Vec<String>) -> Option<Outcome> {
        let text = String::from_utf8_lossy(&a.body);
        let packets = packets::split(self.opts.eio, &text);
        seen.extend(packets.iter().map(|p| clip(p)));
        for p in &packets {
            match self.opts.eio {
                Eio::V4 if p.starts_with("40") && packets::namespace(p) == "/" => {
                    return Some(Ok(format!("socket.io connected: {}", clip(p))));
                }
                Eio::V4 if p.starts_with("44") && packets::namespace(p) == "/" => {
                    return Some(Err(Failure::Unexpected(format!(
                        "socket.io refused the namespace in-band: {}",
                        clip(p)
                    ))));
                }
                Eio::V3 if p == "3" => return Some(Ok(format!("pong: {}", seen.join(" ")))),
                _ if p.starts_with('1') && p.len() == 1 => {
                    return Some(Err(Failure::Unexpected(
                        "the server closed the session (engine.io close packet 1)".into(),
                    )));
                }
                _ => {}
            }
        }
        None
    }

    // --- upgrade -----------------------------------------------------------------------

    async fn upgrade(&mut self) -> Option<Ws> {
        let sid = self.sid.clone();
        let target = self.opts.target.websocket(self.opts.eio, sid.as_deref());
        let key = generate_key();
        let (started, mut result, cookies) =
            self.send(Method::GET, &target, None, Some(&key)).await;
        let outcome = match &result {
            Ok(a) if a.status == 101 => check_101(a, &key),
            Ok(a) => Err(status_failure(a)),
            Err(f) => Err(f.clone()),
        };
        if let Ok(a) = &result {
            self.upgrade_pod = pod_of(&a.headers);
        }
        let upgraded = result.as_mut().ok().and_then(|a| a.upgraded.take());
        let request = format!("GET {target} (Upgrade: websocket)");
        self.record_http(
            StepName::Upgrade,
            request,
            started,
            &result,
            cookies,
            outcome,
        )
        .await?;
        let io = TokioIo::new(upgraded?);
        Some(WebSocketStream::from_raw_socket(io, Role::Client, None).await)
    }

    // --- websocket ---------------------------------------------------------------------

    async fn websocket(&mut self, mut ws: Ws) {
        let since = Instant::now();
        let t = self.opts.timeout;
        let probe = self
            .ws_step(
                StepName::Probe,
                "send 2probe, expect 3probe, send 5",
                t,
                since,
                async |ws: &mut Ws| probe_upgrade(ws).await,
                &mut ws,
            )
            .await;
        if !probe {
            return;
        }
        let eio = self.opts.eio;
        let request = match eio {
            Eio::V4 => format!(
                "send 40{PROBE_NAMESPACE}, (namespace connect), expect 4x{PROBE_NAMESPACE},"
            ),
            Eio::V3 => "send 2 (ping), expect 3".to_string(),
        };
        let message = self
            .ws_step(
                StepName::Message,
                &request,
                t,
                since,
                async move |ws: &mut Ws| first_message(ws, eio).await,
                &mut ws,
            )
            .await;
        if !message {
            return;
        }
        if !self.opts.hold.is_zero() {
            let hold = self.opts.hold;
            let request = format!(
                "keep the websocket open {} s, answering pings",
                hold.as_secs_f64()
            );
            // The hold is bounded by its own length, not by --timeout.
            let held = self
                .ws_step(
                    StepName::Hold,
                    &request,
                    hold + t,
                    since,
                    async move |ws: &mut Ws| hold_open(ws, eio, hold).await,
                    &mut ws,
                )
                .await;
            if !held {
                return;
            }
        }
        self.ws_step(
            StepName::Close,
            "send 41, close frame, wait for the end",
            t,
            since,
            async |ws: &mut Ws| close(ws).await,
            &mut ws,
        )
        .await;
    }

    /// Runs one websocket step within `limit`, records it, and says whether it passed.
    async fn ws_step<F>(
        &mut self,
        name: StepName,
        request: &str,
        limit: Duration,
        since_upgrade: Instant,
        f: F,
        ws: &mut Ws,
    ) -> bool
    where
        F: AsyncFnOnce(&mut Ws) -> Result<String, WsEnd>,
    {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(limit, f(ws)).await {
            Ok(Ok(detail)) => Ok(detail),
            Ok(Err(WsEnd::Cut)) => Err(Failure::Cut(since_upgrade.elapsed())),
            Ok(Err(WsEnd::Closed { code, reason })) => Err(Failure::ServerClose { code, reason }),
            Err(_) => Err(Failure::Timeout(limit)),
        };
        let step = Step {
            step: name,
            ok: outcome.is_ok(),
            request: request.to_string(),
            status: None,
            ms: millis(started.elapsed()),
            pod: self.upgrade_pod.clone(),
            headers: Seen::default(),
            cookies_sent: Vec::new(),
            sio_error: None,
            detail: None,
            trace: None,
        };
        let pods = self.pods(self.upgrade_pod.as_deref());
        self.finish(step, outcome, pods, None).is_some()
    }

    // --- recording ---------------------------------------------------------------------

    fn pods(&self, now: Option<&str>) -> Pods {
        match (self.issued_by.as_deref(), now) {
            (Some(a), Some(b)) if a == b => Pods::Same(a.to_string()),
            (Some(a), Some(b)) => Pods::Changed {
                from: a.to_string(),
                to: b.to_string(),
            },
            _ => Pods::Unknown,
        }
    }

    /// Records an HTTP step; a code 4 refusal first gets its `no-origin` re-send.
    async fn record_http(
        &mut self,
        name: StepName,
        request: String,
        started: Instant,
        result: &Result<Answer, Failure>,
        cookies_sent: Vec<String>,
        outcome: Outcome,
    ) -> Option<()> {
        let (status, headers) = match result {
            Ok(a) => (Some(a.status), Seen::of(&a.headers)),
            Err(_) => (None, Seen::default()),
        };
        let sio_error = match &outcome {
            Err(Failure::Status { error, .. }) => error.clone(),
            _ => None,
        };
        let pod = headers.x_pod_name.clone();
        let pods = if name == StepName::Handshake {
            Pods::Unknown
        } else {
            self.pods(pod.as_deref())
        };
        let step = Step {
            step: name,
            ok: outcome.is_ok(),
            request,
            status,
            ms: millis(started.elapsed()),
            pod,
            headers,
            cookies_sent,
            sio_error,
            detail: None,
            trace: self.last.as_ref().and_then(|s| trace_of(&s.headers)),
        };
        let forbidden = step.sio_error.as_ref().and_then(|e| e.code) == Some(CODE_FORBIDDEN);
        if !forbidden {
            return self.finish(step, outcome, pods, None);
        }
        let cookies = step.cookies_sent.clone();
        let (check, resent) = self.origin_check(cookies).await;
        let done = self.finish(step, outcome, pods, Some(&check));
        self.steps.extend(resent);
        done
    }

    /// Sends `sent` again with `headers` instead of its own, within `--timeout`.
    async fn resend(&mut self, sent: &Sent, headers: HeaderMap) -> Result<Answer, Failure> {
        let req = Request::builder()
            .method(sent.method.clone())
            .uri(sent.target.as_str())
            .body(Full::new(sent.body.clone()));
        match req {
            Ok(mut req) => {
                *req.headers_mut() = headers;
                self.exchange_within(req).await
            }
            Err(e) => Err(Failure::Unexpected(format!(
                "cannot build the request: {e}"
            ))),
        }
    }

    /// Sends the last request again, the same but for Origin, which it leaves out: a
    /// request without Origin passes Theia's same-origin check, so only its other checks
    /// can refuse it. Bounded by `--timeout` like every step; returns the step to show
    /// (`None` when the refused request had no Origin, so there was nothing to re-send).
    async fn origin_check(&mut self, cookies_sent: Vec<String>) -> (OriginCheck, Option<Step>) {
        let sent = self
            .last
            .clone()
            .expect("an HTTP status answers a request that was sent");
        let text = |n: HeaderName| {
            sent.headers
                .get(n)
                .map(|v| crate::capture::text(v.as_bytes()))
        };
        let host = text(header::HOST).unwrap_or_default();
        let token_cookie = sent
            .headers
            .get_all(header::COOKIE)
            .iter()
            .any(|v| has_cookie(&crate::capture::text(v.as_bytes()), THEIA_TOKEN_COOKIE));
        let check = |resend| OriginCheck {
            host: host.clone(),
            token_cookie,
            resend,
        };
        let Some(origin) = text(header::ORIGIN) else {
            return (check(Resend::NoOrigin), None);
        };
        let mut headers = sent.headers.clone();
        headers.remove(header::ORIGIN);
        // The same request without Origin, trace id included: in the load balancer's log
        // the two share it.
        let resend_trace = trace_of(&headers);
        // A websocket handshake gets a fresh key, as every handshake must (RFC 6455
        // §4.1); no server check looks at it.
        let ws_key = headers.contains_key(header::SEC_WEBSOCKET_KEY).then(|| {
            let key = generate_key();
            headers.insert(
                header::SEC_WEBSOCKET_KEY,
                HeaderValue::from_str(&key).expect("a websocket key is base64"),
            );
            key
        });
        let started = Instant::now();
        let result = self.resend(&sent, headers).await;
        let accepted = if ws_key.is_some() { 101 } else { 200 };
        let (resend, detail) = judge_resend(&result, accepted, &origin);
        let (status, seen, sio_error) = match &result {
            Ok(a) => (
                Some(a.status),
                Seen::of(&a.headers),
                (a.status != accepted)
                    .then(|| decode_error(&a.body))
                    .filter(|e| !e.message.is_empty()),
            ),
            Err(_) => (None, Seen::default(), None),
        };
        let step = Step {
            step: StepName::NoOrigin,
            ok: matches!(resend, Resend::Accepted { .. }),
            request: format!(
                "{} {} again without Origin (was {origin}): is it the Origin check?",
                sent.method, sent.target
            ),
            status,
            ms: millis(started.elapsed()),
            pod: seen.x_pod_name.clone(),
            headers: seen,
            cookies_sent,
            sio_error,
            detail: Some(detail),
            trace: resend_trace,
        };
        (check(resend), Some(step))
    }

    fn finish(
        &mut self,
        mut step: Step,
        outcome: Outcome,
        pods: Pods,
        origin: Option<&OriginCheck>,
    ) -> Option<()> {
        match outcome {
            Ok(detail) => {
                step.detail = Some(detail);
                self.steps.push(step);
                Some(())
            }
            Err(failure) => {
                let verdict = diagnose(step.step, &failure, &pods, self.opts.eio.number(), origin);
                step.detail = Some(failure_text(&failure));
                let first = verdict.hypotheses.first().copied();
                self.failure = Some(FailureReport {
                    step: step.step,
                    hypothesis: first,
                    hypotheses: verdict.hypotheses,
                    title: first.map(Hypothesis::title),
                    why: verdict.why,
                    fix: first.map(Hypothesis::fix),
                });
                self.steps.push(step);
                None
            }
        }
    }

    /// Connects and sends one request within `--timeout`.
    async fn send(
        &mut self,
        method: Method,
        target: &str,
        body: Option<String>,
        ws_key: Option<&str>,
    ) -> (Instant, Result<Answer, Failure>, Vec<String>) {
        let started = Instant::now();
        let sent_body = Bytes::from(body.clone().unwrap_or_default());
        let (req, cookies) = match self.request(method, target, body, ws_key) {
            Ok(r) => r,
            Err(e) => return (started, Err(Failure::Unexpected(e)), Vec::new()),
        };
        self.last = Some(Sent {
            method: req.method().clone(),
            target: target.to_string(),
            headers: req.headers().clone(),
            body: sent_body,
        });
        let result = self.exchange_within(req).await;
        (started, result, cookies)
    }

    /// One exchange on a fresh connection within `--timeout`; keeps the cookies set.
    async fn exchange_within(&mut self, req: Request<Full<Bytes>>) -> Result<Answer, Failure> {
        let opts = self.opts;
        let result = tokio::time::timeout(opts.timeout, async {
            let io = opts.connector.connect().await?;
            exchange(io, req).await
        })
        .await
        .unwrap_or(Err(Failure::Timeout(opts.timeout)));
        if let Ok(a) = &result {
            self.jar.store(&a.headers);
        }
        result
    }

    fn request(
        &self,
        method: Method,
        target: &str,
        body: Option<String>,
        ws_key: Option<&str>,
    ) -> Result<(Request<Full<Bytes>>, Vec<String>), String> {
        let opts = self.opts;
        let mut h = HeaderMap::new();
        let value =
            |s: &str| HeaderValue::from_str(s).map_err(|_| format!("invalid header value {s:?}"));
        h.insert(header::HOST, value(&opts.target.authority)?);
        if ws_key.is_some() {
            h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        h.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        if let Some(origin) = opts.origin.as_deref().filter(|o| !o.is_empty()) {
            h.insert(header::ORIGIN, value(origin)?);
        }
        if let Some(key) = ws_key {
            h.insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            h.insert(header::SEC_WEBSOCKET_KEY, value(key)?);
        }
        if body.is_some() {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain;charset=UTF-8"),
            );
        }
        h.insert(TRACE_HEADER, value(&trace_context())?);
        // --header replaces a default of the same name; repeated --header NAME appends.
        let mut replaced: Vec<&HeaderName> = Vec::new();
        let mut cookie_parts: Vec<String> = Vec::new();
        for (name, v) in &opts.headers {
            if name == header::COOKIE {
                cookie_parts.push(crate::capture::text(v.as_bytes()));
            } else if replaced.contains(&name) {
                h.append(name.clone(), v.clone());
            } else {
                h.insert(name.clone(), v.clone());
                replaced.push(name);
            }
        }
        let mut sent = Vec::new();
        if opts.cookies
            && let Some(jar) = self.jar.header()
        {
            cookie_parts.push(jar);
            sent = self.jar.names();
        }
        if !cookie_parts.is_empty() {
            h.insert(header::COOKIE, value(&cookie_parts.join("; "))?);
        }
        let mut req = Request::builder()
            .method(method)
            .uri(target)
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        *req.headers_mut() = h;
        Ok((req, sent))
    }
}

/// The 101 must be a websocket handshake for the key we sent (RFC 6455 §4.1).
fn check_101(a: &Answer, key: &str) -> Outcome {
    let h = &a.headers;
    let text = |n: HeaderName| h.get(n).map(|v| crate::capture::text(v.as_bytes()));
    let upgrade = text(header::UPGRADE).unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(Failure::Unexpected(format!(
            "101 with Upgrade {upgrade:?} instead of websocket"
        )));
    }
    let connection = h
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| v.to_str().is_ok_and(crate::flags::has_upgrade_token));
    if !connection {
        return Err(Failure::Unexpected(
            "101 without Connection: upgrade".into(),
        ));
    }
    let accept = text(header::SEC_WEBSOCKET_ACCEPT).unwrap_or_default();
    if accept != derive_accept_key(key.as_bytes()) {
        return Err(Failure::Unexpected(format!(
            "101 with a wrong Sec-WebSocket-Accept {accept:?}: a hop answered the handshake itself"
        )));
    }
    if a.upgraded.is_none() {
        return Err(Failure::NoResponse(
            "101 without an upgraded connection".into(),
        ));
    }
    Ok("switched to websocket".into())
}

fn status_failure(a: &Answer) -> Failure {
    let trimmed = a.body.trim_ascii();
    Failure::Status {
        status: a.status,
        error: (!trimmed.is_empty()).then(|| decode_error(&a.body)),
        json: trimmed.first() == Some(&b'{'),
        empty: trimmed.is_empty(),
    }
}

/// One line for the failed step itself (the session's verdict says why it matters).
fn failure_text(f: &Failure) -> String {
    match f {
        Failure::Status {
            status,
            error,
            empty,
            ..
        } => match error {
            Some(SioError {
                code: Some(c),
                message,
            }) => {
                format!("{status}, engine.io error {c} {message:?}")
            }
            Some(SioError { message, .. }) => format!("{status}, body {message:?}"),
            None if *empty => format!("{status}, empty body"),
            None => format!("{status}"),
        },
        Failure::Unexpected(s) | Failure::Connect(s) | Failure::NoResponse(s) => s.clone(),
        Failure::Tls { message, .. } => message.clone(),
        Failure::Timeout(t) => format!("no answer within {} s", t.as_secs_f64()),
        Failure::Cut(after) => format!(
            "connection ended without a close frame, {:.1} s after the upgrade",
            after.as_secs_f64()
        ),
        Failure::ServerClose { code, reason } => format!(
            "server closed the websocket: code {}, reason {reason:?}",
            code.map_or("none".to_string(), |c| c.to_string())
        ),
    }
}

/// What the re-send without Origin shows, and the step's detail line: `accepted` (200 for
/// polling, 101 for a websocket handshake) means the Origin check was the refusal.
fn judge_resend(result: &Result<Answer, Failure>, accepted: u16, origin: &str) -> (Resend, String) {
    let origin = origin.to_string();
    let a = match result {
        Ok(a) => a,
        Err(f) => {
            let what = failure_text(f);
            let detail = format!("{what}: neither accepted nor refused, so no conclusion");
            return (Resend::Unclear { origin, what }, detail);
        }
    };
    if a.status == accepted {
        // A polling handshake opened a session: it is left to expire (pingTimeout).
        let sid = open_packet_sid(&a.body)
            .map(|sid| format!(" (sid {sid}, left to expire)"))
            .unwrap_or_default();
        let detail = format!("accepted without Origin{sid}: the Origin check refused the request");
        let status = a.status;
        return (Resend::Accepted { origin, status }, detail);
    }
    let failure = status_failure(a);
    let what = failure_text(&failure);
    match failure {
        Failure::Status {
            error:
                Some(SioError {
                    code: Some(CODE_FORBIDDEN),
                    ..
                }),
            status,
            ..
        } => {
            let detail = format!("{what}: refused again without Origin, so not the Origin check");
            (Resend::Refused { origin, status }, detail)
        }
        _ => {
            let detail =
                format!("{what}: neither accepted nor refused with code 4, so no conclusion");
            (Resend::Unclear { origin, what }, detail)
        }
    }
}

/// Whether a Cookie header value holds a cookie called `name`.
fn has_cookie(cookie: &str, name: &str) -> bool {
    cookie
        .split(';')
        .any(|pair| pair.split('=').next().is_some_and(|n| n.trim() == name))
}

fn pod_of(h: &HeaderMap) -> Option<String> {
    h.get("x-pod-name")
        .map(|v| crate::capture::text(v.as_bytes()))
}

fn clip(s: &str) -> String {
    const MAX: usize = 160;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(MAX).collect::<String>())
    }
}

/// The load balancer keeps an `X-Cloud-Trace-Context` a client sent (shared/LB-LOGS.md §4),
/// so each request carries its own and the probe can name it: the same id is in the load
/// balancer's log (`trace`) and in sockproxy's records (`trace`).
const TRACE_HEADER: HeaderName = HeaderName::from_static("x-cloud-trace-context");

/// `TRACE_ID/SPAN_ID;o=0`: 32 random hex digits, a random non-zero decimal span, not sampled
/// (https://cloud.google.com/trace/docs/trace-context).
fn trace_context() -> String {
    let random = || RandomState::new().build_hasher().finish();
    let span = random().max(1);
    format!("{:016x}{:016x}/{span};o=0", random(), random())
}

/// The trace id of a request's `X-Cloud-Trace-Context`.
fn trace_of(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(TRACE_HEADER)?.to_str().ok()?;
    let id = v.split('/').next()?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_ascii_lowercase())
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// engine.io-client's `t`: the time in base 36 without its first 3 digits, plus 3 random
/// base-36 digits (`util.ts` `randomString`).
fn cache_buster() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let time = base36(ms);
    let mut random = base36(RandomState::new().build_hasher().finish() % (36 * 36 * 36));
    while random.len() < 3 {
        random.insert(0, '0');
    }
    format!("{}{random}", time.get(3..).unwrap_or(&time))
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("base-36 digits are ASCII")
}

/// The probe: `2probe` until `3probe`, then `5` (upgrade).
async fn probe_upgrade(ws: &mut Ws) -> Result<String, WsEnd> {
    send(ws, "2probe").await?;
    let mut other = Vec::new();
    loop {
        let got = next_text(ws).await?;
        if got == "3probe" {
            break;
        }
        other.push(clip(&got));
    }
    send(ws, "5").await?;
    Ok(if other.is_empty() {
        "3probe, upgrade sent".to_string()
    } else {
        format!("3probe (after {}), upgrade sent", other.join(" "))
    })
}

/// The first message over the websocket: v4 connects the namespace, v3 pings.
async fn first_message(ws: &mut Ws, eio: Eio) -> Result<String, WsEnd> {
    match eio {
        Eio::V4 => {
            send(ws, &format!("40{PROBE_NAMESPACE},")).await?;
            loop {
                let got = next_text(ws).await?;
                if got == "2" {
                    send(ws, "3").await?;
                } else if got.starts_with('4') && packets::namespace(&got) == PROBE_NAMESPACE {
                    return Ok(format!("answer {}", clip(&got)));
                }
            }
        }
        Eio::V3 => {
            send(ws, "2").await?;
            loop {
                if next_text(ws).await? == "3" {
                    return Ok("pong 3".to_string());
                }
            }
        }
    }
}

/// `41`, a close frame, and the server's answer.
async fn close(ws: &mut Ws) -> Result<String, WsEnd> {
    send(ws, "41").await?;
    ws.close(None).await.map_err(|_| WsEnd::Cut)?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(frame))) => {
                return Ok(match frame {
                    Some(f) => format!("server answered close {}", u16::from(f.code)),
                    None => "server answered close".to_string(),
                });
            }
            Some(Ok(_)) => continue,
            // After our close, the end of the stream is a clean end.
            Some(Err(_)) | None => {
                return Ok("server ended the connection without a close frame".to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jar_keeps_name_value_pairs() {
        let mut h = HeaderMap::new();
        h.append(
            header::SET_COOKIE,
            "GCLB=CLb1; path=/; HttpOnly".parse().unwrap(),
        );
        h.append(header::SET_COOKIE, "io=sid1; Path=/".parse().unwrap());
        h.append(header::SET_COOKIE, "novalue".parse().unwrap());
        let mut jar = Jar::default();
        jar.store(&h);
        let mut h2 = HeaderMap::new();
        h2.append(header::SET_COOKIE, "io=sid2".parse().unwrap());
        jar.store(&h2);
        assert_eq!(jar.header().as_deref(), Some("GCLB=CLb1; io=sid2"));
        assert_eq!(jar.names(), ["GCLB", "io"]);
        assert_eq!(Jar::default().header(), None);
        let seen = Seen::of(&h);
        assert_eq!(seen.set_cookie[1], "io=sid1; Path=/");
        assert!(
            !seen.set_cookie[0].contains("CLb1"),
            "{:?}",
            seen.set_cookie
        );
    }

    #[test]
    fn resend_without_origin_is_judged_by_its_answer() {
        let answer = |status, body: &str| {
            Ok(Answer {
                status,
                headers: HeaderMap::new(),
                body: Bytes::from(body.to_string()),
                upgraded: None,
            })
        };
        let open = r#"0{"sid":"s1","upgrades":["websocket"]}"#;
        let forbidden = r#"{"code":4,"message":"Forbidden"}"#;
        // (answer, status meaning accepted, outcome kind, a word of the detail)
        let cases = [
            (answer(200, open), 200, "accepted", "sid s1, left to expire"),
            (answer(101, ""), 101, "accepted", "the Origin check refused"),
            (
                answer(403, forbidden),
                200,
                "refused",
                "not the Origin check",
            ),
            (
                answer(400, "Forbidden"),
                101,
                "refused",
                "engine.io error 4",
            ),
            (
                answer(403, "<html>IAP</html>"),
                200,
                "unclear",
                "no conclusion",
            ),
            (answer(200, open), 101, "unclear", "200"),
            (answer(502, ""), 200, "unclear", "502, empty body"),
            (
                Err(Failure::Timeout(Duration::from_secs(3))),
                200,
                "unclear",
                "no answer within 3 s",
            ),
        ];
        for (result, accepted, kind, word) in cases {
            let (resend, detail) = judge_resend(&result, accepted, "https://h");
            let got = match resend {
                Resend::Accepted { .. } => "accepted",
                Resend::Refused { .. } => "refused",
                Resend::Unclear { .. } => "unclear",
                Resend::NoOrigin => "no origin",
            };
            assert_eq!(got, kind, "{detail}");
            assert!(detail.contains(word), "{detail:?} lacks {word:?}");
        }
        for (cookie, has) in [
            ("theia-connection-token=t", true),
            ("a=1;  theia-connection-token=t; b=2", true),
            ("a=theia-connection-token", false),
            ("my-theia-connection-token=t", false),
            ("", false),
        ] {
            assert_eq!(has_cookie(cookie, THEIA_TOKEN_COOKIE), has, "{cookie}");
        }
    }

    #[test]
    fn small_helpers() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36 * 36), "100");
        let t = cache_buster();
        assert!(
            t.len() >= 8 && t.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{t}"
        );
        assert_eq!(millis(Duration::from_micros(12_345)), 12.3);
        assert_eq!(clip("abc"), "abc");
        assert_eq!(clip(&"é".repeat(200)).chars().count(), 161);
    }
}

#[cfg(test)]
mod trace_tests {
    use super::*;

    #[test]
    fn each_request_gets_its_own_trace_and_names_it() {
        let (a, b) = (trace_context(), trace_context());
        assert_ne!(a, b);
        let mut h = HeaderMap::new();
        h.insert(TRACE_HEADER, HeaderValue::from_str(&a).unwrap());
        let id = trace_of(&h).expect("a trace id");
        assert_eq!(id.len(), 32);
        assert!(
            a.starts_with(&format!("{id}/")) && a.ends_with(";o=0"),
            "{a}"
        );
        // The id sockproxy's record would carry for this header is the same.
        let rec = crate::record::trace(Some(&a), None, None);
        assert_eq!(rec.trace.as_deref(), Some(id.as_str()));
        for bad in ["", "xyz/1", "4bf92f3577b34da6a3ce929d0e0e47/1"] {
            h.insert(TRACE_HEADER, HeaderValue::from_str(bad).unwrap());
            assert_eq!(trace_of(&h), None, "{bad}");
        }
    }
}
