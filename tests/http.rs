//! Plain exchanges: streamed bodies both ways, keep-alive, upstream down, client aborts.

mod support;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn large_post_streams_without_buffering_whole() {
    const LEN: usize = 8 * 1024 * 1024;
    let body = noise(7, LEN);
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;

    let head = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid=s HTTP/1.1\r\nHost: h\r\nContent-Length: {LEN}\r\n\r\n"
    );
    let mut client = send_raw(proxy.addr, head.as_bytes()).await;
    let (half_seen_tx, half_seen_rx) = tokio::sync::oneshot::channel();
    let first_half = body[..LEN / 2].to_vec();
    let second_half = body[LEN / 2..].to_vec();
    let writer = tokio::spawn(async move {
        client.write_all(&first_half).await.unwrap();
        // The rest is sent only once the upstream has seen the first half: a proxy
        // that buffered whole bodies would never get there.
        half_seen_rx.await.unwrap();
        client.write_all(&second_half).await.unwrap();
        client
    });

    let mut conn = up.accept().await;
    let mut buf = Vec::new();
    let got_head = read_head(&mut conn, &mut buf).await;
    assert!(find(&got_head, format!("Content-Length: {LEN}").as_bytes()).is_some());
    read_at_least(&mut conn, &mut buf, LEN / 2).await;
    half_seen_tx.send(()).unwrap();
    read_at_least(&mut conn, &mut buf, LEN).await;
    assert_eq!(buf.len(), LEN);
    assert_eq!(hash(&buf), hash(&body));
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nok")
        .await
        .unwrap();

    let mut client = within(writer).await.unwrap();
    let mut resp = Vec::new();
    read_head(&mut client, &mut resp).await;
    let r = proxy.next_event("request").await;
    assert_eq!(r["bytes_in"], LEN as u64);
    assert_eq!(r["bytes_out"], 2);
    assert_eq!(r["httpRequest"]["requestSize"], LEN.to_string());
}

#[tokio::test]
async fn chunked_stays_chunked_both_ways_and_responses_stream() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let mut client = send_raw(
        proxy.addr,
        b"POST /socket.io/?EIO=4&transport=polling&sid=s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    let mut conn = up.accept().await;
    let mut buf = Vec::new();
    let head = read_head(&mut conn, &mut buf).await;
    assert!(find(&head, b"Transfer-Encoding: chunked\r\n").is_some());
    assert!(find(&head, b"Content-Length").is_none());
    read_until(&mut conn, &mut buf, b"0\r\n\r\n").await;
    assert_eq!(dechunk(&buf), b"hello world");

    // The response streams: the client sees the first chunk before the upstream
    // writes the last one.
    conn.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let resp_head = read_head(&mut client, &mut got).await;
    assert!(find(&resp_head, b"Transfer-Encoding: chunked\r\n").is_some());
    read_until(&mut client, &mut got, b"one").await;
    conn.write_all(b"3\r\ntwo\r\n0\r\n\r\n").await.unwrap();
    read_until(&mut client, &mut got, b"0\r\n\r\n").await;
    assert_eq!(dechunk(&got), b"onetwo");
    let r = proxy.next_event("request").await;
    assert_eq!(
        (r["bytes_in"].as_u64(), r["bytes_out"].as_u64()),
        (Some(11), Some(6))
    );
    assert_eq!(r["outcome"], "complete");
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = find(b, b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..line_end]).unwrap().trim(), 16).unwrap();
        b = &b[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[tokio::test]
async fn keep_alive_connection_carries_several_exchanges() {
    let engine = engine_upstream().await;
    let mut proxy = Proxy::start(engine, |_| {}).await;
    let mut client = send_raw(
        proxy.addr,
        b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .await;
    let mut buf = Vec::new();
    read_head(&mut client, &mut buf).await;
    let first = proxy.next_event("request").await;
    client
        .write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let second = proxy.next_event("request").await;
    assert_eq!(first["conn"], second["conn"]);
    assert_ne!(first["id"], second["id"]);
    assert_eq!(first["sio"]["handshake"], true);
    assert_ne!(first["sio"]["sid"], second["sio"]["sid"]);
}

#[tokio::test]
async fn upstream_down_gets_a_fast_502_and_a_record() {
    let down = closed_port().await;
    let mut proxy = Proxy::start(down, |_| {}).await;
    for path in ["/socket.io/?EIO=4&transport=polling", "/static/app.js"] {
        let mut client = send_raw(
            proxy.addr,
            format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        let resp = read_to_end(&mut client).await;
        let text = String::from_utf8_lossy(&resp);
        assert!(text.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{text}");
        assert!(text.contains("sockproxy"));
        // Recorded even outside socket.io paths: an operator must see sockproxy's own answers.
        let r = proxy.next_event("request").await;
        assert_eq!(r["status"], 502);
        assert_eq!(r["severity"], "WARNING");
        assert_eq!(r["outcome"], "upstream_error");
        assert_eq!(r["flags"], serde_json::json!(["upstream_unreachable"]));
        assert!(
            r["upstream_error"].as_str().unwrap().contains("connect"),
            "{r}"
        );
        assert!(
            r.get("sio_error").is_none(),
            "no engine.io body was ever sent: {r}"
        );
    }
}

#[tokio::test]
async fn other_paths_are_not_recorded_unless_log_all() {
    let engine = engine_upstream().await;
    for log_all in [false, true] {
        let proxy = Proxy::start(engine, |c| c.log_all = log_all).await;
        let mut c = send_raw(proxy.addr, b"GET /health HTTP/1.1\r\nHost: h\r\nUser-Agent: GoogleHC/1.0\r\nConnection: close\r\n\r\n").await;
        let resp = read_to_end(&mut c).await;
        assert!(resp.starts_with(b"HTTP/1.1 404"));
        let (_, rest) = proxy.stop().await;
        let requests: Vec<_> = rest.iter().filter(|r| r["event"] == "request").collect();
        if log_all {
            assert_eq!(requests.len(), 1);
            assert_eq!(requests[0]["flags"], serde_json::json!(["health_check"]));
            assert_eq!(requests[0]["status"], 404);
            assert!(requests[0].get("sio").is_none());
        } else {
            assert!(requests.is_empty(), "{requests:?}");
        }
    }
}

#[tokio::test]
async fn client_leaving_a_long_poll_is_recorded_and_reaches_upstream() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let client = send_raw(
        proxy.addr,
        b"GET /socket.io/?EIO=4&transport=polling&sid=live HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .await;
    let mut conn = up.accept().await;
    read_head(&mut conn, &mut Vec::new()).await;
    drop(client); // nginx gives up on the pending long-poll

    let r = proxy.next_event("request").await;
    assert_eq!(r["outcome"], "client_aborted");
    assert_eq!(
        r["flags"],
        serde_json::json!(["sid_not_issued_here", "poll_aborted"])
    );
    // Theia must see the abort too (engine.io kills the session on it), not a dangling poll.
    let mut rest = [0u8; 1];
    let n = within(conn.read(&mut rest)).await.unwrap_or(0);
    assert_eq!(n, 0, "the upstream connection must be closed");
}

#[tokio::test]
async fn pod_header_is_added_only_when_asked() {
    let engine = engine_upstream().await;
    for on in [false, true] {
        let mut proxy = Proxy::start(engine, |c| c.pod_header = on).await;
        let mut c = send_raw(proxy.addr, b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").await;
        let resp = read_to_end(&mut c).await;
        let has = find(&resp, b"x-pod-name: pod-test\r\n").is_some();
        assert_eq!(has, on);
        let r = proxy.next_event("request").await;
        assert_eq!(r["resp_headers"].get("x-pod-name").is_some(), on);
    }
}

#[tokio::test]
async fn client_leaving_mid_body_is_client_aborted_not_an_upstream_error() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let client = send_raw(
        proxy.addr,
        b"POST /socket.io/?EIO=4&transport=polling&sid=s HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await;
    let mut conn = up.accept().await;
    let mut buf = Vec::new();
    read_head(&mut conn, &mut buf).await;
    read_at_least(&mut conn, &mut buf, 10).await;
    drop(client);
    let r = proxy.next_event("request").await;
    assert_eq!(r["outcome"], "client_aborted", "{r}");
    assert_eq!(r["status"], 0, "nothing was sent to the client");
    assert_eq!(r["bytes_in"], 10);
    assert!(
        r.get("upstream_error").is_none() && r.get("sio_error").is_none(),
        "{r}"
    );
    assert!(
        !r["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "upstream_unreachable")
    );
}
