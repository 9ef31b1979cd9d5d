//! README claims that had no test that could fail (issue 16): chunk extensions, a custom
//! `--sio-path`, `--redact-query` lists and the tunnel's `requestUrl`, the 4 KiB cut of
//! method/path/query, one `connection_limit` record per minute, and every environment
//! variable of the configuration table read by clap and reaching the run.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use sockproxy::config::{Config, RunArgs};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Answers one request on `conn` with `200 ok` (keep-alive).
async fn answer_ok(conn: &mut TcpStream) {
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .await
        .unwrap();
}

/// The config `run` builds from these flags (as the binary does), in front of `upstream`.
fn config_from_flags(upstream: SocketAddr, flags: &[&str]) -> Config {
    let up = upstream.to_string();
    let args = ["sockproxy", "--upstream", &up]
        .into_iter()
        .chain(flags.iter().copied());
    let parsed = RunArgs::try_parse_from(args).unwrap();
    Config::from_parts(parsed, Some("pod-test".into()), Some("10.0.0.7".into()))
}

// ---------------------------------------------------------------------------------------
// Hardening table: "chunk extensions (`3;x=y`) — dropped: theia gets the body re-chunked
// without them".

#[tokio::test]
async fn chunk_extensions_are_dropped_and_the_body_rechunked() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let mut c = send_raw(
        proxy.addr,
        b"POST /socket.io/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\nHost: h\r\n\
          Transfer-Encoding: chunked\r\n\r\n\
          3;x=y\r\nabc\r\n5;name=\"quoted;value\"\r\ndefgh\r\n0;last=1\r\n\r\n",
    )
    .await;
    let mut conn = up.accept().await;
    let mut buf = Vec::new();
    let head = String::from_utf8_lossy(&read_head(&mut conn, &mut buf).await).to_ascii_lowercase();
    assert!(
        head.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{head}"
    );
    // The body's first blank line is its end, with or without extensions.
    read_until(&mut conn, &mut buf, b"\r\n\r\n").await;
    // Exactly hyper's re-chunking: sizes in hex, no extension left, the same data.
    assert_eq!(
        String::from_utf8_lossy(&buf),
        "3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n"
    );
    answer_ok(&mut conn).await;
    assert!(
        read_head(&mut c, &mut Vec::new())
            .await
            .starts_with(b"HTTP/1.1 200 OK\r\n")
    );
    let r = proxy.next_event("request").await;
    assert_eq!(
        r["bytes_in"], 8,
        "the body's data bytes, extensions not counted"
    );
}

// ---------------------------------------------------------------------------------------
// `--sio-path PATH`: what makes a path a socket.io path (matched anywhere in the path).

#[tokio::test]
async fn a_custom_sio_path_decides_what_is_recorded_and_decoded() {
    let mut up = RawUpstream::start().await;
    let proxy = Proxy::start(up.addr, |c| {
        *c = config_from_flags(up.addr, &["--sio-path", "/engine.io/"])
    })
    .await;
    let targets = [
        "/engine.io/?EIO=4&transport=polling&sid=S1",
        "/socket.io/?EIO=4&transport=polling&sid=S2",
        "/theia/engine.io/?EIO=4&transport=websocket&sid=S3",
    ];
    // One client connection, one exchange after the other; each answered before the next.
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    let mut conn = None;
    for target in targets {
        c.write_all(format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
            .await
            .unwrap();
        if conn.is_none() {
            conn = Some(up.accept().await);
        }
        let conn = conn.as_mut().unwrap();
        let head = read_head(conn, &mut Vec::new()).await;
        assert!(head.starts_with(format!("GET {target} ").as_bytes()));
        answer_ok(conn).await;
        let mut resp = Vec::new();
        read_head(&mut c, &mut resp).await;
        read_at_least(&mut c, &mut resp, 2).await;
    }
    drop(c);
    let (_, records) = proxy.stop().await;
    let requests: Vec<&Value> = records.iter().filter(|r| r["event"] == "request").collect();
    let paths: Vec<_> = requests
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["/engine.io/", "/theia/engine.io/"],
        "only the --sio-path paths are recorded (no --log-all): {records:?}"
    );
    for (r, (sid, transport)) in requests
        .iter()
        .zip([("S1", "polling"), ("S3", "websocket")])
    {
        assert_eq!(r["sio"]["sid"], sid);
        assert_eq!(r["sio"]["eio"], "4");
        assert_eq!(r["sio"]["transport"], transport);
    }
    // Decoded as socket.io: a websocket request without Upgrade is flagged.
    assert_eq!(
        requests[1]["flags"],
        serde_json::json!(["upgrade_header_missing", "sid_not_issued_here"])
    );
}

// ---------------------------------------------------------------------------------------
// `--redact-query NAMES`: values of the named query parameters are `<redacted>` in
// `query`, `httpRequest.requestUrl` and `message` (`none` turns it off); theia gets them.

/// Sends `GET target` through a proxy started with `flags`; returns what the upstream
/// received as its request line and the request record.
async fn query_through(flags: &[&str], target: &str) -> (String, Value) {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |c| *c = config_from_flags(up.addr, flags)).await;
    let mut c = send_raw(
        proxy.addr,
        format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
    )
    .await;
    let mut conn = up.accept().await;
    let head = String::from_utf8(read_head(&mut conn, &mut Vec::new()).await).unwrap();
    answer_ok(&mut conn).await;
    read_head(&mut c, &mut Vec::new()).await;
    let r = proxy.next_event("request").await;
    (head.lines().next().unwrap().to_string(), r)
}

/// `query`, `requestUrl` and `message` of a request record, which all show the query.
fn query_fields(r: &Value) -> (String, String, String) {
    let s = |v: &Value| v.as_str().unwrap().to_string();
    (
        s(&r["query"]),
        s(&r["httpRequest"]["requestUrl"]),
        s(&r["message"]),
    )
}

#[tokio::test]
async fn redact_query_none_logs_every_value() {
    let q = "EIO=4&transport=polling&access_token=s3cr3t&sig=abc&t=1";
    let (line, r) = query_through(&["--redact-query", "none"], &format!("/socket.io/?{q}")).await;
    assert_eq!(line, format!("GET /socket.io/?{q} HTTP/1.1"));
    let (query, url, message) = query_fields(&r);
    assert_eq!(query, q);
    assert_eq!(url, format!("http://h/socket.io/?{q}"));
    assert!(
        message.starts_with(&format!("GET /socket.io/?{q} 200 ")),
        "{message}"
    );
}

#[tokio::test]
async fn a_custom_redact_list_replaces_the_default_one() {
    let q = "EIO=4&transport=polling&Session_Key=k3y&access_token=visible&t=1";
    let (line, r) = query_through(
        &["--redact-query", "session_key,other"],
        &format!("/socket.io/?{q}"),
    )
    .await;
    assert_eq!(
        line,
        format!("GET /socket.io/?{q} HTTP/1.1"),
        "theia gets the values"
    );
    let want = "EIO=4&transport=polling&Session_Key=<redacted>&access_token=visible&t=1";
    let (query, url, message) = query_fields(&r);
    assert_eq!(query, want);
    assert_eq!(url, format!("http://h/socket.io/?{want}"));
    assert!(
        message.starts_with(&format!("GET /socket.io/?{want} 200 ")),
        "{message}"
    );
    assert!(!r.to_string().contains("k3y"), "{r}");
}

#[tokio::test]
async fn the_tunnel_records_redact_the_query_too() {
    use futures_util::StreamExt;
    let engine = engine_upstream().await;
    let mut proxy = Proxy::start(engine, |_| {}).await;
    let (mut ws, _) = ws_connect(
        proxy.addr,
        "/socket.io/?EIO=4&transport=websocket&token=s3cr3t&t=2",
    )
    .await;
    within(ws.next()).await.unwrap().unwrap(); // the open packet
    within(ws.close(None)).await.unwrap();
    ws_until_end(&mut ws).await;
    drop(ws);
    let want = "EIO=4&transport=websocket&token=<redacted>&t=2";
    let up = proxy.next_event("upgrade").await;
    let (query, url, message) = query_fields(&up);
    assert_eq!(query, want);
    assert_eq!(url, format!("http://{}/socket.io/?{want}", proxy.addr));
    assert!(
        message.starts_with(&format!("GET /socket.io/?{want} 101 ")),
        "{message}"
    );
    let closed = proxy.next_event("tunnel_closed").await;
    assert_eq!(closed["id"], up["id"]);
    assert_eq!(closed["httpRequest"]["requestUrl"], url);
    for r in [&up, &closed] {
        assert!(!r.to_string().contains("s3cr3t"), "{r}");
    }
}

// ---------------------------------------------------------------------------------------
// Records stay bounded: "`method`, `path`, `query` and the `sio` fields are cut at 4 KiB
// the same way" as header values (`…[truncated, N bytes]`); theia gets them whole.

/// `s` as the record shows a value over 4 KiB: its first 4096 bytes and the marker.
fn cut(s: &str) -> String {
    format!("{}…[truncated, {} bytes]", &s[..4096], s.len())
}

#[tokio::test]
async fn method_path_query_and_sio_fields_are_cut_at_4_kib() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let method = "M".repeat(4097);
    let path = format!("/{}/socket.io/", "p".repeat(5000));
    let sid = "s".repeat(4200);
    let query = format!("EIO=4&transport=polling&sid={sid}&pad={}", "q".repeat(300));
    let request_line = format!("{method} {path}?{query} HTTP/1.1");
    let mut c = send_raw(
        proxy.addr,
        format!("{request_line}\r\nHost: h\r\n\r\n").as_bytes(),
    )
    .await;
    let mut conn = up.accept().await;
    let head = String::from_utf8(read_head(&mut conn, &mut Vec::new()).await).unwrap();
    assert_eq!(
        head.lines().next().unwrap(),
        request_line,
        "theia gets it whole"
    );
    answer_ok(&mut conn).await;
    read_head(&mut c, &mut Vec::new()).await;
    let r = proxy.next_event("request").await;
    assert_eq!(r["method"], cut(&method));
    assert_eq!(r["path"], cut(&path));
    assert_eq!(r["query"], cut(&query));
    assert_eq!(r["sio"]["sid"], cut(&sid));
    assert_eq!(r["sio"]["eio"], "4", "short fields stay whole");
    // At exactly 4096 bytes nothing is cut.
    let path = format!("/socket.io/{}", "p".repeat(4096 - 11));
    let sid = "s".repeat(4096);
    let target = format!("{path}?sid={sid}");
    let mut c = send_raw(
        proxy.addr,
        format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
    )
    .await;
    let head = read_head(&mut conn, &mut Vec::new()).await;
    assert!(head.starts_with(format!("GET {target} ").as_bytes()));
    answer_ok(&mut conn).await;
    read_head(&mut c, &mut Vec::new()).await;
    let r = proxy.next_event("request").await;
    assert_eq!(
        (
            r["path"].as_str().unwrap(),
            r["sio"]["sid"].as_str().unwrap()
        ),
        (path.as_str(), sid.as_str())
    );
}

// ---------------------------------------------------------------------------------------
// `--max-connections N`: "writes one `connection_limit` record per minute while it lasts".
// Tokio's clock is paused, so the minute passes by `advance`. The waits here use no
// timer (a paused clock jumps to the next timer whenever the runtime idles, and I/O
// readiness does not stop that jump), so the run is bounded by a real-time deadline
// from outside instead.

/// `GET /metrics` on `admin`, without a timer: the value of `sockproxy_accept_paused_total`.
async fn accept_pauses(admin: SocketAddr) -> f64 {
    use tokio::io::AsyncReadExt;
    let mut s = TcpStream::connect(admin).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.lines()
        .find_map(|l| l.strip_prefix("sockproxy_accept_paused_total "))
        .expect("the counter is exported")
        .trim()
        .parse()
        .unwrap()
}

/// Waits (without a timer) until accepting has paused `n` times in all.
async fn paused_times(admin: SocketAddr, n: f64) {
    while accept_pauses(admin).await < n {
        tokio::task::yield_now().await;
    }
    assert_eq!(accept_pauses(admin).await, n);
}

async fn one_limit_record_per_minute() {
    use tokio::sync::mpsc::error::TryRecvError;
    let start = tokio::time::Instant::now();
    let mut cfg = Config::for_upstream(closed_port().await);
    cfg.max_connections = 1;
    cfg.header_timeout = None; // no timer anywhere in the proxy
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = admin_listener.local_addr().unwrap();
    let (sink, mut records) = sockproxy::sink::Sink::memory(None, None);
    let (_stop, signals) = tokio::sync::mpsc::channel(1);
    tokio::spawn(sockproxy::server::run(
        listener,
        Some(admin_listener),
        cfg,
        sink,
        signals,
    ));
    let mut next = async || parse_line(&records.recv().await.unwrap());
    assert_eq!(next().await["event"], "listening");

    // The first time the limit is reached: a record.
    let mut held = TcpStream::connect(addr).await.unwrap();
    let r = next().await;
    assert_eq!(
        (&r["event"], &r["severity"], &r["max_connections"]),
        (&"connection_limit".into(), &"WARNING".into(), &1.into())
    );
    paused_times(admin, 1.0).await;
    // Reached again 0 s and 59 s later: counted, no record.
    for (pause, later) in [(2.0, 0), (3.0, 59)] {
        tokio::time::advance(Duration::from_secs(later)).await;
        drop(held);
        held = TcpStream::connect(addr).await.unwrap();
        paused_times(admin, pause).await;
        assert_eq!(
            records.try_recv().err(),
            Some(TryRecvError::Empty),
            "pause {pause}"
        );
    }
    // A minute after the record: the next one.
    tokio::time::advance(Duration::from_secs(1)).await;
    drop(held);
    let _held = TcpStream::connect(addr).await.unwrap();
    paused_times(admin, 4.0).await;
    let r = parse_line(&records.try_recv().expect("a record a minute later"));
    assert_eq!(r["event"], "connection_limit");
    assert_eq!(records.try_recv().err(), Some(TryRecvError::Empty));
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(60),
        "the paused clock moved only by advance()"
    );
}

#[test]
fn at_most_one_connection_limit_record_per_minute() {
    let (done, result) = std::sync::mpsc::channel();
    let run = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(one_limit_record_per_minute());
        done.send(()).unwrap();
    });
    if result.recv_timeout(slacken(WAIT)).is_err() {
        // Either the run panicked (join shows why) or it is stuck past the deadline.
        assert!(run.is_finished(), "no result within {:?}", slacken(WAIT));
    }
    run.join().unwrap();
}
