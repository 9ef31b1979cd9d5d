//! README claims that had no test that could fail (issue 16): chunk extensions, a custom
//! `--sio-path`, `--redact-query` lists and the tunnel's `requestUrl`, the 4 KiB cut of
//! method/path/query, one `connection_limit` record per minute, and every environment
//! variable of the configuration table read by clap and reaching the run.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use sockproxy::cli::RunArgs;
use sockproxy::config::Config;
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
    parsed.with_pod(Some("pod-test".into()), Some("10.0.0.7".into()))
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
    let mut cfg = sockproxy::cli::config_for_upstream(closed_port().await);
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

// ---------------------------------------------------------------------------------------
// The configuration table: each flag's environment variable is the one clap reads (the
// README's table is compared with clap's own), each is read by the binary, and each
// value reaches the run.

const BIN: &str = env!("CARGO_BIN_EXE_sockproxy");

/// `(long flag, env var, default values)` of every `run` flag, as clap declares them.
fn clap_run_flags() -> Vec<(String, Option<String>, Vec<String>)> {
    use clap::Args;
    let cmd = RunArgs::augment_args(clap::Command::new("sockproxy"));
    cmd.get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?;
            Some((
                format!("--{long}"),
                a.get_env().map(|e| e.to_string_lossy().into_owned()),
                a.get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect(),
            ))
        })
        .collect()
}

/// The binary with no inherited `SOCKPROXY_*` / `GOOGLE_CLOUD_PROJECT` variables.
fn sockproxy(args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(BIN);
    c.args(args)
        .env_remove("RUST_LOG")
        .env("POD_NAME", "pod-bin")
        .env("POD_IP", "10.1.2.3")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("SOCKPROXY_") || k == "GOOGLE_CLOUD_PROJECT" {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn the_readme_configuration_table_is_what_clap_reads() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Configuration")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a Configuration section");
    // `| `--flag ARG` … | `ENV` … | `default` … or prose | meaning |`
    let ticked = |cell: &str| cell.split('`').nth(1).map(str::to_string);
    let rows: Vec<(String, Option<String>, Option<String>)> = section
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            let flag = ticked(cells[0]).unwrap();
            let flag = flag.split(' ').next().unwrap().to_string();
            let default = match cells[2].trim() {
                "off" => Some("false".to_string()),
                "none" => None,
                d if d.starts_with('`') => ticked(d),
                _ => None, // prose: no fixed default (e.g. the CPU count)
            };
            (flag, ticked(cells[1]), default)
        })
        .collect();
    let clap: Vec<(String, Option<String>, Option<String>)> = clap_run_flags()
        .into_iter()
        .map(|(flag, env, defaults)| (flag, env, defaults.first().cloned()))
        .collect();
    assert_eq!(rows, clap, "README's table (left) against clap (right)");
    assert_eq!(rows.len(), 17);
}

/// A value clap refuses, for each environment variable.
const REFUSED: &[(&str, &str)] = &[
    ("SOCKPROXY_LISTEN", "3000"),
    ("SOCKPROXY_UPSTREAM", "https://theia:3000"),
    ("SOCKPROXY_ADMIN", "nowhere"),
    ("SOCKPROXY_DRAIN_TIMEOUT", "soon"),
    ("SOCKPROXY_LOG_ALL", "maybe"),
    ("SOCKPROXY_SIO_PATH", "socket.io"),
    ("SOCKPROXY_CAPTURE_HEADERS", "bad header"),
    ("SOCKPROXY_POD_HEADER", "maybe"),
    ("SOCKPROXY_WORKERS", "0"),
    ("GOOGLE_CLOUD_PROJECT", "a b"),
    ("SOCKPROXY_HEADER_TIMEOUT", "-1"),
    ("SOCKPROXY_MAX_HEADER_BYTES", "100"),
    ("SOCKPROXY_MAX_HEADERS", "0"),
    ("SOCKPROXY_CONNECT_TIMEOUT", "forever"),
    ("SOCKPROXY_MAX_CONNECTIONS", "0"),
    ("SOCKPROXY_TUNNEL_IDLE_TIMEOUT", "later"),
    ("SOCKPROXY_REDACT_QUERY", ","),
];

#[tokio::test]
async fn the_binary_reads_every_environment_variable_for_its_flag() {
    let flags = clap_run_flags();
    let mut envs: Vec<&str> = flags.iter().filter_map(|(_, e, _)| e.as_deref()).collect();
    let mut table: Vec<&str> = REFUSED.iter().map(|(e, _)| *e).collect();
    envs.sort();
    table.sort();
    assert_eq!(table, envs, "one refused value per variable clap reads");
    for (env, bad) in REFUSED {
        let flag = &flags
            .iter()
            .find(|(_, e, _)| e.as_deref() == Some(env))
            .unwrap()
            .0;
        let out = within(sockproxy(&[]).env(env, bad).output()).await.unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env}={bad}: {err}");
        assert!(out.stdout.is_empty(), "{env}");
        assert_eq!(
            err.trim_end(),
            err.lines().next().unwrap_or_default(),
            "{env}: one line"
        );
        assert!(
            err.contains(&format!("invalid value '{bad}' for {flag} (env {env})")),
            "{env}={bad}: {err}"
        );
    }
}

type Lines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// The binary started with `env`; its stdout lines and its `listening` record.
async fn spawn_with_env(env: &[(&str, String)]) -> (tokio::process::Child, Lines, Value) {
    use tokio::io::AsyncBufReadExt;
    let mut cmd = sockproxy(&[]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = next_line(&mut lines).await;
    assert_eq!(listening["event"], "listening", "{listening}");
    (child, lines, listening)
}

async fn next_line(lines: &mut Lines) -> Value {
    let line = within(lines.next_line())
        .await
        .unwrap()
        .expect("stdout ended");
    parse_line(&format!("{line}\n"))
}

/// Skips records until one with `event`.
async fn next_of(lines: &mut Lines, event: &str) -> Value {
    loop {
        let r = next_line(lines).await;
        if r["event"] == event {
            return r;
        }
    }
}

/// One request on a new connection; the whole response as text.
async fn exchange(addr: SocketAddr, head: &str) -> String {
    let mut c = send_raw(addr, head.as_bytes()).await;
    String::from_utf8_lossy(&read_to_end(&mut c).await).into_owned()
}

#[tokio::test]
async fn every_environment_variable_reaches_the_run() {
    use futures_util::StreamExt;
    let engine = engine_upstream().await;
    let env = [
        ("SOCKPROXY_LISTEN", "127.0.0.1:0".to_string()),
        ("SOCKPROXY_UPSTREAM", format!("http://{engine}")),
        ("SOCKPROXY_ADMIN", "127.0.0.1:0".into()),
        ("SOCKPROXY_DRAIN_TIMEOUT", "7".into()),
        ("SOCKPROXY_LOG_ALL", "true".into()),
        ("SOCKPROXY_SIO_PATH", "/engine.io/".into()),
        ("SOCKPROXY_CAPTURE_HEADERS", "x-a,X-B,Date".into()),
        ("SOCKPROXY_POD_HEADER", "true".into()),
        ("GOOGLE_CLOUD_PROJECT", "proj-1".into()),
        ("SOCKPROXY_HEADER_TIMEOUT", "1".into()),
        ("SOCKPROXY_MAX_HEADER_BYTES", "2048".into()),
        ("SOCKPROXY_MAX_HEADERS", "5".into()),
        ("SOCKPROXY_MAX_CONNECTIONS", "2".into()),
        ("SOCKPROXY_TUNNEL_IDLE_TIMEOUT", "0.5".into()),
        ("SOCKPROXY_REDACT_QUERY", "mykey".into()),
        // SOCKPROXY_WORKERS and SOCKPROXY_CONNECT_TIMEOUT: the next test.
    ];
    let (child, mut lines, l) = spawn_with_env(&env).await;
    let addr: SocketAddr = l["listen"].as_str().unwrap().parse().unwrap();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 3000, "LISTEN: port 0 picked a free port");
    let admin: SocketAddr = l["admin"].as_str().unwrap().parse().unwrap();
    assert_ne!(admin.port(), 9901, "ADMIN");
    assert_eq!(l["upstream"], engine.to_string(), "UPSTREAM");
    assert_eq!(l["drain_timeout_s"], 7.0, "DRAIN_TIMEOUT");
    assert_eq!(l["log_all"], true, "LOG_ALL");
    assert_eq!(l["sio_path"], "/engine.io/", "SIO_PATH");

    // MAX_CONNECTIONS, then HEADER_TIMEOUT: two idle connections reach the limit, and
    // both are closed once their head is 1 s late (not 75 s).
    let started = std::time::Instant::now();
    let mut idle = [
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    let r = next_of(&mut lines, "connection_limit").await;
    assert_eq!(r["max_connections"], 2, "MAX_CONNECTIONS");
    for c in &mut idle {
        assert!(read_to_end(c).await.is_empty());
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "HEADER_TIMEOUT: closed after {took:?}"
    );
    for _ in 0..2 {
        assert_eq!(
            next_of(&mut lines, "client_error").await["error_kind"],
            "header_timeout"
        );
    }

    // LOG_ALL, SIO_PATH, CAPTURE_HEADERS, POD_HEADER, GOOGLE_CLOUD_PROJECT, REDACT_QUERY.
    let resp = exchange(
        addr,
        "GET /engine.io/?EIO=4&transport=polling&mykey=v1&token=v2 HTTP/1.1\r\nHost: h\r\n\
         X-A: 1\r\nX-B: 2\r\nX-Cloud-Trace-Context: 0123456789abcdef0123456789abcdef/1;o=1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        resp.to_ascii_lowercase()
            .contains("\r\nx-pod-name: pod-bin\r\n"),
        "POD_HEADER: {resp}"
    );
    let r = next_of(&mut lines, "request").await;
    assert_eq!(r["sio"]["transport"], "polling", "SIO_PATH");
    assert_eq!(
        (&r["headers"]["x-a"], &r["headers"]["x-b"]),
        (&"1".into(), &"2".into()),
        "CAPTURE_HEADERS"
    );
    let date = r["resp_headers"]["date"].as_str().unwrap_or_default();
    assert!(
        date.ends_with(" GMT"),
        "CAPTURE_HEADERS: response headers too: {r}"
    );
    assert_eq!(
        r["logging.googleapis.com/trace"],
        "projects/proj-1/traces/0123456789abcdef0123456789abcdef",
        "GOOGLE_CLOUD_PROJECT"
    );
    assert_eq!(
        r["query"], "EIO=4&transport=polling&mykey=<redacted>&token=v2",
        "REDACT_QUERY"
    );
    exchange(
        addr,
        "GET /plain HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    let r = next_of(&mut lines, "request").await;
    assert_eq!(
        (&r["path"], &r["status"]),
        (&"/plain".into(), &404.into()),
        "LOG_ALL"
    );

    // MAX_HEADER_BYTES and MAX_HEADERS: 431 where the defaults (64 KiB, 2000) take it.
    let big = format!(
        "GET /a HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
        "b".repeat(3000)
    );
    let many = format!(
        "GET /b HTTP/1.1\r\nHost: h\r\n{}\r\n",
        "X-N: 1\r\n".repeat(6)
    );
    for (what, head) in [("MAX_HEADER_BYTES", big), ("MAX_HEADERS", many)] {
        assert!(
            exchange(addr, &head).await.starts_with("HTTP/1.1 431 "),
            "{what}"
        );
        assert_eq!(
            next_of(&mut lines, "client_error").await["error_kind"],
            "head_too_large",
            "{what}"
        );
    }

    // TUNNEL_IDLE_TIMEOUT: a quiet tunnel is closed by sockproxy after 0.5 s.
    let (mut ws, _) = ws_connect(addr, "/socket.io/?EIO=4&transport=websocket").await;
    within(ws.next()).await.unwrap().unwrap(); // the open packet
    ws_until_end(&mut ws).await;
    let r = next_of(&mut lines, "tunnel_closed").await;
    assert_eq!(r["closed_by"], "idle_timeout", "TUNNEL_IDLE_TIMEOUT");

    // DRAIN_TIMEOUT, at SIGTERM.
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(
        next_of(&mut lines, "draining").await["deadline_s"],
        7.0,
        "DRAIN_TIMEOUT"
    );
    let out = within(child.wait_with_output()).await.unwrap();
    assert_eq!(out.status.code(), Some(0));
}

/// Threads of the process `pid`.
fn threads(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Threads: in /proc/PID/status")
}

#[tokio::test]
async fn workers_and_connect_timeout_from_the_environment() {
    // WORKERS: one more worker than the default (the CPUs) shows as one more thread, the
    // same count as the flag gives.
    let n = std::thread::available_parallelism().unwrap().get() + 1;
    let base = [
        ("SOCKPROXY_LISTEN", "127.0.0.1:0".to_string()),
        ("SOCKPROXY_ADMIN", "off".into()),
    ];
    let (by_env, _, _) = spawn_with_env(&[
        base[0].clone(),
        base[1].clone(),
        ("SOCKPROXY_WORKERS", n.to_string()),
    ])
    .await;
    let (default, _, _) = spawn_with_env(&base).await;
    let (by_flag, _, _) = {
        use tokio::io::AsyncBufReadExt;
        let mut child = sockproxy(&[
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "off",
            "--workers",
            &n.to_string(),
        ])
        .spawn()
        .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let l = next_line(&mut lines).await;
        (child, lines, l)
    };
    let [by_env, default, by_flag] =
        [&by_env, &default, &by_flag].map(|c| threads(c.id().unwrap()));
    assert_eq!(
        by_env, by_flag,
        "WORKERS={n} gives what --workers {n} gives"
    );
    assert_eq!(
        by_env,
        default + 1,
        "one worker thread more than the default"
    );

    // CONNECT_TIMEOUT: an upstream that never completes a connect gets the 504 after
    // 0.3 s, not the default 10 s.
    let (stuck, _held) = full_backlog().await;
    let (_proxy, mut lines, l) = spawn_with_env(&[
        base[0].clone(),
        base[1].clone(),
        ("SOCKPROXY_UPSTREAM", stuck.to_string()),
        ("SOCKPROXY_CONNECT_TIMEOUT", "0.3".into()),
    ])
    .await;
    let addr: SocketAddr = l["listen"].as_str().unwrap().parse().unwrap();
    let started = std::time::Instant::now();
    let resp = exchange(
        addr,
        "GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    let took = started.elapsed();
    assert!(resp.starts_with("HTTP/1.1 504 "), "{resp}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(
        took < slacken(Duration::from_secs(3)),
        "CONNECT_TIMEOUT: 504 after {took:?}"
    );
    let r = next_of(&mut lines, "request").await;
    assert_eq!(r["upstream_error"], "connect timed out");
}

// ---------------------------------------------------------------------------------------
// The Rust tests' engine.io upstream (`demo::serve_engine`) answers as the real socket.io
// 4.8 does: its answers to the cases of tests/fixtures/engine-io-bytes.json, captured from
// socket.io by tests/e2e/tools/capture-engine-bytes.js (the e2e suite re-captures and
// compares, so a drift of socket.io is caught there), must be the captured bytes. The
// runner and the normalisation are tests/e2e/lib/engine-bytes.js's, in Rust.

/// Bytes as the fixture holds them: one character per byte (latin1).
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn unlatin1(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap())
        .collect()
}

/// The capture's normalisation: `Date` values, and sids by order of first appearance.
fn normalise_capture(text: &str, sids: &mut Vec<String>) -> String {
    let dated: Vec<String> = text
        .split("\r\n")
        .map(|line| match line.split_once(':') {
            Some((name, _)) if name.eq_ignore_ascii_case("date") => format!("{name}: <date>"),
            _ => line.to_string(),
        })
        .collect();
    let text = dated.join("\r\n");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find(r#""sid":""#) {
        let (before, after) = rest.split_at(at + 7);
        let end = after.find('"').expect("a closed string");
        let sid = &after[..end];
        let n = match sids.iter().position(|s| s == sid) {
            Some(i) => i + 1,
            None => {
                sids.push(sid.to_string());
                sids.len()
            }
        };
        out.push_str(before);
        out.push_str(&format!("{{sid{n}}}"));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// What may differ between hyper and Node: the case of header names (RFC 9110 §5.1) and
/// of chunk-size digits (RFC 9112 §7.1, HEXDIG).
fn fold_case(response: &str) -> String {
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let mut out = vec![lines.next().unwrap().to_string()];
    out.extend(lines.map(|l| match l.split_once(':') {
        Some((name, value)) => format!("{}:{value}", name.to_ascii_lowercase()),
        None => l.to_string(),
    }));
    let chunked = head
        .to_ascii_lowercase()
        .contains("\r\ntransfer-encoding: chunked");
    let body = if chunked {
        // size line, data, size line, data, …, "0", "", "": lower-case the size lines
        let mut parts: Vec<String> = body.split("\r\n").map(str::to_string).collect();
        for p in parts.iter_mut().step_by(2) {
            *p = p.to_ascii_lowercase();
        }
        parts.join("\r\n")
    } else {
        body.to_string()
    };
    format!("{}\r\n\r\n{body}", out.join("\r\n"))
}

/// A client frame: FIN, text (or an empty close), masked with the capture's key.
fn client_frame(text: &str) -> Vec<u8> {
    let (opcode, payload) = if text == "close" {
        (0x88, &b""[..])
    } else {
        (0x81, text.as_bytes())
    };
    assert!(payload.len() <= 125);
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Splits one short server frame off the front of `buf`, if it is complete.
fn take_frame(buf: &mut Vec<u8>) -> Option<String> {
    let len = 2 + usize::from(*buf.get(1)? & 0x7f);
    (buf.len() >= len).then(|| latin1(&buf.drain(..len).collect::<Vec<u8>>()))
}

/// Runs one fixture case against `addr`: the response and the frames, as latin1 text.
async fn engine_case(addr: SocketAddr, case: &Value, sids: &[String]) -> (String, Vec<String>) {
    use tokio::io::AsyncReadExt;
    let strings = |k: &str| -> Vec<String> {
        case[k].as_array().map_or(vec![], |a| {
            a.iter().map(|v| v.as_str().unwrap().to_string()).collect()
        })
    };
    let mut request = case["request"].as_str().unwrap().to_string();
    for (i, sid) in sids.iter().enumerate() {
        request = request.replace(&format!("{{sid{}}}", i + 1), sid);
    }
    assert!(!request.contains("{sid"), "{request}: a sid not issued yet");
    let mut s = send_raw(addr, &unlatin1(&request)).await;
    let mut buf = Vec::new();
    let head = latin1(&read_head(&mut s, &mut buf).await);
    let lower = head.to_ascii_lowercase();
    let status = head[9..12].to_string();
    let body_len = if status == "101" {
        0
    } else if lower.contains("\r\ntransfer-encoding: chunked") {
        read_until(&mut s, &mut buf, b"0\r\n\r\n").await;
        find(&buf, b"0\r\n\r\n").unwrap() + 5
    } else if let Some(cl) = lower.split("\r\ncontent-length: ").nth(1) {
        let len: usize = cl.split("\r\n").next().unwrap().trim().parse().unwrap();
        read_at_least(&mut s, &mut buf, len).await;
        len
    } else {
        within(s.read_to_end(&mut buf)).await.unwrap();
        buf.len()
    };
    let response = head + &latin1(&buf.drain(..body_len).collect::<Vec<u8>>());
    let mut frames = Vec::new();
    if status != "101" {
        if lower.contains("\r\nconnection: close\r\n") {
            within(s.read_to_end(&mut buf)).await.unwrap();
            if !buf.is_empty() {
                frames.push(latin1(&buf));
            }
            frames.push("<end>".into());
        }
        return (response, frames);
    }
    for t in strings("send") {
        s.write_all(&client_frame(&t)).await.unwrap();
    }
    let read = case["read"].as_u64().unwrap_or(0) as usize;
    while frames.len() < read {
        match take_frame(&mut buf) {
            Some(f) => frames.push(f),
            None => {
                let want = buf.len() + 1;
                read_at_least(&mut s, &mut buf, want).await;
            }
        }
    }
    for t in strings("thenSend") {
        s.write_all(&client_frame(&t)).await.unwrap();
    }
    if case["end"] == true {
        within(s.read_to_end(&mut buf)).await.unwrap();
        while let Some(f) = take_frame(&mut buf) {
            frames.push(f);
        }
        if !buf.is_empty() {
            frames.push(latin1(&buf));
        }
        frames.push("<end>".into());
    }
    (response, frames)
}

#[tokio::test]
async fn the_demo_upstream_answers_as_socket_io_4_8_does() {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/engine-io-bytes.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert!(
        fixture["versions"]["socket.io"]
            .as_str()
            .unwrap()
            .starts_with("4.8.")
    );
    let engine = engine_upstream().await;
    let mut sids = Vec::new();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 12);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (response, frames) = engine_case(engine, case, &sids).await;
        let response = normalise_capture(&response, &mut sids);
        let frames: Vec<String> = frames
            .iter()
            .map(|f| normalise_capture(f, &mut sids))
            .collect();
        let want = case["response"].as_str().unwrap();
        assert_eq!(fold_case(&response), fold_case(want), "{name}");
        let want_frames: Vec<&str> = case["frames"]
            .as_array()
            .map_or(vec![], |a| a.iter().map(|f| f.as_str().unwrap()).collect());
        assert_eq!(frames, want_frames, "{name}: frames");
    }
}

// `--max-connections`: "client connections open at once, tunnels included".
#[tokio::test]
async fn a_tunnel_keeps_its_connection_slot() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let engine = engine_upstream().await;
    let mut proxy = Proxy::start(engine, |c| c.max_connections = 1).await;
    let sid = {
        let (status, _, body) = get(proxy.addr, "GET", "/socket.io/?EIO=4&transport=polling").await;
        assert_eq!(status, 200);
        sockproxy::sio::open_packet_sid(body.as_bytes()).unwrap()
    };
    let (mut ws, _) = ws_connect(
        proxy.addr,
        &format!("/socket.io/?EIO=4&transport=websocket&sid={sid}"),
    )
    .await;
    // A round trip through the tunnel: the HTTP connection has handed its socket over.
    within(ws.send(Message::text("2probe"))).await.unwrap();
    assert_eq!(
        within(ws.next()).await.unwrap().unwrap(),
        Message::text("3probe")
    );
    proxy.next_event("upgrade").await;
    let m = scrape(proxy.admin).await;
    assert_eq!(
        m["sockproxy_connections_open{}"], 1.0,
        "the tunnel holds the one slot"
    );
    // A second client waits in the backlog until the tunnel ends.
    let mut c = send_raw(
        proxy.addr,
        b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    // Not answered while the tunnel lives (a proxy that freed the slot at the upgrade
    // answers within milliseconds; the window is widened by the slack, never narrowed).
    let mut early = [0u8; 1];
    let waited = tokio::time::timeout(
        slacken(Duration::from_millis(200)),
        tokio::io::AsyncReadExt::read(&mut c, &mut early),
    )
    .await;
    assert!(waited.is_err(), "served above the limit: {waited:?}");
    within(ws.close(None)).await.unwrap();
    ws_until_end(&mut ws).await;
    drop(ws);
    assert!(
        read_to_end(&mut c)
            .await
            .starts_with(b"HTTP/1.1 200 OK\r\n")
    );
    let events: Vec<String> = [proxy.next_record().await, proxy.next_record().await]
        .iter()
        .map(|r| r["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        events,
        ["tunnel_closed", "request"],
        "served after the tunnel ended"
    );
}
