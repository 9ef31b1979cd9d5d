//! Each record type against the contract's fields and types (shared/CONTRACT.md §2).

mod support;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use support::*;
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Copy, Debug)]
enum T {
    Str,
    Num,
    Bool,
    Obj,
    Arr,
    StrOrNull,
}

fn check(rec: &Value, fields: &[(&str, T)]) {
    for (name, t) in fields {
        let v = rec
            .get(*name)
            .unwrap_or_else(|| panic!("missing `{name}` in {rec}"));
        let ok = match t {
            T::Str => v.is_string(),
            T::Num => v.is_number(),
            T::Bool => v.is_boolean(),
            T::Obj => v.is_object(),
            T::Arr => v.is_array(),
            T::StrOrNull => v.is_string() || v.is_null(),
        };
        assert!(ok, "`{name}` should be {t:?}, is {v} in {rec}");
    }
}

fn common(rec: &Value) {
    check(
        rec,
        &[
            ("time", T::Str),
            ("severity", T::Str),
            ("message", T::Str),
            ("event", T::Str),
            ("pod", T::Str),
            ("pod_ip", T::Str),
        ],
    );
    let time = rec["time"].as_str().unwrap();
    // RFC 3339 UTC with exactly six fractional digits: 2026-11-25T12:00:00.123456Z
    let b = time.as_bytes();
    assert_eq!(b.len(), 27, "{time}");
    assert!(
        b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':'
            && b[19] == b'.'
            && b[26] == b'Z',
        "{time}"
    );
    assert!(b[20..26].iter().all(u8::is_ascii_digit), "{time}");
    assert!(["INFO", "WARNING", "ERROR"].contains(&rec["severity"].as_str().unwrap()));
    assert_eq!(rec["pod"], "pod-test");
    assert_eq!(rec["pod_ip"], "10.0.0.7");
}

const EXCHANGE: &[(&str, T)] = &[
    ("id", T::Str),
    ("conn", T::Num),
    ("client", T::Str),
    ("method", T::Str),
    ("path", T::Str),
    ("query", T::StrOrNull),
    ("status", T::Num),
    ("headers", T::Obj),
    ("resp_headers", T::Obj),
    ("flags", T::Arr),
    ("duration_ms", T::Num),
    ("bytes_in", T::Num),
    ("bytes_out", T::Num),
    ("outcome", T::Str),
    ("httpRequest", T::Obj),
];

fn exchange(rec: &Value) {
    common(rec);
    check(rec, EXCHANGE);
    for h in [
        "upgrade",
        "connection",
        "host",
        "origin",
        "x-forwarded-for",
        "x-forwarded-proto",
    ] {
        assert!(
            rec["headers"].get(h).is_some(),
            "headers.{h} must always be present: {rec}"
        );
    }
    let hr = &rec["httpRequest"];
    check(
        hr,
        &[
            ("requestMethod", T::Str),
            ("requestUrl", T::Str),
            ("status", T::Num),
            ("requestSize", T::Str),
            ("responseSize", T::Str),
            ("remoteIp", T::Str),
            ("latency", T::Str),
            ("protocol", T::Str),
        ],
    );
    assert!(hr["latency"].as_str().unwrap().ends_with('s'));
    if let Some(sio) = rec.get("sio") {
        check(
            sio,
            &[
                ("eio", T::StrOrNull),
                ("transport", T::StrOrNull),
                ("sid", T::StrOrNull),
                ("t", T::StrOrNull),
                ("handshake", T::Bool),
            ],
        );
    }
}

#[tokio::test]
async fn every_event_has_the_contract_fields() {
    let engine = engine_upstream().await;
    let mut proxy = Proxy::start(engine, |c| c.gcp_project = Some("my-proj".into())).await;

    // request: a polling handshake through a GFE-like front.
    let trace = "105445aa7843bc8bf206b12000100000";
    let mut c = send_raw(
        proxy.addr,
        format!(
            "GET /theia/socket.io/?EIO=4&transport=polling&t=Pabc HTTP/1.1\r\nHost: ide.example.com\r\nOrigin: https://ide.example.com\r\nX-Forwarded-For: 203.0.113.7, 34.1.2.3\r\nX-Forwarded-Proto: https\r\nVia: 1.1 google\r\nX-Cloud-Trace-Context: {trace}/42;o=1\r\nUser-Agent: Mozilla/5.0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let body = read_to_end(&mut c).await;
    let body = String::from_utf8_lossy(&body);
    let sid =
        sockproxy::sio::open_packet_sid(body.split("\r\n\r\n").nth(1).unwrap().as_bytes()).unwrap();
    let r = proxy.next_event("request").await;
    exchange(&r);
    assert_eq!(r["severity"], "INFO");
    assert_eq!(
        r["sio"]["sid"],
        sid.as_str(),
        "the handshake line carries the issued sid"
    );
    assert_eq!(r["sio"]["handshake"], true);
    assert_eq!(r["sio"]["t"], "Pabc");
    assert_eq!(r["query"], "EIO=4&transport=polling&t=Pabc");
    assert_eq!(r["flags"], serde_json::json!([]));
    assert_eq!(r["trace"], trace);
    assert_eq!(
        r["logging.googleapis.com/trace"],
        format!("projects/my-proj/traces/{trace}")
    );
    assert_eq!(r["logging.googleapis.com/spanId"], "000000000000002a");
    assert_eq!(
        r["httpRequest"]["requestUrl"],
        "https://ide.example.com/theia/socket.io/?EIO=4&transport=polling&t=Pabc"
    );
    assert_eq!(r["httpRequest"]["remoteIp"], "203.0.113.7");
    assert_eq!(r["httpRequest"]["userAgent"], "Mozilla/5.0");
    assert_eq!(r["httpRequest"]["protocol"], "HTTP/1.1");
    assert_eq!(r["httpRequest"]["status"], 200);
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .starts_with("GET /theia/socket.io/?EIO=4&transport=polling&t=Pabc 200 ")
    );

    // upgrade + tunnel_closed with the same sid.
    let (mut ws, _) = ws_connect(
        proxy.addr,
        &format!("/socket.io/?EIO=4&transport=websocket&sid={sid}"),
    )
    .await;
    let up = proxy.next_event("upgrade").await;
    exchange(&up);
    assert_eq!(up["status"], 101);
    assert_eq!(up["sio"]["sid"], sid.as_str());
    within(ws.send(Message::text("2probe"))).await.unwrap();
    assert_eq!(
        within(ws.next()).await.unwrap().unwrap(),
        Message::text("3probe")
    );
    within(ws.close(None)).await.unwrap();
    ws_until_end(&mut ws).await;
    drop(ws);
    let t = proxy.next_event("tunnel_closed").await;
    common(&t);
    check(
        &t,
        &[
            ("id", T::Str),
            ("conn", T::Num),
            ("sio", T::Obj),
            ("duration_ms", T::Num),
            ("bytes_client_to_upstream", T::Num),
            ("bytes_upstream_to_client", T::Num),
            ("closed_by", T::Str),
            ("error", T::StrOrNull),
            ("httpRequest", T::Obj),
        ],
    );
    assert_eq!(t["id"], up["id"]);
    assert_eq!(t["sio"]["sid"], sid.as_str());
    // The frames each way, on the wire (RFC 6455 §5.2: 2 header bytes below 126 bytes of
    // payload, plus a 4-byte mask from the client): 2probe and an empty close up,
    // 3probe and the close reply down.
    let frame = |payload: usize, masked: bool| 2 + payload + if masked { 4 } else { 0 };
    assert_eq!(
        t["bytes_client_to_upstream"],
        frame(6, true) + frame(0, true)
    );
    assert_eq!(
        t["bytes_upstream_to_client"],
        frame(6, false) + frame(0, false)
    );
    assert!(["client", "upstream"].contains(&t["closed_by"].as_str().unwrap()));
    assert_eq!(t["httpRequest"]["protocol"], "websocket");

    // draining + stopped.
    let (summary, rest) = proxy.stop().await;
    assert!(summary.drained);
    let events: Vec<&str> = rest.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["draining", "stopped"]);
    common(&rest[0]);
    check(
        &rest[0],
        &[
            ("open_tunnels", T::Num),
            ("open_requests", T::Num),
            ("deadline_s", T::Num),
        ],
    );
    common(&rest[1]);
    check(
        &rest[1],
        &[
            ("drained", T::Bool),
            ("tunnels_closed_by_shutdown", T::Num),
            ("uptime_s", T::Num),
        ],
    );
    assert_eq!(rest[1]["drained"], true);
}

#[tokio::test]
async fn listening_names_the_real_addresses() {
    let engine = engine_upstream().await;
    let mut cfg = sockproxy::cli::config_for_upstream(engine);
    cfg.pod = Some("pod-test".into());
    cfg.pod_ip = Some("10.0.0.7".into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (sink, mut lines) = sockproxy::sink::Sink::memory(cfg.pod.clone(), cfg.pod_ip.clone());
    let (stop, signals) = tokio::sync::mpsc::channel(1);
    let task = tokio::spawn(sockproxy::server::run(listener, None, cfg, sink, signals));
    let l = parse_line(&within(lines.recv()).await.unwrap());
    common(&l);
    assert_eq!(l["event"], "listening");
    assert_eq!(l["listen"], addr.to_string());
    assert_eq!(l["upstream"], engine.to_string());
    assert_eq!(l["version"], env!("CARGO_PKG_VERSION"));
    stop.send(()).await.unwrap();
    within(task).await.unwrap().unwrap();
}

#[tokio::test]
async fn hostile_header_bytes_still_make_one_valid_line() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |c| {
        c.capture_headers = vec!["x-evil".parse().unwrap(), "authorization".parse().unwrap()];
        c.max_header_bytes = 256 * 1024; // the default (64 KiB) would refuse this head
    })
    .await;
    let mut req = b"GET /socket.io/?EIO=4&transport=polling&sid=%22%0A%5C HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer s3cr3t\r\nOrigin: http://\xff\xfe\"}\r\nX-Evil: \"\\\x7e".to_vec();
    req.extend_from_slice(&vec![b'A'; 100 * 1024]);
    req.extend_from_slice(b"\r\n\r\n");
    let _c = send_raw(proxy.addr, &req).await;
    let mut conn = up.accept().await;
    read_head(&mut conn, &mut Vec::new()).await;
    drop(conn);
    let r = proxy.next_event("request").await; // parse_line asserts one valid JSON line
    exchange(&r);
    assert_eq!(r["headers"]["authorization"], "<redacted>");
    assert_eq!(r["sio"]["sid"], "\"\n\\");
    let evil = r["headers"]["x-evil"].as_str().unwrap();
    assert!(
        evil.len() < 5000 && evil.contains("truncated"),
        "{}",
        evil.len()
    );
    assert!(!r.to_string().contains("s3cr3t"));
}

/// `httpRequest.protocol` is the version the request came in, and an `Upgrade` sent as
/// HTTP/1.0 (nginx without `proxy_http_version 1.1`) is flagged, whatever theia answers.
#[tokio::test]
async fn the_request_version_is_recorded_as_it_came_in() {
    const WS_10: &str = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.0\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    const REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-type: text/html\r\nContent-Length: 11\r\n\r\nBad request";
    let cases: &[(&str, &str, &[&str])] = &[
        (WS_10, "HTTP/1.0", &["http10_upgrade"]),
        (
            "GET /socket.io/?EIO=4&transport=polling HTTP/1.0\r\nHost: h\r\n\r\n",
            "HTTP/1.0",
            &[],
        ),
        (&WS_10.replace("HTTP/1.0", "HTTP/1.1"), "HTTP/1.1", &[]),
    ];
    for (request, protocol, flags) in cases {
        let mut up = RawUpstream::start().await;
        let mut proxy = Proxy::start(up.addr, |_| {}).await;
        let mut client = send_raw(proxy.addr, request.as_bytes()).await;
        let mut conn = up.accept().await;
        read_head(&mut conn, &mut Vec::new()).await;
        tokio::io::AsyncWriteExt::write_all(&mut conn, REFUSAL)
            .await
            .unwrap();
        drop(conn);
        read_to_end(&mut client).await;
        let r = proxy.next_event("request").await;
        exchange(&r);
        assert_eq!(r["httpRequest"]["protocol"], *protocol, "{request}");
        assert_eq!(r["flags"], serde_json::json!(flags), "{request}");
    }
}
