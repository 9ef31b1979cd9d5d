//! `sockproxy demo`: a small engine.io upstream, the real proxy in front of it and a
//! browser-like client, all on loopback ephemeral ports; prints the records of that
//! traffic on stdout and a short explanation on stderr.
//!
//! The upstream speaks enough of engine.io v4 for a polling handshake, the websocket
//! upgrade (`2probe`/`3probe`/`5`) and message echo, and it refuses requests the way
//! engine.io does (JSON 400 on the polling path, raw 400 text on the upgrade path): its
//! answers are pinned to a real socket.io 4.8 server's bytes (see [`serve_engine`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::sink::Sink;

type DemoBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;
type Error = Box<dyn std::error::Error + Send + Sync>;

/// Runs the demo; exit 0 when every step behaved as engine.io would.
pub fn main() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sockproxy demo: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sockproxy demo: failed: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run() -> Result<(), Error> {
    let upstream = TcpListener::bind("127.0.0.1:0").await?;
    let upstream_addr = upstream.local_addr()?;
    tokio::spawn(serve_engine(upstream));

    let proxy = TcpListener::bind("127.0.0.1:0").await?;
    let proxy_addr = proxy.local_addr()?;
    let mut cfg = crate::cli::config_for_upstream(upstream_addr);
    cfg.pod = Some("demo-pod".into());
    let (sink, mut lines) = Sink::memory(cfg.pod.clone(), None);
    let (stop, signals) = tokio::sync::mpsc::channel(1);
    let proxy_task = tokio::spawn(crate::server::run(proxy, None, cfg, sink, signals));
    let printer = tokio::spawn(async move {
        while let Some(line) = lines.recv().await {
            print!("{line}");
        }
    });

    say(&format!(
        "demo: engine.io upstream on {upstream_addr}, sockproxy on {proxy_addr} (records on stdout)"
    ));
    let result = tokio::time::timeout(Duration::from_secs(20), client(proxy_addr)).await;
    stop.send(()).await.ok();
    proxy_task.await??;
    printer.await?;
    result.map_err(|_| "the demo client timed out")??;
    say("demo: done. Every line above is a real record of real traffic through the proxy.");
    Ok(())
}

fn say(s: &str) {
    eprintln!("{s}");
}

/// What a browser's socket.io client does, then two requests that show a diagnosis.
// Over 80 lines on purpose: the demo's script, step by step, each printed as it runs.
async fn client(proxy: SocketAddr) -> Result<(), Error> {
    let origin = format!("http://{proxy}");
    let base = "/socket.io/?EIO=4&transport=polling";

    say("\n1. polling handshake: GET /socket.io/?EIO=4&transport=polling");
    let (status, body) = http(proxy, "GET", base, &origin, &[], "").await?;
    let sid =
        crate::sio::open_packet_sid(body.as_bytes()).ok_or("no open packet in the handshake")?;
    say(&format!(
        "   {status}, the upstream issued sid {sid}: the `request` record carries it with sio.handshake=true"
    ));

    say("2. join the default namespace over polling: POST 40, GET → 40{…}");
    http(
        proxy,
        "POST",
        &format!("{base}&sid={sid}"),
        &origin,
        &[],
        "40",
    )
    .await?;
    let (_, body) = http(proxy, "GET", &format!("{base}&sid={sid}"), &origin, &[], "").await?;
    say(&format!("   got {body}"));

    say(
        "3. websocket upgrade with the same sid: 101, 2probe/3probe, 5, two messages echoed, close",
    );
    let stream = TcpStream::connect(proxy).await?;
    let req = Request::builder()
        .uri(format!(
            "ws://{proxy}/socket.io/?EIO=4&transport=websocket&sid={sid}"
        ))
        .header(header::ORIGIN, &origin)
        .header(header::HOST, proxy.to_string())
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(
            header::SEC_WEBSOCKET_KEY,
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        )
        .body(())?;
    let (mut ws, resp) = tokio_tungstenite::client_async(req, stream).await?;
    say(&format!(
        "   {} {}: the `upgrade` record is written now",
        resp.status().as_u16(),
        resp.status().canonical_reason().unwrap_or("")
    ));
    ws.send(Message::text("2probe")).await?;
    expect_text(&mut ws, "3probe").await?;
    ws.send(Message::text("5")).await?;
    for msg in [r#"42["hello","from the demo client"]"#, r#"42["bye"]"#] {
        ws.send(Message::text(msg)).await?;
        expect_text(&mut ws, msg).await?;
    }
    ws.close(None).await?;
    while ws.next().await.is_some() {}
    say("   closed: the `tunnel_closed` record gives lifetime, bytes each way and who closed");

    say("4. hypothesis 1 reproduced: the same websocket request with its Upgrade header stripped");
    let (status, body) = http(
        proxy,
        "GET",
        &format!("/socket.io/?EIO=4&transport=websocket&sid={sid}"),
        &origin,
        &[("Connection", "close")],
        "",
    )
    .await?;
    say(&format!(
        "   {status} {body}: flagged upgrade_header_missing"
    ));

    say("5. hypothesis 2 reproduced: a sid this pod never issued (another pod's, or a restart's)");
    let (status, body) = http(
        proxy,
        "GET",
        &format!("{base}&sid=issuedByAnotherPod00"),
        &origin,
        &[],
        "",
    )
    .await?;
    say(&format!(
        "   {status} {body}: flagged sid_unknown and sid_not_issued_here\n"
    ));
    Ok(())
}

async fn expect_text<S>(ws: &mut S, want: &str) -> Result<(), Error>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.as_str() == want => Ok(()),
        other => Err(format!("expected {want:?}, got {other:?}").into()),
    }
}

/// One HTTP/1.1 request on a fresh connection; returns status and body text.
async fn http(
    proxy: SocketAddr,
    method: &str,
    target: &str,
    origin: &str,
    extra: &[(&str, &str)],
    body: &'static str,
) -> Result<(u16, String), Error> {
    let stream = TcpStream::connect(proxy).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(target)
        .header(header::HOST, proxy.to_string())
        .header(header::ORIGIN, origin)
        .header(header::USER_AGENT, "sockproxy-demo (like a browser)");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    if !body.is_empty() {
        req = req.header(header::CONTENT_TYPE, "text/plain;charset=UTF-8");
    }
    let resp = send
        .send_request(req.body(Full::new(Bytes::from_static(body.as_bytes())))?)
        .await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// The engine.io-speaking upstream: serves `listener` until the process ends.
///
/// Its answers to the requests of `tests/fixtures/engine-io-bytes.json` are those of a real
/// socket.io 4.8 server (default options), byte for byte up to the case of header names
/// and chunk sizes, the `Date` value and the sids (`tests/claims.rs` compares them). Not
/// pinned: a poll with nothing queued is answered `6` (noop) at once, where engine.io
/// holds it until the next ping; a path without `/socket.io/` gets 404.
pub async fn serve_engine(listener: TcpListener) {
    let engine = Arc::new(Engine::default());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let engine = engine.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| engine.clone().handle(req));
            // Node writes `Date` where it belongs among its headers, and not at all on
            // engine.io's raw refusals: the answers set it themselves.
            let _ = hyper::server::conn::http1::Builder::new()
                .auto_date_header(false)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

#[derive(Default)]
struct Engine {
    sessions: Mutex<HashMap<String, Vec<String>>>,
    next: Mutex<u64>,
}

impl Engine {
    /// A fresh 20-character id (engine.io's are 20 characters too), `prefix` + digits.
    fn new_id(&self, prefix: &str) -> String {
        let mut n = self.next.lock().unwrap_or_else(|p| p.into_inner());
        *n += 1;
        format!("{prefix}{:0width$}", *n, width = 20 - prefix.len())
    }

    fn new_session(&self) -> String {
        let sid = self.new_id("demoSid");
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sid.clone(), Vec::new());
        sid
    }

    /// Follows engine.io's `Server.verify` and `handshake` (lib/server.ts): transport,
    /// then the sid, then the handshake's method, upgrade and protocol version.
    // Over 80 lines on purpose: the checks run in engine.io's order, one early answer
    // each, so it reads side by side with `Server.verify`.
    async fn handle(
        self: Arc<Self>,
        mut req: Request<Incoming>,
    ) -> Result<Response<DemoBody>, Infallible> {
        let q = crate::sio::Sio::from_query(req.uri().query());
        let upgrade = req.headers().contains_key(header::UPGRADE)
            && req
                .headers()
                .get(header::CONNECTION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(crate::flags::has_upgrade_token);
        // Node answers `Connection: close` to a request that asked for it, else keep-alive.
        let keep_alive = !req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("close"));
        let known = |sid: &str| {
            self.sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(sid)
        };
        if !req.uri().path().contains("/socket.io/") {
            return Ok(node_response(
                StatusCode::NOT_FOUND,
                "text/plain",
                "Not Found".into(),
                keep_alive,
            ));
        }
        if upgrade {
            // engine.io's abortUpgrade: raw 400 with the plain message.
            if let Some(sid) = &q.sid
                && !known(sid)
            {
                return Ok(raw_400("Session ID unknown"));
            }
            // Then ws's own check of the key (ws lib/websocket-server.js abortHandshake).
            let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
                return Ok(raw_400("Missing or invalid Sec-WebSocket-Key header"));
            };
            let accept = derive_accept_key(key.as_bytes());
            let on_upgrade = hyper::upgrade::on(&mut req);
            let open = match q.sid {
                Some(_) => None,
                None => Some(open_packet(&self.new_session(), "[]")),
            };
            tokio::spawn(async move {
                if let Ok(up) = on_upgrade.await {
                    let _ = echo_ws(up, open).await;
                }
            });
            let mut resp = Response::new(empty());
            *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = resp.headers_mut();
            h.insert(header::UPGRADE, "websocket".parse().expect("static"));
            h.insert(header::CONNECTION, "Upgrade".parse().expect("static"));
            h.insert(
                header::SEC_WEBSOCKET_ACCEPT,
                accept.parse().expect("base64 is a valid header value"),
            );
            return Ok(resp);
        }
        // engine.io's abortRequest: JSON, chunked (no Content-Length), as Node sends it.
        let refuse =
            |code: u8, msg: &str| Ok(json_error(StatusCode::BAD_REQUEST, code, msg, keep_alive));
        let transport = q.transport.as_deref();
        if !matches!(transport, Some("polling" | "websocket")) {
            return refuse(0, "Transport unknown");
        }
        let Some(sid) = q.sid.as_deref() else {
            if req.method() != http::Method::GET {
                return refuse(2, "Bad handshake method");
            }
            if transport == Some("websocket") {
                return refuse(3, "Bad request");
            }
            if q.eio.as_deref() != Some("4") {
                return refuse(5, "Unsupported protocol version");
            }
            let open = open_packet(&self.new_session(), r#"["websocket"]"#);
            return Ok(polling(
                StatusCode::OK,
                "text/plain; charset=UTF-8",
                open,
                keep_alive,
            ));
        };
        if !known(sid) {
            return refuse(1, "Session ID unknown");
        }
        if transport == Some("websocket") {
            // The session's transport is polling: asking for another one without an upgrade.
            return refuse(3, "Bad request");
        }
        let sid = sid.to_string();
        if req.method() == http::Method::POST {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if body.as_ref() == b"40" {
                // socket.io answers a namespace connect with the socket's own id.
                let nsid = self.new_id("demoNsp");
                let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(q) = s.get_mut(&sid) {
                    q.push(format!(r#"40{{"sid":"{nsid}"}}"#));
                }
            }
            return Ok(polling(
                StatusCode::OK,
                "text/html",
                "ok".into(),
                keep_alive,
            ));
        }
        let packets = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&sid)
            .map(std::mem::take)
            .unwrap_or_default();
        let payload = if packets.is_empty() {
            "6".to_string()
        } else {
            packets.join("\u{1e}")
        };
        Ok(polling(
            StatusCode::OK,
            "text/plain; charset=UTF-8",
            payload,
            keep_alive,
        ))
    }
}

/// engine.io v4's open packet with socket.io's default timings.
fn open_packet(sid: &str, upgrades: &str) -> String {
    format!(
        r#"0{{"sid":"{sid}","upgrades":{upgrades},"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}}"#
    )
}

/// Speaks like the `ws` library under engine.io: the open packet first on a
/// websocket-only handshake, `3probe` for `2probe`, and a close frame answered with one
/// before the connection ends.
async fn echo_ws(up: hyper::upgrade::Upgraded, open: Option<String>) -> Result<(), Error> {
    let mut ws =
        tokio_tungstenite::WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, None)
            .await;
    if let Some(open) = open {
        ws.send(Message::text(open)).await?;
    }
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Text(t) if t.as_str() == "2probe" => ws.send(Message::text("3probe")).await?,
            Message::Text(t) if t.starts_with('4') => ws.send(Message::Text(t)).await?,
            Message::Close(_) => {
                // tungstenite has queued the answering close frame; send it.
                let _ = ws.flush().await;
                break;
            }
            _ => {}
        }
    }
    Ok(())
}

fn empty() -> DemoBody {
    Full::new(Bytes::new()).boxed()
}

/// A plain answer of a Node server: `Content-Type`, `Content-Length`, Node's headers.
fn node_response(
    status: StatusCode,
    content_type: &'static str,
    body: String,
    keep_alive: bool,
) -> Response<DemoBody> {
    let mut resp = with_body(status, content_type, body);
    node_headers(&mut resp, keep_alive);
    resp
}

/// A response with `body`, its `Content-Type` and `Content-Length` (the headers every
/// answer of the demo's upstream starts with, in Node's order).
fn with_body(status: StatusCode, content_type: &'static str, body: String) -> Response<DemoBody> {
    let len = body.len();
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    h.insert(header::CONTENT_LENGTH, len.into());
    resp
}

/// The headers Node adds after the caller's: `Date`, then `Connection: keep-alive` and
/// `Keep-Alive: timeout=5`, or `Connection: close`.
fn node_headers(resp: &mut Response<DemoBody>, keep_alive: bool) {
    let h = resp.headers_mut();
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    h.insert(
        header::DATE,
        date.parse().expect("an HTTP date is a valid value"),
    );
    if keep_alive {
        h.insert(
            header::CONNECTION,
            http::HeaderValue::from_static("keep-alive"),
        );
        h.insert("keep-alive", http::HeaderValue::from_static("timeout=5"));
    } else {
        h.insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
}

/// engine.io's polling answer: `Content-Type`, `Content-Length`, `cache-control:
/// no-store`, then Node's headers.
fn polling(
    status: StatusCode,
    content_type: &'static str,
    body: String,
    keep_alive: bool,
) -> Response<DemoBody> {
    let mut resp = with_body(status, content_type, body);
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    node_headers(&mut resp, keep_alive);
    resp
}

fn json_error(status: StatusCode, code: u8, message: &str, keep_alive: bool) -> Response<DemoBody> {
    let json = Bytes::from(format!(r#"{{"code":{code},"message":"{message}"}}"#));
    let stream = futures_util::stream::iter([Ok::<_, Infallible>(Frame::data(json))]);
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    node_headers(&mut resp, keep_alive);
    resp.headers_mut().insert(
        header::TRANSFER_ENCODING,
        http::HeaderValue::from_static("chunked"),
    );
    resp
}

/// The raw refusal written straight to the socket by engine.io's `abortUpgrade` or by ws's
/// `abortHandshake`: no `Date`, then closed. (abortUpgrade spells it `Content-type`; hyper
/// writes every name in lower case.)
fn raw_400(message: &'static str) -> Response<DemoBody> {
    let mut resp = Response::new(Full::new(Bytes::from_static(message.as_bytes())).boxed());
    *resp.status_mut() = StatusCode::BAD_REQUEST;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    h.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html"),
    );
    h.insert(header::CONTENT_LENGTH, message.len().into());
    resp
}
