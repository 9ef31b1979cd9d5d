//! Theia receives what nginx sent, and nginx receives what Theia answered: byte for byte.

mod support;

use support::*;
use tokio::io::AsyncWriteExt;

/// What nginx sends with the seed's config, in mixed case, with a repeated header and
/// obs-text; plus a body.
const REQUEST: &[u8] = b"POST /socket.io/?EIO=4&transport=polling&sid=abc&t=PXk3 HTTP/1.1\r\n\
Host: ide.example.com\r\n\
X-Real-IP: 203.0.113.7\r\n\
X-Forwarded-For: 203.0.113.7, 34.1.2.3, 35.191.0.9\r\n\
X-Forwarded-Proto: http\r\n\
Connection: upgrade\r\n\
Content-Length: 5\r\n\
oRiGiN: https://ide.example.com\r\n\
Via: 1.1 google\r\n\
X-Cloud-Trace-Context: 105445aa7843bc8bf206b12000100000/1;o=1\r\n\
Cookie: io=abc; theia-connection-token=t0k3n\r\n\
Cookie: GCLB=CKXX\r\n\
X-Latin1: caf\xe9 cr\xe8me\r\n\
sec-websocket-KEY: not-really\r\n\
\r\n\
40abc";

#[tokio::test]
async fn request_reaches_upstream_byte_for_byte() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let mut client = send_raw(proxy.addr, REQUEST).await;

    let mut conn = up.accept().await;
    let mut buf = Vec::new();
    let head = read_head(&mut conn, &mut buf).await;
    read_at_least(&mut conn, &mut buf, 5).await;
    let mut got = head.clone();
    got.extend_from_slice(&buf);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(REQUEST),
        "the upstream must receive exactly what the client sent"
    );
    assert_eq!(got, REQUEST);

    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .await
        .unwrap();
    let mut resp = Vec::new();
    let head = read_head(&mut client, &mut resp).await;
    assert!(head.starts_with(b"HTTP/1.1 200 OK\r\n"));

    let r = proxy.next_event("request").await;
    assert_eq!(r["headers"]["host"], "ide.example.com");
    assert_eq!(r["headers"]["origin"], "https://ide.example.com");
    assert_eq!(r["headers"]["upgrade"], serde_json::Value::Null);
    assert_eq!(r["headers"]["connection"], "upgrade");
    assert_eq!(
        r["headers"]["x-forwarded-for"],
        "203.0.113.7, 34.1.2.3, 35.191.0.9"
    );
    assert_eq!(
        r["headers"]["cookie"],
        serde_json::json!([
            "io=abc; theia-connection-token=<redacted>",
            "GCLB=<redacted>"
        ])
    );
    assert_eq!(r["bytes_in"], 5);
    assert_eq!(r["trace"], "105445aa7843bc8bf206b12000100000");
}

/// A response head as Node writes it, with a non-canonical reason phrase, mixed case,
/// repeated Set-Cookie and obs-text; a chunked body.
const RESPONSE: &[u8] = b"HTTP/1.1 400 Bad Request For Sure\r\n\
Content-Type: application/json\r\n\
Set-Cookie: a=1; Path=/\r\n\
Set-Cookie: io=s1; Path=/\r\n\
X-Odd-CASE: v\xe9\r\n\
Connection: keep-alive\r\n\
Keep-Alive: timeout=5\r\n\
Transfer-Encoding: chunked\r\n\
\r\n\
29\r\n{\"code\":1,\"message\":\"Session ID unknown\"}\r\n0\r\n\r\n";

#[tokio::test]
async fn response_head_and_body_are_exact() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let mut client = send_raw(
        proxy.addr,
        b"GET /socket.io/?EIO=4&transport=polling&sid=gone HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    let mut conn = up.accept().await;
    read_head(&mut conn, &mut Vec::new()).await;
    conn.write_all(RESPONSE).await.unwrap();
    drop(conn);
    let got = read_to_end(&mut client).await;

    let r = proxy.next_event("request").await;
    assert_eq!(r["status"], 400);
    assert_eq!(
        r["sio_error"],
        serde_json::json!({"code": 1, "message": "Session ID unknown"})
    );
    assert_eq!(
        r["resp_headers"]["set-cookie"],
        serde_json::json!(["a=<redacted>; Path=/", "io=s1; Path=/"])
    );
    assert_eq!(
        r["flags"],
        serde_json::json!(["sid_unknown", "sid_not_issued_here"])
    );
    assert_eq!(r["bytes_out"], 41);

    // hyper closes this connection because the request said `Connection: close`; the
    // one header it may write for that is connection management.
    let expected =
        String::from_utf8_lossy(RESPONSE).replace("Connection: keep-alive", "Connection: close");
    let got_text = String::from_utf8_lossy(&got);
    assert_eq!(strip_keep_alive(&got_text), strip_keep_alive(&expected));
}

fn strip_keep_alive(s: &str) -> String {
    s.lines()
        .filter(|l| !l.starts_with("Connection:") && !l.starts_with("connection:"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn interleaved_repeats_are_grouped_values_kept_in_order() {
    // The one documented deviation (see proxy.rs): http::HeaderMap groups repeated names.
    let mut up = RawUpstream::start().await;
    let proxy = Proxy::start(up.addr, |_| {}).await;
    let _client = send_raw(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-B: 2\r\nX-A: 3\r\n\r\n",
    )
    .await;
    let mut conn = up.accept().await;
    let head = read_head(&mut conn, &mut Vec::new()).await;
    assert_eq!(
        head,
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-A: 3\r\nX-B: 2\r\n\r\n"
    );
}

#[tokio::test]
async fn absolute_form_target_never_routes_elsewhere() {
    let mut up = RawUpstream::start().await;
    let proxy = Proxy::start(up.addr, |_| {}).await;
    let _client = send_raw(
        proxy.addr,
        b"GET http://elsewhere.invalid:9/socket.io/?EIO=4 HTTP/1.1\r\nHost: elsewhere.invalid:9\r\n\r\n",
    )
    .await;
    let mut conn = up.accept().await;
    let head = read_head(&mut conn, &mut Vec::new()).await;
    assert!(
        head.starts_with(b"GET /socket.io/?EIO=4 HTTP/1.1\r\nHost: elsewhere.invalid:9\r\n"),
        "{}",
        String::from_utf8_lossy(&head)
    );
}

#[tokio::test]
async fn keep_alive_response_is_exact_including_connection_headers() {
    let mut up = RawUpstream::start().await;
    let proxy = Proxy::start(up.addr, |_| {}).await;
    let mut client = send_raw(
        proxy.addr,
        b"GET /socket.io/?EIO=4&transport=polling&sid=gone HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .await;
    let mut conn = up.accept().await;
    read_head(&mut conn, &mut Vec::new()).await;
    conn.write_all(RESPONSE).await.unwrap();
    let mut got = Vec::new();
    read_until(&mut client, &mut got, b"0\r\n\r\n").await;
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(RESPONSE)
    );
}

#[tokio::test]
async fn more_headers_than_hyper_defaults_reach_theia() {
    // Node (theia) takes up to 2000 headers; sockproxy must not refuse what theia takes.
    let mut up = RawUpstream::start().await;
    let proxy = Proxy::start(up.addr, |_| {}).await;
    let mut req = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 0..300 {
        req.extend_from_slice(format!("X-H{i}: {i}\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    let _client = send_raw(proxy.addr, &req).await;
    let mut conn = up.accept().await;
    let head = read_head(&mut conn, &mut Vec::new()).await;
    assert_eq!(head, req);
}

/// engine.io's answer to a refused upgrade, written raw on the socket: no
/// `Content-Length`, no `Transfer-Encoding`, the body ends with the connection.
const CLOSE_DELIMITED_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Connection: close\r\n\
Content-type: text/html\r\n\
\r\n\
Session ID unknown";

const WS_UPGRADE: &[u8] = b"GET /socket.io/?EIO=4&transport=websocket&sid=stale HTTP/1.1\r\n\
Host: ide.example.com\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\
\r\n";

/// A close-delimited answer reaches the client as theia wrote it: no header added (no
/// `transfer-encoding: chunked`), the body unframed, then the connection closes.
#[tokio::test]
async fn a_close_delimited_answer_arrives_byte_identical_and_closes() {
    let cases: &[(&str, &[u8], &[u8], u64)] = &[
        ("refused upgrade", WS_UPGRADE, CLOSE_DELIMITED_400, 18),
        (
            "polling GET",
            b"GET /socket.io/?EIO=4&transport=polling&sid=s HTTP/1.1\r\nHost: h\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n2probe",
            6,
        ),
    ];
    for (what, request, answer, body) in cases {
        let mut up = RawUpstream::start().await;
        let mut proxy = Proxy::start(up.addr, |_| {}).await;
        let mut client = send_raw(proxy.addr, request).await;
        let mut conn = up.accept().await;
        read_head(&mut conn, &mut Vec::new()).await;
        conn.write_all(answer).await.unwrap();
        drop(conn); // the end of the body
        let mut got = Vec::new();
        let head = read_head(&mut client, &mut got).await;
        let head_len = find(answer, b"\r\n\r\n").unwrap() + 4;
        assert_eq!(
            String::from_utf8_lossy(&head),
            String::from_utf8_lossy(&answer[..head_len]),
            "{what}: the head as theia wrote it"
        );
        got.extend(read_to_end(&mut client).await); // ends: the connection closed
        assert_eq!(got, &answer[head_len..], "{what}: the body unframed");
        let r = proxy.next_event("request").await;
        assert_eq!(
            (r["outcome"].as_str(), r["bytes_out"].as_u64()),
            (Some("complete"), Some(*body)),
            "{what}: {r}"
        );
    }
}

/// hyper answers an HTTP/1.0 request in HTTP/1.0; the client still gets the status line
/// theia wrote.
#[tokio::test]
async fn an_http10_request_gets_the_status_line_theia_wrote() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    const REQ: &[u8] = b"GET /socket.io/?EIO=4&transport=polling&sid=s HTTP/1.0\r\nHost: h\r\n\r\n";
    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: 6\r\nConnection: close\r\n\r\n2probe";
    let mut client = send_raw(proxy.addr, REQ).await;
    let mut conn = up.accept().await;
    assert_eq!(read_head(&mut conn, &mut Vec::new()).await, REQ);
    conn.write_all(ANSWER).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&read_to_end(&mut client).await),
        String::from_utf8_lossy(ANSWER)
    );
    let r = proxy.next_event("request").await;
    assert_eq!(r["httpRequest"]["protocol"], "HTTP/1.0");
    assert_eq!(r["flags"], serde_json::json!(["sid_not_issued_here"]));
}
