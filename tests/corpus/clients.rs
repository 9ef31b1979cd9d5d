//! What reaches the pods: browser tabs running Theia's socket.io client, health checks,
//! scanners and bots, each request shaped the way it arrives at sockproxy behind the
//! GKE load balancer and the pod's nginx, and answered the way engine.io and Theia
//! answer it (shared/PROTOCOL-NOTES.md §A, §B, §G).

use sockproxy::record::{ClosedBy, Outcome};

use super::records::{Ex, TunnelEnd};
use super::rng::Rng;
use super::world::{MS, Nginx, SEC, T, World, dur, secs};

/// How a client's network and socket.io client behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Theia's default client: polling handshake, then the websocket upgrade.
    Browser,
    /// A client built with `transports: ["websocket"]`: websocket-only handshakes.
    WsOnly,
    /// Behind a corporate proxy that refuses websockets itself: the attempt never
    /// reaches the LB, the client stays on long-polling.
    WsBlocked,
    /// Behind a corporate proxy that forwards the websocket attempt without `Upgrade`
    /// (hop-by-hop, dropped): 400 code 3 at theia, the client stays on long-polling.
    Stripped,
    /// Behind a proxy that ends websockets after 60 s.
    Cut60,
}

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const CHROME_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36";
const FIREFOX: &str =
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
const SAFARI: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15";
const EDGE: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0";

/// One browser (a person's tab, across reloads).
#[derive(Debug, Clone)]
pub struct Client {
    pub kind: Kind,
    pub ip: String,
    /// Behind a corporate proxy: its `X-Forwarded-For` entry and `Via` entry.
    pub corp: Option<(String, String)>,
    pub ua: &'static str,
    pub sticky: Option<usize>,
    pub gclb: String,
    /// The connection-token cookie's process (Theia's per-process token), from the
    /// last page load.
    pub token: Option<u64>,
    /// Client ↔ LB round trip.
    pub rtt: T,
    /// How busy the user is: share of polls that return with data, bytes per second.
    pub activity: f64,
    pub rng: Rng,
}

impl Client {
    pub fn new(w: &mut World, kind: Kind) -> Client {
        let mut rng = w.rng.fork(0xC11E);
        let ip = public_ip(&mut rng);
        let corp = matches!(kind, Kind::WsBlocked | Kind::Stripped | Kind::Cut60).then(|| {
            let host = rng.pick(&["proxy.corp.example", "gw1.bank.example", "bc-proxy.eu"]);
            (
                format!(
                    "10.{}.{}.{}",
                    rng.int(1, 250),
                    rng.int(0, 255),
                    rng.int(2, 254)
                ),
                format!("1.1 {host}:3128 (squid/5.7)"),
            )
        });
        let ua = rng.pick(&[CHROME, CHROME, CHROME, CHROME_MAC, FIREFOX, SAFARI, EDGE]);
        let gclb = rng.base64(12).replace(['+', '/', '='], "x");
        let rtt = secs(rng.range(0.015, 0.16));
        let activity = rng.range(0.05, 0.6);
        Client {
            kind,
            ip,
            corp,
            ua,
            sticky: None,
            gclb,
            token: None,
            rtt,
            activity,
            rng,
        }
    }

    fn lat(&mut self) -> T {
        // theia's answer time for a quick request, plus the hop through nginx.
        secs(0.0006 + self.rng.exp(0.004)).min(400 * MS)
    }
}

pub fn public_ip(rng: &mut Rng) -> String {
    let a = rng.pick(&[73u8, 81, 86, 92, 98, 109, 151, 176, 185, 203, 212, 217]);
    format!(
        "{a}.{}.{}.{}",
        rng.int(0, 255),
        rng.int(0, 255),
        rng.int(1, 254)
    )
}

/// A GFE source address (35.191.0.0/16, 130.211.0.0/22).
fn gfe_ip(rng: &mut Rng) -> String {
    if rng.chance(0.8) {
        format!("35.191.{}.{}", rng.int(0, 255), rng.int(1, 254))
    } else {
        format!("130.211.{}.{}", rng.int(0, 3), rng.int(1, 254))
    }
}

/// Google's `X-Cloud-Trace-Context`: 32 hex, decimal span, `o=`.
fn trace_header(rng: &mut Rng) -> String {
    format!(
        "{}/{};o={}",
        rng.hex(32),
        rng.u64() >> 1,
        u8::from(rng.chance(0.3))
    )
}

/// engine.io-client's cache buster: `Date.now()` in base 36 minus its first 3
/// characters, plus 3 random base-36 characters.
fn cache_buster(rng: &mut Rng, t: T) -> String {
    let mut ms = (t / MS) as u64;
    let mut digits = Vec::new();
    while ms > 0 {
        digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(ms % 36) as usize]);
        ms /= 36;
    }
    digits.reverse();
    let mut s = String::from_utf8(digits[3..].to_vec()).expect("ascii");
    s.push_str(&rng.chars(b"0123456789abcdefghijklmnopqrstuvwxyz", 3));
    s
}

/// What a browser request carries and how nginx passes it on.
#[derive(Debug, Clone, Copy, Default)]
struct Shape {
    origin: bool,
    /// The browser's websocket handshake headers (Upgrade, Sec-WebSocket-*).
    websocket: bool,
    /// Theia's `fix-origin` extra header (XHR polling only).
    fix_origin: bool,
}

fn browser_headers(
    w: &World,
    c: &mut Client,
    nginx: Nginx,
    s: Shape,
) -> Vec<(&'static str, String)> {
    let mut h: Vec<(&'static str, String)> = Vec::with_capacity(14);
    let host = nginx.fixed_host.unwrap_or(w.public_host).to_string();
    h.push(("host", host));
    let upgrade_sent = s.websocket && c.kind != Kind::Stripped;
    if nginx.pass_upgrade {
        if upgrade_sent {
            h.push(("upgrade", "websocket".into()));
        }
        h.push(("connection", "upgrade".into()));
    } else {
        h.push(("connection", "close".into()));
    }
    let chain = match &c.corp {
        Some((inside, _)) => format!("{inside}, {}", c.ip),
        None => c.ip.clone(),
    };
    let gfe = gfe_ip(&mut c.rng);
    if nginx.forwarded_headers {
        h.push(("x-real-ip", gfe.clone()));
        h.push(("x-forwarded-for", format!("{chain}, {}, {gfe}", w.lb_ip)));
        h.push(("x-forwarded-proto", "http".into()));
    } else {
        h.push(("x-forwarded-for", format!("{chain}, {}", w.lb_ip)));
        h.push(("x-forwarded-proto", "https".into()));
    }
    let via = match &c.corp {
        Some((_, v)) => format!("{v}, 1.1 google"),
        None => "1.1 google".into(),
    };
    h.push(("via", via));
    h.push(("user-agent", c.ua.into()));
    if s.origin {
        h.push(("origin", format!("https://{}", w.public_host)));
    }
    if s.websocket {
        h.push(("sec-websocket-key", c.rng.base64(16)));
        h.push(("sec-websocket-version", "13".into()));
        let ext = if c.ua.contains("Firefox") {
            "permessage-deflate"
        } else {
            "permessage-deflate; client_max_window_bits"
        };
        h.push(("sec-websocket-extensions", ext.into()));
    }
    let mut cookie = String::new();
    if w.affinity {
        cookie.push_str(&format!("GCLB={}; ", c.gclb));
    }
    cookie.push_str(&format!(
        "theia-connection-token={:x}",
        c.token.unwrap_or(0)
    ));
    h.push(("cookie", cookie));
    h.push(("x-cloud-trace-context", trace_header(&mut c.rng)));
    if s.fix_origin {
        h.push(("fix-origin", format!("https://{}", w.public_host)));
    }
    h
}

fn base_ex(method: &'static str, path: &str, query: Option<String>) -> Ex {
    Ex {
        method,
        path: path.to_string(),
        query,
        headers: Vec::new(),
        status: 200,
        resp_headers: Vec::new(),
        body: Vec::new(),
        bytes_in: 0,
        bytes_out: 0,
        outcome: Outcome::Complete,
        upstream_error: None,
        unreachable: false,
        sid_issued_here: None,
        upgrade: false,
    }
}

fn keep_alive(ctype: &str) -> Vec<(&'static str, String)> {
    vec![
        ("connection", "keep-alive".into()),
        ("content-type", ctype.into()),
    ]
}

/// engine.io's `abortRequest` answer: JSON, 400 (403 for code 4), chunked.
fn json_error(ex: &mut Ex, code: u8) {
    let msg = sockproxy::sio::ERROR_MESSAGES[code as usize];
    let body = format!("{{\"code\":{code},\"message\":\"{msg}\"}}");
    ex.status = if code == 4 { 403 } else { 400 };
    ex.resp_headers = keep_alive("application/json");
    ex.bytes_out = body.len() as u64;
    ex.body = body.into_bytes();
}

/// engine.io's `abortUpgrade` answer on the upgrade path: raw 400, plain text.
fn raw_error(ex: &mut Ex, code: u8) {
    let msg = sockproxy::sio::ERROR_MESSAGES[code as usize];
    ex.status = 400;
    ex.resp_headers = vec![
        ("connection", "close".into()),
        ("content-type", "text/html".into()),
    ];
    ex.bytes_out = msg.len() as u64;
    ex.body = msg.as_bytes().to_vec();
}

/// sockproxy's own 502 when theia is not listening yet.
fn own_502(ex: &mut Ex) {
    let why = "connect failed: Connection refused (os error 111)";
    let text = format!("502 Bad Gateway: sockproxy: {why} (upstream 127.0.0.1:3001)\n");
    ex.status = 502;
    ex.resp_headers = vec![("content-type", "text/plain; charset=utf-8".into())];
    ex.bytes_out = text.len() as u64;
    ex.upstream_error = Some(why.into());
    ex.unreachable = true;
    ex.outcome = Outcome::UpstreamError;
}

/// sockproxy's own 502 when theia exited with the request in flight.
fn gone_502(ex: &mut Ex) {
    let why = "no response: connection closed before message completed";
    let text = format!("502 Bad Gateway: sockproxy: {why} (upstream 127.0.0.1:3001)\n");
    ex.status = 502;
    ex.resp_headers = vec![("content-type", "text/plain; charset=utf-8".into())];
    ex.bytes_out = text.len() as u64;
    ex.upstream_error = Some(why.into());
    ex.outcome = Outcome::UpstreamError;
}

fn aborted(ex: &mut Ex, outcome: Outcome) {
    ex.status = 0;
    ex.resp_headers = Vec::new();
    ex.bytes_out = 0;
    ex.body.clear();
    ex.outcome = outcome;
}

fn open_packet(sid: &str, websocket_only: bool) -> String {
    let upgrades = if websocket_only {
        "[]"
    } else {
        "[\"websocket\"]"
    };
    format!(
        "0{{\"sid\":\"{sid}\",\"upgrades\":{upgrades},\"pingInterval\":30000,\"pingTimeout\":60000,\"maxPayload\":100000000}}"
    )
}

/// True when Theia ≥ 1.73's origin validator refuses a handshake: an Origin whose
/// host (with port) is not the Host header.
fn origin_refused(w: &World, headers: &[(&'static str, String)]) -> bool {
    let get = |k: &str| {
        headers
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.as_str())
    };
    match get("origin") {
        None => false,
        Some(o) => {
            let host = o.split_once("://").map_or(o, |(_, h)| h);
            w.origin_check && Some(host) != get("host")
        }
    }
}

/// An engine.io session as its client holds it.
#[derive(Debug, Clone)]
struct Session {
    pod: usize,
    sid: String,
    /// When engine.io closed it (a long-poll cut under it); unknown from then on.
    killed: Option<T>,
}

/// How one engine.io session of a visit ended.
enum End {
    /// The tab closed at this time.
    Closed,
    /// The session (or the attempt) failed at this time; socket.io reconnects.
    /// `opened`: a handshake succeeded (the reconnection backoff starts over).
    Retry { at: T, opened: bool },
}

/// socket.io's reconnection delay: 1 s doubling to 10 s, ±50 % jitter.
fn backoff(rng: &mut Rng, attempts: u32) -> T {
    let ms = (1000.0 * 2f64.powi(attempts.min(4) as i32)).min(10_000.0);
    let jittered = ms + (rng.unit() * 2.0 - 1.0) * 0.5 * ms;
    secs(jittered.min(10_000.0) / 1000.0)
}

/// A browser tab from `t0` to `leave`: page load, then socket.io sessions, reconnecting
/// after each failure, until the tab closes.
pub fn visit(w: &mut World, c: &mut Client, t0: T, leave: T) {
    let t = page_load(w, c, t0);
    tab(w, c, t, leave);
}

/// A tab that was already open (its page loaded before `t0`): its socket.io client
/// reconnects at `t0`.
pub fn reconnecting_tab(w: &mut World, c: &mut Client, t0: T, leave: T) {
    tab(w, c, t0, leave);
}

fn tab(w: &mut World, c: &mut Client, mut t: T, leave: T) {
    w.visits += 1;
    let mut attempts = 0u32;
    let mut refusals = 0u32;
    let reload_after = c.rng.int(2, 6) as u32;
    while t < leave {
        let end = match c.kind {
            Kind::WsOnly => ws_only_session(w, c, t, leave),
            _ => polling_session(w, c, t, leave),
        };
        match end {
            End::Closed => break,
            End::Retry { at, opened } => {
                if opened {
                    attempts = 0;
                    refusals = 0;
                    t = at + backoff(&mut c.rng, attempts);
                } else {
                    t = at + backoff(&mut c.rng, attempts);
                    attempts += 1;
                    refusals += 1;
                    // A stale connection-token cookie is refused until the page is
                    // reloaded; people reload after a few failures.
                    if refusals >= reload_after
                        && w.token_check
                        && c.token.is_some_and(|k| stale(w, c, k))
                    {
                        t = page_load(w, c, t);
                        refusals = 0;
                    }
                }
            }
        }
    }
}

fn stale(w: &World, c: &Client, token: u64) -> bool {
    c.sticky
        .is_some_and(|p| w.pods.get(p).is_some_and(|pod| pod.token != token))
}

/// `GET /` (and the bundle): not a socket.io path, recorded only with `--log-all` or
/// when sockproxy answers itself. Sets Theia's connection-token cookie. Returns when
/// the page's script starts socket.io.
fn page_load(w: &mut World, c: &mut Client, t: T) -> T {
    let Some(p) = w.route(&mut c.sticky, t) else {
        return t + secs(c.rng.range(2.0, 6.0));
    };
    let mut at = t;
    for (path, ctype, size) in [
        ("/", "text/html; charset=UTF-8", 4_512u64),
        (
            "/bundle.js",
            "application/javascript; charset=UTF-8",
            9_812_133,
        ),
    ] {
        let nginx = w.pods[p].nginx;
        let mut ex = base_ex("GET", path, None);
        ex.headers = browser_headers(w, c, nginx, Shape::default());
        let d = c.lat() + if size > 10_000 { secs(0.4) } else { 0 };
        if at < w.pods[p].theia_up {
            own_502(&mut ex);
            w.pods[p].exchange(at, c.lat() / 4, ex, true);
            return at + secs(c.rng.range(2.0, 5.0));
        }
        ex.resp_headers = keep_alive(ctype);
        ex.bytes_out = size;
        let log_all = w.pods[p].cfg.log_all;
        w.pods[p].exchange(at, d, ex, log_all);
        at += d + c.rtt;
    }
    c.token = Some(w.pods[p].token);
    at + secs(c.rng.range(0.3, 1.5))
}

/// A request carrying `s`'s sid, sent at `t`; `Ok(end)` when its pod answered it,
/// `Err(end)` when it was refused or failed (the engine.io session is over).
#[allow(clippy::too_many_arguments)] // one request's shape; a struct would only rename them
fn sid_request(
    w: &mut World,
    c: &mut Client,
    s: &Session,
    t: T,
    method: &'static str,
    hold: T,
    bytes_in: u64,
    bytes_out: u64,
) -> Result<T, T> {
    let Some(p) = w.route(&mut c.sticky, t) else {
        // The LB has no backend for it; the pods never see it.
        return Err(t + c.rtt);
    };
    let query = format!(
        "EIO=4&transport=polling&t={}&sid={}",
        cache_buster(&mut c.rng, t),
        s.sid
    );
    let mut ex = base_ex(method, "/socket.io/", Some(query));
    let nginx = w.pods[p].nginx;
    ex.headers = browser_headers(
        w,
        c,
        nginx,
        Shape {
            origin: method == "POST",
            fix_origin: true,
            ..Shape::default()
        },
    );
    ex.sid_issued_here = Some(w.pods[p].issued_here(&s.sid, t));
    ex.bytes_in = bytes_in;
    let quick = c.lat();
    if t < w.pods[p].theia_up {
        own_502(&mut ex);
        w.pods[p].exchange(t, quick / 4, ex, true);
        return Err(t + quick);
    }
    if p != s.pod || s.killed.is_some_and(|k| k <= t) {
        // Another pod's engine, or a session engine.io closed: "Session ID unknown".
        json_error(&mut ex, 1);
        w.pods[p].exchange(t, quick, ex, true);
        return Err(t + quick);
    }
    let pod = &w.pods[p];
    let mut end = t + hold.max(quick);
    // What ends the request before theia answers it.
    let drain_end = pod.session_end();
    let lb_cut = t + secs(w.lb_timeout) - c.rng.int(800, 3000);
    if let Some(de) = drain_end
        && de < end
    {
        match pod.drain {
            super::world::Drain::Graceful => gone_502(&mut ex),
            super::world::Drain::Cut => aborted(&mut ex, Outcome::Shutdown),
        }
        end = de;
        w.pods[p].exchange(t, end - t, ex, true);
        return Err(end);
    }
    if lb_cut < end {
        // The LB's timeoutSec: it gives up on the backend; nginx and sockproxy see the
        // client go away, and engine.io kills the session ("poll connection closed
        // prematurely").
        aborted(&mut ex, Outcome::ClientAborted);
        w.pods[p].exchange(t, lb_cut - t, ex, true);
        return Err(-lb_cut);
    }
    ex.resp_headers = if method == "POST" {
        keep_alive("text/html")
    } else {
        keep_alive("text/plain; charset=UTF-8")
    };
    ex.bytes_out = bytes_out;
    w.pods[p].exchange(t, end - t, ex, true);
    Ok(end)
}

/// Theia's default client: polling handshake, namespace connect, websocket probe.
fn polling_session(w: &mut World, c: &mut Client, t: T, leave: T) -> End {
    let Some(p) = w.route(&mut c.sticky, t) else {
        return End::Retry {
            at: t + c.rtt,
            opened: false,
        };
    };
    let query = format!("EIO=4&transport=polling&t={}", cache_buster(&mut c.rng, t));
    let mut ex = base_ex("GET", "/socket.io/", Some(query));
    let nginx = w.pods[p].nginx;
    ex.headers = browser_headers(
        w,
        c,
        nginx,
        Shape {
            fix_origin: true,
            ..Shape::default()
        },
    );
    let d = c.lat() + 2 * MS;
    if t < w.pods[p].theia_up {
        own_502(&mut ex);
        w.pods[p].exchange(t, d / 5, ex, true);
        return End::Retry {
            at: t + d,
            opened: false,
        };
    }
    if origin_refused(w, &ex.headers)
        || c.token
            .is_some_and(|k| w.token_check && k != w.pods[p].token)
    {
        json_error(&mut ex, 4);
        w.pods[p].exchange(t, d, ex, true);
        return End::Retry {
            at: t + d + c.rtt,
            opened: false,
        };
    }
    let sid = w.pods[p].new_sid(&mut c.rng);
    let body = open_packet(&sid, false);
    ex.resp_headers = keep_alive("text/plain; charset=UTF-8");
    ex.bytes_out = body.len() as u64;
    ex.body = body.into_bytes();
    w.pods[p].exchange(t, d, ex, true);
    w.pods[p].learn(&sid, t + d);
    w.sessions += 1;
    let mut s = Session {
        pod: p,
        sid,
        killed: None,
    };

    // Namespace connect (`40/services,`) and the first poll, in parallel.
    let t1 = t + d + c.rtt;
    let post = sid_request(w, c, &s, t1, "POST", 0, 12, 2);
    let tg = t1 + c.rng.int(200, 4000);
    let get = sid_request(w, c, &s, tg, "GET", 0, 0, 44);
    let t2 = match (post, get) {
        (Ok(a), Ok(b)) => a.max(b) + c.rtt,
        (a, b) => {
            let at = [a, b]
                .iter()
                .map(|r| match r {
                    Ok(x) => *x,
                    Err(x) => x.abs(),
                })
                .max()
                .unwrap_or(t1);
            return End::Retry { at, opened: true };
        }
    };
    if t2 >= leave {
        return End::Closed;
    }
    match c.kind {
        Kind::WsBlocked => polling_loop(w, c, &mut s, t2, leave),
        Kind::Browser | Kind::Stripped | Kind::Cut60 | Kind::WsOnly => {
            upgrade_then(w, c, &mut s, t2, leave)
        }
    }
}

/// The websocket probe of a polling session (a long-poll is pending meanwhile).
fn upgrade_then(w: &mut World, c: &mut Client, s: &mut Session, t: T, leave: T) -> End {
    let Some(u) = w.route(&mut c.sticky, t + 2 * MS) else {
        return polling_loop(w, c, s, t, leave);
    };
    let tw = t + c.rng.int(1, 6) * MS;
    let query = format!("EIO=4&transport=websocket&sid={}", s.sid);
    let mut ex = base_ex("GET", "/socket.io/", Some(query));
    let nginx = w.pods[u].nginx;
    ex.headers = browser_headers(
        w,
        c,
        nginx,
        Shape {
            origin: true,
            websocket: true,
            ..Shape::default()
        },
    );
    ex.sid_issued_here = Some(w.pods[u].issued_here(&s.sid, tw));
    let upgrade_path = ex.headers.iter().any(|(k, _)| *k == "upgrade") && nginx.pass_upgrade;
    let d = c.lat() + MS;
    let switched = if tw < w.pods[u].theia_up {
        own_502(&mut ex);
        false
    } else if u != s.pod {
        if upgrade_path {
            raw_error(&mut ex, 1);
        } else {
            json_error(&mut ex, 1);
        }
        false
    } else if !upgrade_path {
        // Node sees a plain request: engine.io's TRANSPORT_MISMATCH, code 3.
        json_error(&mut ex, 3);
        false
    } else {
        true
    };
    if !switched {
        // A failed probe does not end the session: the client stays on polling.
        w.pods[u].exchange(tw, d, ex, true);
        return polling_loop(w, c, s, t, leave);
    }
    // The pending long-poll: answered with a noop once the upgrade completes.
    let noop_at = tw + d + c.rng.int(100, 320) * MS;
    let poll = sid_request(w, c, s, t, "GET", noop_at - t, 0, 1);
    let t101 = tw + d;
    let pod = &w.pods[s.pod];
    let mut end = leave;
    let mut closed_by = ClosedBy::Client;
    if let Err(at) = poll {
        // The session died under the probe: the client drops the new transport too.
        end = end.min(at.abs() + c.rng.int(5, 80) * MS);
    }
    if let Some(de) = pod.session_end()
        && de < end
    {
        end = de;
        closed_by = pod.drain_closes_by();
    }
    // The LB's timeoutSec bounds a websocket's life, idle or not; it started counting
    // when it forwarded the upgrade request.
    let lb_cut = t101 + secs(w.lb_timeout) - d - c.rng.int(2, 40) * MS;
    if lb_cut < end {
        end = lb_cut;
        closed_by = ClosedBy::Client;
    }
    if c.kind == Kind::Cut60 {
        let cut = t101 + secs(60.0) - c.rng.int(20, 120) * MS;
        if cut < end {
            end = cut;
            closed_by = ClosedBy::Client;
        }
    }
    let life = (end - t101).max(MS);
    let secs_alive = life as f64 / SEC as f64;
    let pings = (secs_alive / 30.0).floor() as u64;
    let c2u = 12 + 7 + 7 * pings + (secs_alive * 40.0 * c.activity) as u64;
    let u2c = 8 + 3 * pings + (secs_alive * 900.0 * c.activity) as u64;
    let error = (closed_by == ClosedBy::Upstream && c.rng.chance(0.1))
        .then(|| "Connection reset by peer (os error 104)".to_string());
    ex.status = 101;
    ex.upgrade = true;
    ex.resp_headers = vec![
        ("upgrade", "websocket".into()),
        ("connection", "Upgrade".into()),
        ("sec-websocket-accept", c.rng.base64(20)),
    ];
    w.pods[u].upgrade(
        tw,
        d,
        ex,
        (
            t101 + life,
            TunnelEnd {
                lifetime: dur(life),
                c2u,
                u2c,
                closed_by,
                error,
                first_frame_sid: None,
            },
        ),
    );
    let at = t101 + life;
    if at >= leave {
        End::Closed
    } else {
        End::Retry { at, opened: true }
    }
}

/// Long-polling until the session ends: a GET held until theia has something (at the
/// latest its next ping, `pingInterval` 30 s after the last pong), pongs and messages
/// by POST.
fn polling_loop(w: &mut World, c: &mut Client, s: &mut Session, mut t: T, leave: T) -> End {
    loop {
        let busy = c.rng.chance(c.activity);
        let hold = if busy {
            secs(c.rng.exp(3.0).min(29.0))
        } else {
            // The ping comes 30 s after the pong arrived; the pong POST and this GET
            // race through the LB, so the GET is held a little under or over 30 s.
            secs(30.0 - c.rng.range(-0.03, 0.08))
        };
        if t + hold >= leave {
            // Closing the tab aborts the pending long-poll.
            if let Some(p) = w.route(&mut c.sticky, t)
                && p == s.pod
                && w.pods[p].session_end().is_none_or(|de| de > leave)
                && leave - t < secs(w.lb_timeout)
            {
                let query = format!(
                    "EIO=4&transport=polling&t={}&sid={}",
                    cache_buster(&mut c.rng, t),
                    s.sid
                );
                let mut ex = base_ex("GET", "/socket.io/", Some(query));
                let nginx = w.pods[p].nginx;
                ex.headers = browser_headers(
                    w,
                    c,
                    nginx,
                    Shape {
                        fix_origin: true,
                        ..Shape::default()
                    },
                );
                ex.sid_issued_here = Some(true);
                aborted(&mut ex, Outcome::ClientAborted);
                w.pods[p].exchange(t, (leave - t).max(MS), ex, true);
                return End::Closed;
            }
        }
        let bytes = if busy { c.rng.int(30, 6000) as u64 } else { 1 };
        match sid_request(w, c, s, t, "GET", hold, 0, bytes) {
            Ok(end) => {
                t = end + c.rtt / 2;
                if t >= leave {
                    return End::Closed;
                }
                if !busy || c.rng.chance(0.3) {
                    let n = if busy { c.rng.int(20, 3000) as u64 } else { 1 };
                    if let Err(at) = sid_request(w, c, s, t, "POST", 0, n, 2) {
                        return End::Retry {
                            at: at.abs(),
                            opened: true,
                        };
                    }
                }
            }
            Err(at) if at < 0 => {
                // Cut by the LB: engine.io killed the session; a pong already on its
                // way meets "Session ID unknown" on the same pod.
                let at = -at;
                s.killed = Some(at);
                if c.rng.chance(0.35) {
                    let tp = at + c.rng.int(2, 60) * MS;
                    let _ = sid_request(w, c, s, tp, "POST", 0, 1, 2);
                }
                return End::Retry { at, opened: true };
            }
            Err(at) => {
                // Refused, or the pod went away under it. A message already queued goes
                // out with the old sid before the client notices.
                if w.pods[s.pod].session_end().is_some_and(|de| de <= at) {
                    let stray = match w.pods[s.pod].drain {
                        super::world::Drain::Graceful => 0.25,
                        super::world::Drain::Cut => 0.7,
                    };
                    if c.rng.chance(stray) {
                        let tp = at + c.rng.int(5, 900) * MS;
                        let _ = sid_request(w, c, s, tp, "POST", 0, 30, 2);
                    }
                }
                return End::Retry { at, opened: true };
            }
        }
    }
}

/// A websocket-only client: the handshake is the upgrade request itself.
fn ws_only_session(w: &mut World, c: &mut Client, t: T, leave: T) -> End {
    let Some(p) = w.route(&mut c.sticky, t) else {
        return End::Retry {
            at: t + c.rtt,
            opened: false,
        };
    };
    let mut ex = base_ex(
        "GET",
        "/socket.io/",
        Some("EIO=4&transport=websocket".into()),
    );
    let nginx = w.pods[p].nginx;
    ex.headers = browser_headers(
        w,
        c,
        nginx,
        Shape {
            origin: true,
            websocket: true,
            ..Shape::default()
        },
    );
    let upgrade_path = nginx.pass_upgrade;
    let d = c.lat() + MS;
    let refused = if t < w.pods[p].theia_up {
        own_502(&mut ex);
        true
    } else if !upgrade_path {
        // TRANSPORT_HANDSHAKE_ERROR comes before allowRequest.
        json_error(&mut ex, 3);
        true
    } else if origin_refused(w, &ex.headers)
        || c.token
            .is_some_and(|k| w.token_check && k != w.pods[p].token)
    {
        raw_error(&mut ex, 4);
        true
    } else {
        false
    };
    if refused {
        w.pods[p].exchange(t, d, ex, true);
        return End::Retry {
            at: t + d + c.rtt,
            opened: false,
        };
    }
    let t101 = t + d;
    let sid = w.pods[p].new_sid(&mut c.rng);
    w.pods[p].learn(&sid, t101 + c.rng.int(1, 4) * MS);
    w.sessions += 1;
    let pod = &w.pods[p];
    let mut end = leave;
    let mut closed_by = ClosedBy::Client;
    if let Some(de) = pod.session_end()
        && de < end
    {
        end = de;
        closed_by = pod.drain_closes_by();
    }
    let lb_cut = t101 + secs(w.lb_timeout) - d - c.rng.int(2, 40) * MS;
    if lb_cut < end {
        end = lb_cut;
        closed_by = ClosedBy::Client;
    }
    let life = (end - t101).max(MS);
    let secs_alive = life as f64 / SEC as f64;
    let pings = (secs_alive / 30.0).floor() as u64;
    let c2u = 18 + 7 * pings + (secs_alive * 40.0 * c.activity) as u64;
    let u2c = 120 + 40 + 3 * pings + (secs_alive * 900.0 * c.activity) as u64;
    ex.status = 101;
    ex.upgrade = true;
    ex.resp_headers = vec![
        ("upgrade", "websocket".into()),
        ("connection", "Upgrade".into()),
        ("sec-websocket-accept", c.rng.base64(20)),
    ];
    w.pods[p].upgrade(
        t,
        d,
        ex,
        (
            t101 + life,
            TunnelEnd {
                lifetime: dur(life),
                c2u,
                u2c,
                closed_by,
                error: None,
                first_frame_sid: Some(sid),
            },
        ),
    );
    if t101 + life >= leave {
        End::Closed
    } else {
        End::Retry {
            at: t101 + life,
            opened: true,
        }
    }
}

/// GoogleHC and kube-probe traffic on every pod, for the whole window.
pub fn health_checks(w: &mut World) {
    let mut rng = w.rng.fork(0x4EA1);
    for p in 0..w.pods.len() {
        let (ready, start, term, theia_up) = {
            let pod = &w.pods[p];
            (pod.ready, pod.start, pod.term, pod.theia_up)
        };
        let stop = term.unwrap_or(w.end).min(w.end);
        if let Some(hc) = w.hc {
            // Two probers, every 15 s each (NEG defaults), from the pod's attachment.
            for _ in 0..2 {
                let gfe = gfe_ip(&mut rng);
                let mut t = ready.max(w.start - 15 * SEC) + rng.int(0, 15 * SEC);
                while t < stop {
                    let failing = hc.fail_from.is_some_and(|f| t >= f);
                    let path = if failing { hc.fail_path } else { hc.path };
                    let mut ex = base_ex("GET", path, None);
                    ex.headers = probe_headers(w, p, &gfe, "GoogleHC/1.0");
                    let mut d = secs(0.0008 + rng.exp(0.003));
                    if t < theia_up {
                        own_502(&mut ex);
                        d /= 4;
                    } else if hc
                        .transient
                        .is_some_and(|x| (t - x).abs() < 7 * SEC && p == 0)
                    {
                        aborted(&mut ex, Outcome::ClientAborted);
                        d = 15 * SEC;
                    } else if failing {
                        ex.status = hc.fail_status;
                        ex.resp_headers = keep_alive("text/html; charset=utf-8");
                        ex.bytes_out = 146;
                    } else {
                        ex.resp_headers = keep_alive("text/html; charset=UTF-8");
                        ex.bytes_out = 4_512;
                    }
                    let record = w.pods[p].cfg.log_all || ex.upstream_error.is_some();
                    w.pods[p].exchange(t, d, ex, record);
                    t += 15 * SEC + rng.int(-200, 200) * MS;
                }
            }
        }
        if let super::world::Probe::ViaNginx(path) = w.probe {
            let node_ip = format!("10.8.{}.1", w.pods[p].node + 1);
            let mut t = start + 5 * SEC + rng.int(0, 10 * SEC);
            t = t.max(w.start - 10 * SEC);
            while t < stop {
                let mut ex = base_ex("GET", path, None);
                ex.headers = probe_headers(w, p, &node_ip, "kube-probe/1.29");
                let mut d = secs(0.0008 + rng.exp(0.002));
                if t < theia_up {
                    own_502(&mut ex);
                    d /= 4;
                } else {
                    ex.resp_headers = keep_alive("text/html; charset=UTF-8");
                    ex.bytes_out = 4_512;
                }
                let record = w.pods[p].cfg.log_all || ex.upstream_error.is_some();
                w.pods[p].exchange(t, d, ex, record);
                t += 10 * SEC + rng.int(-30, 30) * MS;
            }
        }
    }
}

fn probe_headers(w: &World, p: usize, from: &str, ua: &str) -> Vec<(&'static str, String)> {
    let pod = &w.pods[p];
    let mut h = vec![
        (
            "host",
            pod.nginx.fixed_host.map_or(pod.ip.clone(), str::to_string),
        ),
        (
            "connection",
            if pod.nginx.pass_upgrade {
                "upgrade"
            } else {
                "close"
            }
            .to_string(),
        ),
        ("user-agent", ua.to_string()),
    ];
    if pod.nginx.forwarded_headers {
        h.push(("x-real-ip", from.to_string()));
        h.push(("x-forwarded-for", from.to_string()));
        h.push(("x-forwarded-proto", "http".to_string()));
    }
    h
}

/// What scanners and bots send through the LB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bot {
    /// `/.env`, `/wp-login.php` …: 404 from theia (recorded only with `--log-all`).
    Paths,
    /// A polling handshake, then nothing.
    Handshake,
    /// `EIO=3`: code 5.
    OldEio,
    /// `/socket.io/` without a transport: code 0.
    NoTransport,
    /// `transport=websocket` with no Upgrade, no Sec-WebSocket-Key, no sid: code 3.
    WebsocketProbe,
    /// A polling handshake with a foreign Origin: Theia's origin check refuses it (403).
    ForeignOrigin,
}

const BOT_UAS: &[&str] = &[
    "Mozilla/5.0 zgrab/0.x",
    "python-requests/2.32.3",
    "Go-http-client/1.1",
    "curl/8.5.0",
    "Mozilla/5.0 (compatible; CensysInspect/1.1; +https://about.censys.io/)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/91.0.4472.124 Safari/537.36",
];

/// One bot request at `t` (routed by the LB like any other).
pub fn bot(w: &mut World, rng: &mut Rng, t: T, kind: Bot, ip: &str, ua: &str) {
    let mut sticky = None;
    let Some(p) = w.route(&mut sticky, t) else {
        return;
    };
    let pod_nginx = w.pods[p].nginx;
    let (path, query) = match kind {
        Bot::Paths => (
            rng.pick(&[
                "/.env",
                "/wp-login.php",
                "/.git/config",
                "/actuator/health",
                "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
                "/robots.txt",
                "/favicon.ico",
                "/server-status",
            ]),
            None,
        ),
        Bot::Handshake | Bot::ForeignOrigin => (
            "/socket.io/",
            Some(format!(
                "EIO=4&transport=polling&t={}",
                cache_buster(rng, t)
            )),
        ),
        Bot::OldEio => (
            "/socket.io/",
            Some(format!(
                "EIO=3&transport=polling&t={}",
                cache_buster(rng, t)
            )),
        ),
        Bot::NoTransport => ("/socket.io/", None),
        Bot::WebsocketProbe => ("/socket.io/", Some("EIO=4&transport=websocket".to_string())),
    };
    let mut ex = base_ex("GET", path, query);
    let gfe = gfe_ip(rng);
    let mut h = vec![
        (
            "host",
            pod_nginx.fixed_host.unwrap_or(w.public_host).to_string(),
        ),
        (
            "connection",
            if pod_nginx.pass_upgrade {
                "upgrade"
            } else {
                "close"
            }
            .to_string(),
        ),
        ("via", "1.1 google".to_string()),
        ("user-agent", ua.to_string()),
        ("x-cloud-trace-context", trace_header(rng)),
    ];
    if pod_nginx.forwarded_headers {
        h.push(("x-real-ip", gfe.clone()));
        h.push(("x-forwarded-for", format!("{ip}, {}, {gfe}", w.lb_ip)));
        h.push(("x-forwarded-proto", "http".into()));
    } else {
        h.push(("x-forwarded-for", format!("{ip}, {}", w.lb_ip)));
        h.push(("x-forwarded-proto", "https".into()));
    }
    if kind == Bot::ForeignOrigin {
        h.push(("origin", "https://evil.example".into()));
    }
    ex.headers = h;
    let d = secs(0.0008 + rng.exp(0.003));
    let theia_up = w.pods[p].theia_up;
    let sio = path.contains("/socket.io/");
    if t < theia_up {
        own_502(&mut ex);
    } else {
        match kind {
            Bot::Paths => {
                ex.status = if path == "/favicon.ico" { 200 } else { 404 };
                ex.resp_headers = keep_alive("text/html; charset=utf-8");
                ex.bytes_out = 150;
            }
            Bot::Handshake => {
                let sid = w.pods[p].new_sid(rng);
                let body = open_packet(&sid, false);
                ex.resp_headers = keep_alive("text/plain; charset=UTF-8");
                ex.bytes_out = body.len() as u64;
                ex.body = body.into_bytes();
                w.pods[p].learn(&sid, t + d);
            }
            Bot::ForeignOrigin => {
                if origin_refused(w, &ex.headers) {
                    json_error(&mut ex, 4);
                } else {
                    let sid = w.pods[p].new_sid(rng);
                    let body = open_packet(&sid, false);
                    ex.resp_headers = keep_alive("text/plain; charset=UTF-8");
                    ex.bytes_out = body.len() as u64;
                    ex.body = body.into_bytes();
                    w.pods[p].learn(&sid, t + d);
                }
            }
            Bot::OldEio => json_error(&mut ex, 5),
            Bot::NoTransport => json_error(&mut ex, 0),
            Bot::WebsocketProbe => json_error(&mut ex, 3),
        }
    }
    let record = sio || w.pods[p].cfg.log_all || ex.upstream_error.is_some();
    w.pods[p].exchange(t, d, ex, record);
}

/// Scanners and bots over the window, about `per_hour` requests an hour.
pub fn scanners(w: &mut World, per_hour: f64) {
    if per_hour <= 0.0 {
        return;
    }
    let mut rng = w.rng.fork(0x5CA7);
    let mut t = w.start + secs(rng.exp(3600.0 / per_hour));
    while t < w.end {
        let ip = public_ip(&mut rng);
        let ua = rng.pick(BOT_UAS);
        let kind = rng.pick(&[
            Bot::Paths,
            Bot::Paths,
            Bot::Paths,
            Bot::Handshake,
            Bot::OldEio,
            Bot::NoTransport,
            Bot::WebsocketProbe,
        ]);
        // A scanner sends a burst of a few requests.
        let n = rng.int(1, 4);
        let mut at = t;
        for _ in 0..n {
            let k = if rng.chance(0.5) { kind } else { Bot::Paths };
            bot(w, &mut rng, at, k, &ip, ua);
            at += secs(rng.range(0.05, 1.5));
        }
        t += secs(rng.exp(3600.0 / per_hour));
    }
}

/// An operator's `curl http://localhost/theia/socket.io/?EIO=4&transport=polling`
/// inside the pod (the seed's "internal access works"): through nginx, not the LB.
pub fn internal_curl(w: &mut World, p: usize, t: T, rng: &mut Rng) {
    let query = format!("EIO=4&transport=polling&t={}", cache_buster(rng, t));
    let mut ex = base_ex("GET", "/socket.io/", Some(query));
    ex.headers = vec![
        ("host", "localhost".into()),
        ("connection", "upgrade".into()),
        ("x-real-ip", "127.0.0.1".into()),
        ("x-forwarded-for", "127.0.0.1".into()),
        ("x-forwarded-proto", "http".into()),
        ("user-agent", "curl/8.5.0".into()),
    ];
    let d = secs(0.002 + rng.exp(0.003));
    let sid = w.pods[p].new_sid(rng);
    let body = open_packet(&sid, false);
    ex.resp_headers = keep_alive("text/plain; charset=UTF-8");
    ex.bytes_out = body.len() as u64;
    ex.body = body.into_bytes();
    w.pods[p].exchange(t, d, ex, true);
    w.pods[p].learn(&sid, t + d);
}

/// How long people keep a tab: many short visits, some long working sessions.
pub fn visit_length(rng: &mut Rng) -> T {
    let r = rng.unit();
    let s = if r < 0.35 {
        rng.range(20.0, 600.0)
    } else if r < 0.8 {
        rng.range(600.0, 3600.0)
    } else {
        rng.range(3600.0, 6.0 * 3600.0)
    };
    secs(s)
}

/// How long before the window visits may start: the window opens on a cluster already
/// in use (`kubectl logs --since`, a Cloud Logging time range).
pub const LEAD: T = 2 * 3600 * SEC;

/// Visits arriving over the window (Poisson, `n` expected inside it, more before it),
/// each tab by a client of a kind drawn from `mix` (weights), lasting `length`.
pub fn traffic(
    w: &mut World,
    n: usize,
    mix: &[(Kind, f64)],
    length: &mut dyn FnMut(&mut Rng, Kind) -> T,
) {
    let mut rng = w.rng.fork(0x7AFF);
    let span = (w.end - w.start) as f64;
    let lead = LEAD.min(w.start - w.pods.iter().map(|p| p.ready).min().unwrap_or(w.start));
    let total_n = (n as f64 * (span + lead as f64) / span).round() as usize;
    let total: f64 = mix.iter().map(|(_, x)| x).sum();
    for _ in 0..total_n {
        let t0 = w.start - lead + (rng.unit() * (span + lead as f64)) as T;
        let mut r = rng.unit() * total;
        let mut kind = mix[0].0;
        for (k, x) in mix {
            if r < *x {
                kind = *k;
                break;
            }
            r -= x;
        }
        let mut c = Client::new(w, kind);
        let leave = t0 + length(&mut rng, kind);
        if leave < w.start {
            continue;
        }
        visit(w, &mut c, t0, leave);
    }
}
