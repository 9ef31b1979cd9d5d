//! Hostile clients and failing upstreams, over real loopback sockets: request smuggling
//! attempts (asserting what the upstream actually received), limits and timeouts, and
//! faults on either side. Each test fails without the protection it names.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const POLL: &str = "/socket.io/?EIO=4&transport=polling&sid=abc";

/// Answers one request on `conn` with `200 ok` (keep-alive).
async fn answer_ok(conn: &mut TcpStream) {
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .await
        .unwrap();
}

/// The head the client got back, and whether the connection then closed.
async fn response_head(c: &mut TcpStream) -> String {
    String::from_utf8_lossy(&read_head(c, &mut Vec::new()).await).into_owned()
}

fn lower(head: &[u8]) -> String {
    String::from_utf8_lossy(head).to_ascii_lowercase()
}

/// Sends a well-formed request on a new client connection.
async fn send_legit(proxy: SocketAddr) -> TcpStream {
    send_raw(
        proxy,
        format!("GET {POLL}&legit=1 HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
    )
    .await
}

/// Checks that the next head on upstream connection `conn` is [`send_legit`]'s request,
/// answers it, and that client `c` gets the 200.
async fn legit_answered(c: &mut TcpStream, conn: &mut TcpStream) {
    let head = read_head(conn, &mut Vec::new()).await;
    assert!(
        head.starts_with(format!("GET {POLL}&legit=1 HTTP/1.1\r\n").as_bytes()),
        "upstream saw {:?}",
        String::from_utf8_lossy(&head)
    );
    answer_ok(conn).await;
    assert!(response_head(c).await.starts_with("HTTP/1.1 200"));
}

/// A well-formed request reaches the upstream on the next connection it accepts.
async fn next_upstream_head_is_legit(proxy: SocketAddr, up: &mut RawUpstream) {
    let mut c = send_legit(proxy).await;
    let mut conn = up.accept().await;
    legit_answered(&mut c, &mut conn).await;
}

// ---------------------------------------------------------------------------------------
// Never a smuggler: the upstream sees the same request boundaries sockproxy did.

#[tokio::test]
async fn content_length_with_chunked_forwards_chunked_only_and_closes() {
    let mut up = RawUpstream::start().await;
    let proxy = Proxy::start(up.addr, |_| {}).await;
    let mut c = send_raw(
        proxy.addr,
        format!(
            "POST {POLL} HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let mut conn = up.accept().await;
    let mut buf = Vec::new();
    let head = lower(&read_head(&mut conn, &mut buf).await);
    assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    read_until(&mut conn, &mut buf, b"0\r\n\r\n").await;
    assert_eq!(buf, b"5\r\nhello\r\n0\r\n\r\n");
    answer_ok(&mut conn).await;
    // The client connection is closed after the answer: what followed the chunked body
    // is never read as a request.
    let rest = read_to_end(&mut c).await;
    assert_eq!(rest.windows(8).filter(|w| w == b"HTTP/1.1").count(), 1);
    // The pooled upstream connection carries the next real request, not /smuggled.
    let mut c2 = send_legit(proxy.addr).await;
    legit_answered(&mut c2, &mut conn).await;
}

#[tokio::test]
async fn differing_content_lengths_are_refused_with_a_record() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let mut c = send_raw(
        proxy.addr,
        format!(
            "POST {POLL} HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nhello"
        )
        .as_bytes(),
    )
    .await;
    assert!(response_head(&mut c).await.starts_with("HTTP/1.1 400"));
    let r = proxy.next_event("client_error").await;
    assert_eq!(r["error_kind"], "bad_request");
    assert_eq!(r["status"], 400);
    assert_eq!(r["severity"], "WARNING");
    next_upstream_head_is_legit(proxy.addr, &mut up).await;
}

#[tokio::test]
async fn equal_duplicate_content_lengths_reach_upstream_once() {
    let mut up = RawUpstream::start().await;
    let proxy = Proxy::start(up.addr, |_| {}).await;
    let mut c = send_raw(
        proxy.addr,
        format!(
            "POST {POLL} HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
        )
        .as_bytes(),
    )
    .await;
    let mut conn = up.accept().await;
    let mut buf = Vec::new();
    let head = lower(&read_head(&mut conn, &mut buf).await);
    assert_eq!(head.matches("content-length: 5\r\n").count(), 1, "{head}");
    read_at_least(&mut conn, &mut buf, 5).await;
    assert_eq!(buf, b"hello");
    answer_ok(&mut conn).await;
    assert!(response_head(&mut c).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn obs_fold_and_bad_transfer_encodings_are_refused() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    for req in [
        format!("GET {POLL} HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n b\r\n\r\n"),
        format!("POST {POLL} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\nxx"),
        format!("POST {POLL} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
        format!("POST {POLL} HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        format!("POST {POLL} HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n"),
        format!("POST {POLL} HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n"),
        "GET /socket.io/ HTTP/1.1\r\nHost: h\r\nBad Name: v\r\n\r\n".to_string(),
    ] {
        let mut c = send_raw(proxy.addr, req.as_bytes()).await;
        let head = response_head(&mut c).await;
        assert!(head.starts_with("HTTP/1.1 400"), "{req:?} → {head}");
        let r = proxy.next_event("client_error").await;
        assert_eq!(r["error_kind"], "bad_request", "{req:?}");
    }
    next_upstream_head_is_legit(proxy.addr, &mut up).await;
}

#[tokio::test]
async fn chunked_applied_twice_is_refused_before_the_upstream() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    for te in [
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked, CHUNKED",
    ] {
        let mut c = send_raw(
            proxy.addr,
            format!("POST {POLL} HTTP/1.1\r\nHost: h\r\n{te}\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
                .as_bytes(),
        )
        .await;
        let head = response_head(&mut c).await;
        assert!(head.starts_with("HTTP/1.1 400"), "{te}");
        assert!(
            head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
        let _ = read_to_end(&mut c).await; // and the connection ends
        let r = proxy.next_event("request").await;
        assert_eq!(r["status"], 400);
        assert!(r["upstream_error"].as_str().unwrap().contains("chunked"));
    }
    next_upstream_head_is_legit(proxy.addr, &mut up).await;
}

#[tokio::test]
async fn http2_preface_is_closed_unanswered_with_a_record() {
    let up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let mut c = send_raw(proxy.addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    assert!(read_to_end(&mut c).await.is_empty());
    let r = proxy.next_event("client_error").await;
    assert_eq!(r["status"], 0);
    assert!(r["error"].as_str().unwrap().contains("HTTP2"), "{r}");
}

#[tokio::test]
async fn bare_lf_heads_reach_upstream_with_crlf() {
    let mut up = RawUpstream::start().await;
    let proxy = Proxy::start(up.addr, |_| {}).await;
    let mut c = send_raw(
        proxy.addr,
        format!("POST {POLL} HTTP/1.1\nHost: h\nX-A: 1\nContent-Length: 3\n\nabc").as_bytes(),
    )
    .await;
    let mut conn = up.accept().await;
    let mut buf = Vec::new();
    let head = read_head(&mut conn, &mut buf).await;
    assert_eq!(
        String::from_utf8_lossy(&head),
        format!("POST {POLL} HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nContent-Length: 3\r\n\r\n")
    );
    read_at_least(&mut conn, &mut buf, 3).await;
    assert_eq!(buf, b"abc");
    answer_ok(&mut conn).await;
    assert!(response_head(&mut c).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn invalid_chunk_size_ends_the_upstream_request_unfinished() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let head = format!("POST {POLL} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut c = send_raw(proxy.addr, format!("{head}5\r\nhello\r\n").as_bytes()).await;
    // The head and the first chunk reach the upstream, so there is a request under way...
    let mut conn = up.accept().await;
    let mut buf = Vec::new();
    let got = read_head(&mut conn, &mut buf).await;
    assert_eq!(lower(&got), head.to_ascii_lowercase());
    read_at_least(&mut conn, &mut buf, 10).await;
    assert_eq!(buf, b"5\r\nhello\r\n");
    // ... then an invalid chunk size, the end of the body and a smuggled request: the
    // upstream connection is closed with that request unfinished, and nothing more sent.
    c.write_all(b"zz\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_to_end(&mut conn).await, b"", "after the first chunk");
    let r = proxy.next_event("request").await;
    assert_ne!(r["outcome"], "complete");
    next_upstream_head_is_legit(proxy.addr, &mut up).await;
}

// ---------------------------------------------------------------------------------------
// Never an open proxy: only --upstream is ever connected to.

#[tokio::test]
async fn absolute_form_and_odd_hosts_go_to_the_upstream_only() {
    let mut up = RawUpstream::start().await;
    let decoy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere = decoy.local_addr().unwrap();
    let proxy = Proxy::start(up.addr, |_| {}).await;
    for (target, host) in [
        (format!("http://{elsewhere}{POLL}"), format!("{elsewhere}")),
        (POLL.to_string(), format!("{elsewhere}")),
        (POLL.to_string(), "evil.example:99999".to_string()),
        (POLL.to_string(), "a b".to_string()),
    ] {
        let mut c = send_raw(
            proxy.addr,
            format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
        )
        .await;
        let mut conn = up.accept().await;
        let head = read_head(&mut conn, &mut Vec::new()).await;
        let head = String::from_utf8_lossy(&head);
        assert!(
            head.starts_with(&format!("GET {POLL} HTTP/1.1\r\n")),
            "{head}"
        );
        assert!(head.contains(&format!("\r\nHost: {host}\r\n")), "{head}");
        answer_ok(&mut conn).await;
        assert!(response_head(&mut c).await.starts_with("HTTP/1.1 200"));
    }
    assert!(
        decoy.accept().now_or_never().is_none(),
        "decoy was contacted"
    );
}

#[tokio::test]
async fn connect_is_refused_with_a_record() {
    let up = RawUpstream::start().await;
    let decoy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere = decoy.local_addr().unwrap();
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let mut c = send_raw(
        proxy.addr,
        format!("CONNECT {elsewhere} HTTP/1.1\r\nHost: {elsewhere}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(response_head(&mut c).await.starts_with("HTTP/1.1 405"));
    let r = proxy.next_event("request").await;
    assert_eq!(r["method"], "CONNECT");
    assert_eq!(r["status"], 405);
    assert!(
        decoy.accept().now_or_never().is_none(),
        "decoy was contacted"
    );
}

// ---------------------------------------------------------------------------------------
// Limits and timeouts.

#[tokio::test]
async fn oversized_heads_are_431_and_never_forwarded() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |c| c.max_headers = 50).await;
    let big = "A".repeat(100 * 1024);
    let many: String = (0..60).map(|i| format!("X-H{i}: v\r\n")).collect();
    for req in [
        format!("GET {POLL} HTTP/1.1\r\nHost: h\r\nX-Big: {big}\r\n\r\n"),
        format!("GET {POLL} HTTP/1.1\r\nHost: h\r\n{many}\r\n"),
    ] {
        let mut c = send_raw(proxy.addr, req.as_bytes()).await;
        assert!(response_head(&mut c).await.starts_with("HTTP/1.1 431"));
        let r = proxy.next_event("client_error").await;
        assert_eq!(r["error_kind"], "head_too_large");
        assert_eq!(r["status"], 431);
    }
    next_upstream_head_is_legit(proxy.addr, &mut up).await;
}

#[tokio::test]
async fn an_unfinished_head_over_the_limit_is_refused_before_it_ends() {
    let up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |c| c.max_header_bytes = 16 * 1024).await;
    // 20 KiB of header lines and no blank line: the head never completes, yet it is
    // already over the limit, so sockproxy stops buffering it and answers now.
    let mut req = format!("GET {POLL} HTTP/1.1\r\nHost: h\r\n").into_bytes();
    for i in 0..200 {
        req.extend_from_slice(format!("X-Filler-{i:03}: {}\r\n", "v".repeat(80)).as_bytes());
    }
    let mut c = send_raw(proxy.addr, &req).await;
    assert!(response_head(&mut c).await.starts_with("HTTP/1.1 431"));
    assert_eq!(
        proxy.next_event("client_error").await["error_kind"],
        "head_too_large"
    );
}

#[tokio::test]
async fn a_raised_header_limit_is_honoured_past_hypers_buffer_default() {
    let mut up = RawUpstream::start().await;
    let proxy = Proxy::start(up.addr, |c| c.max_header_bytes = 1024 * 1024).await;
    let big = "b".repeat(500 * 1024);
    let mut c = send_raw(
        proxy.addr,
        format!("GET {POLL} HTTP/1.1\r\nHost: h\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    let mut conn = up.accept().await;
    let head = read_head(&mut conn, &mut Vec::new()).await;
    assert!(head.len() > 500 * 1024);
    answer_ok(&mut conn).await;
    assert!(response_head(&mut c).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_uri_over_64_kib_is_414_and_recorded_as_such() {
    let up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |c| c.max_header_bytes = 256 * 1024).await;
    let long = "a".repeat(70 * 1024);
    let mut c = send_raw(
        proxy.addr,
        format!("GET /socket.io/?x={long} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(response_head(&mut c).await.starts_with("HTTP/1.1 414"));
    let r = proxy.next_event("client_error").await;
    assert_eq!(r["error_kind"], "uri_too_long");
    assert_eq!(r["status"], 414);
}

#[tokio::test]
async fn slow_heads_are_cut_and_idle_keep_alive_closes_quietly() {
    let timeout = Duration::from_millis(300);
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |c| c.header_timeout = Some(timeout)).await;
    // Slowloris: half a head, then nothing. The clock starts once the proxy reads the
    // head, after `started`: the cut must not come before the timeout.
    let started = Instant::now();
    let mut slow = send_raw(proxy.addr, b"GET /socket.io/ HTTP/1.1\r\nHost: h\r\n").await;
    assert!(
        read_to_end(&mut slow).await.is_empty(),
        "closed without an answer"
    );
    let took = started.elapsed();
    assert!(
        took >= timeout && took < timeout + slacken(Duration::from_secs(2)),
        "slow head cut after {took:?}"
    );
    let r = proxy.next_event("client_error").await;
    assert_eq!(r["error_kind"], "header_timeout");
    // A kept-alive connection that goes quiet after a request is closed too, unrecorded.
    let mut c = send_raw(
        proxy.addr,
        format!("GET {POLL} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
    )
    .await;
    let mut conn = up.accept().await;
    read_head(&mut conn, &mut Vec::new()).await;
    // The wait for the next head starts once this answer has gone out, after `answered`.
    let answered = Instant::now();
    answer_ok(&mut conn).await;
    let mut rest = Vec::new();
    read_head(&mut c, &mut rest).await;
    let _ = within(c.read_to_end(&mut rest)).await; // EOF: sockproxy closed it
    let idle = answered.elapsed();
    assert!(
        idle >= timeout && idle < timeout + slacken(Duration::from_secs(2)),
        "idle keep-alive closed after {idle:?}"
    );
    let m = scrape(proxy.admin).await;
    assert_eq!(
        m.get("sockproxy_client_errors_total{kind=idle_timeout}"),
        Some(&1.0)
    );
    assert_eq!(
        m.get("sockproxy_client_errors_total{kind=header_timeout}"),
        Some(&1.0)
    );
    let (_, rest) = proxy.stop().await;
    assert!(
        rest.iter().all(|r| r["event"] != "client_error"),
        "{rest:?}"
    );
}

#[tokio::test]
async fn at_max_connections_accepting_pauses_until_one_closes() {
    let engine = engine_upstream().await;
    let mut proxy = Proxy::start(engine, |c| c.max_connections = 2).await;
    let a = within(TcpStream::connect(proxy.addr)).await.unwrap();
    let mut b = send_raw(proxy.addr, b"GET /healthz-b HTTP/1.1\r\nHost: h\r\n\r\n").await;
    read_head(&mut b, &mut Vec::new()).await; // b is being served: two slots taken
    let r = proxy.next_event("connection_limit").await;
    assert_eq!(r["max_connections"], 2);
    // A third connection completes its TCP handshake (backlog) but is not served ...
    let mut c = send_raw(
        proxy.addr,
        b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .await;
    let m = scrape(proxy.admin).await;
    assert_eq!(m.get("sockproxy_connections_open{}"), Some(&2.0));
    assert_eq!(
        m.get("sockproxy_accept_paused_total{}"),
        Some(&1.0),
        "one pause"
    );
    let mut early = [0u8; 1];
    assert!(
        c.read(&mut early).now_or_never().is_none(),
        "served above the limit"
    );
    // ... until one closes.
    drop(a);
    assert!(response_head(&mut c).await.starts_with("HTTP/1.1 200"));
    let r = proxy.next_event("request").await;
    assert_eq!(r["status"], 200);
}

#[tokio::test]
async fn quiet_tunnels_close_at_the_idle_timeout() {
    let timeout = Duration::from_millis(300);
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |c| c.tunnel_idle_timeout = Some(timeout)).await;
    // Traffic first, then silence. The client's first bytes go with the upgrade request,
    // so they cross the tunnel as it opens (no race with the timeout) and count as
    // traffic: what closes it is the silence after them.
    let started = Instant::now();
    let mut c = send_raw(
        proxy.addr,
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nping",
    )
    .await;
    let mut conn = up.accept().await;
    let mut got = Vec::new();
    read_head(&mut conn, &mut got).await;
    conn.write_all(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .await
    .unwrap();
    read_head(&mut c, &mut Vec::new()).await;
    read_at_least(&mut conn, &mut got, 4).await;
    assert_eq!(got, b"ping");
    assert!(read_to_end(&mut c).await.is_empty());
    // The tunnel (and its idle clock) starts after `started`: not closed before the timeout.
    let took = started.elapsed();
    assert!(
        took >= timeout && took < timeout + slacken(Duration::from_secs(2)),
        "quiet tunnel closed after {took:?}"
    );
    assert!(read_to_end(&mut conn).await.is_empty());
    let r = proxy.next_event("tunnel_closed").await;
    assert_eq!(r["closed_by"], "idle_timeout");
    assert_eq!(r["bytes_client_to_upstream"], 4);
    assert!(r["duration_ms"].as_f64().unwrap() >= 300.0);
}

#[tokio::test]
async fn upstream_connect_timeout_is_a_504_with_a_record() {
    let (addr, _held) = full_backlog().await;
    let timeout = Duration::from_millis(300);
    let mut proxy = Proxy::start(addr, |c| c.connect_timeout = timeout).await;
    let started = Instant::now();
    let mut c = send_raw(
        proxy.addr,
        format!("GET {POLL} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(response_head(&mut c).await.starts_with("HTTP/1.1 504"));
    let took = started.elapsed();
    assert!(took >= timeout, "gave up on the connect after {took:?}");
    let r = proxy.next_event("request").await;
    assert_eq!(r["status"], 504);
    assert_eq!(r["upstream_error"], "connect timed out");
    assert!(
        r["flags"]
            .as_array()
            .unwrap()
            .contains(&"upstream_unreachable".into())
    );
}

// ---------------------------------------------------------------------------------------
// Query tokens never reach the log; the upstream still gets them.

#[tokio::test]
async fn token_query_parameters_are_redacted_in_records_only() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let target = "/socket.io/?EIO=4&transport=polling&access_token=s3cr3t&Token=t0k&t=1";
    let mut c = send_raw(
        proxy.addr,
        format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
    )
    .await;
    let mut conn = up.accept().await;
    let head = read_head(&mut conn, &mut Vec::new()).await;
    assert!(head.starts_with(format!("GET {target} ").as_bytes()));
    answer_ok(&mut conn).await;
    response_head(&mut c).await;
    let r = proxy.next_event("request").await;
    assert_eq!(
        r["query"],
        "EIO=4&transport=polling&access_token=<redacted>&Token=<redacted>&t=1"
    );
    let line = r.to_string();
    assert!(!line.contains("s3cr3t") && !line.contains("t0k"), "{line}");
    assert!(
        r["httpRequest"]["requestUrl"]
            .as_str()
            .unwrap()
            .ends_with("access_token=<redacted>&Token=<redacted>&t=1")
    );
}

// ---------------------------------------------------------------------------------------
// Faults: every record stays accurate, the process goes on.

#[tokio::test]
async fn upstream_reset_mid_response_is_an_upstream_error() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let mut c = send_raw(
        proxy.addr,
        format!("GET {POLL} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
    )
    .await;
    let mut conn = up.accept().await;
    read_head(&mut conn, &mut Vec::new()).await;
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
        .await
        .unwrap();
    let mut got = Vec::new();
    read_head(&mut c, &mut got).await;
    read_at_least(&mut c, &mut got, 10).await;
    conn.set_zero_linger().unwrap();
    drop(conn); // RST
    let mut rest = Vec::new();
    let _ = within(c.read_to_end(&mut rest)).await; // the client sees the cut
    assert!(got.len() + rest.len() < 1000);
    let r = proxy.next_event("request").await;
    assert_eq!(r["outcome"], "upstream_error");
    assert_eq!(r["bytes_out"], 10);
    next_upstream_head_is_legit(proxy.addr, &mut up).await;
}

#[tokio::test]
async fn upstream_reset_mid_tunnel_is_closed_by_upstream_with_the_error() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let mut c = send_raw(
        proxy.addr,
        b"GET /socket.io/?EIO=4&transport=websocket&sid=abc HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .await;
    let mut conn = up.accept().await;
    read_head(&mut conn, &mut Vec::new()).await;
    conn.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello")
        .await
        .unwrap();
    let mut got = Vec::new();
    read_head(&mut c, &mut got).await;
    read_at_least(&mut c, &mut got, 5).await;
    conn.set_zero_linger().unwrap();
    drop(conn);
    let mut rest = Vec::new();
    let _ = within(c.read_to_end(&mut rest)).await;
    let r = proxy.next_event("tunnel_closed").await;
    assert_eq!(r["closed_by"], "upstream");
    assert_eq!(r["bytes_upstream_to_client"], 5);
    assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()), "{r}");
}

#[tokio::test]
async fn upstream_restart_is_502_while_down_then_works_again() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut proxy = Proxy::start(addr, |_| {}).await;
    let request = format!("GET {POLL} HTTP/1.1\r\nHost: h\r\n\r\n");

    // Up: one exchange, its upstream connection stays pooled.
    let mut c = send_raw(proxy.addr, request.as_bytes()).await;
    let (mut conn, _) = within(listener.accept()).await.unwrap();
    read_head(&mut conn, &mut Vec::new()).await;
    answer_ok(&mut conn).await;
    assert!(response_head(&mut c).await.starts_with("HTTP/1.1 200"));
    assert_eq!(proxy.next_event("request").await["status"], 200);

    // Down: the pooled connection and the listener are gone.
    drop(conn);
    drop(listener);
    c.write_all(request.as_bytes()).await.unwrap();
    assert!(response_head(&mut c).await.starts_with("HTTP/1.1 502"));
    let r = proxy.next_event("request").await;
    assert_eq!(r["status"], 502);

    // Up again on the same port: served.
    let listener = TcpListener::bind(addr).await.unwrap();
    c.write_all(request.as_bytes()).await.unwrap();
    let (mut conn, _) = within(listener.accept()).await.unwrap();
    read_head(&mut conn, &mut Vec::new()).await;
    answer_ok(&mut conn).await;
    assert!(response_head(&mut c).await.starts_with("HTTP/1.1 200"));
    assert_eq!(proxy.next_event("request").await["status"], 200);
}

#[tokio::test]
async fn an_error_body_all_sent_keeps_its_decoding_when_the_client_leaves_before_its_end() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let mut c = send_raw(
        proxy.addr,
        b"GET /socket.io/?EIO=4&transport=websocket&sid=abc HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .await;
    let mut conn = up.accept().await;
    read_head(&mut conn, &mut Vec::new()).await;
    // engine.io's abortRequest: chunked JSON; the last-chunk marker has not come yet.
    let json = br#"{"code":3,"message":"Bad request"}"#;
    conn.write_all(
        format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            json.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    conn.write_all(json).await.unwrap();
    conn.write_all(b"\r\n").await.unwrap();
    let mut got = Vec::new();
    read_until(&mut c, &mut got, json).await;
    drop(c); // the client leaves with the whole body
    let r = proxy.next_event("request").await;
    assert_eq!(r["outcome"], "client_aborted");
    assert_eq!(r["sio_error"]["code"], 3);
    drop(conn);
}
