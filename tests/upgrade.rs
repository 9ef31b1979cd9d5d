//! Upgrades: the 101 handoff and the byte-for-byte splice, its counts and `closed_by`.

mod support;

use futures_util::{SinkExt, StreamExt};
use std::io;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

const UPGRADE_REQ: &str = "GET /socket.io/?EIO=4&transport=websocket&sid=SID HTTP/1.1\r\nHost: ide.example.com\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: https://ide.example.com\r\n\r\n";
const SWITCH: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

/// Opens a tunnel: client head + `early` bytes in one write; upstream answers 101 +
/// `first` in one write. Returns both ends with what each has read past the heads.
async fn open_tunnel(
    proxy: &Proxy,
    up: &mut RawUpstream,
    early: &[u8],
    first: &[u8],
) -> (TcpStream, Vec<u8>, TcpStream, Vec<u8>) {
    let mut req = UPGRADE_REQ.as_bytes().to_vec();
    req.extend_from_slice(early);
    let mut client = send_raw(proxy.addr, &req).await;
    let mut upstream = up.accept().await;
    let mut up_buf = Vec::new();
    let head = read_head(&mut upstream, &mut up_buf).await;
    assert_eq!(
        head,
        UPGRADE_REQ.as_bytes(),
        "the upgrade request reaches the upstream exactly"
    );
    let mut resp = SWITCH.to_vec();
    resp.extend_from_slice(first);
    upstream.write_all(&resp).await.unwrap();
    let mut client_buf = Vec::new();
    let head = read_head(&mut client, &mut client_buf).await;
    assert_eq!(head, SWITCH, "the client gets the upstream's 101 exactly");
    (client, client_buf, upstream, up_buf)
}

#[tokio::test]
async fn splice_is_exact_with_early_bytes_and_half_close_by_client() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let early = b"\x81\x85early"; // sent in the same write as the request head
    let first = b"\x81\x05hello"; // sent in the same write as the 101
    let (mut client, mut client_buf, mut upstream, mut up_buf) =
        open_tunnel(&proxy, &mut up, early, first).await;

    let upgrade = proxy.next_event("upgrade").await;
    assert_eq!(upgrade["status"], 101);
    assert_eq!(upgrade["bytes_out"], 0);
    assert_eq!(
        upgrade["resp_headers"]["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );

    read_at_least(&mut client, &mut client_buf, first.len()).await;
    assert_eq!(client_buf, first);
    read_at_least(&mut upstream, &mut up_buf, early.len()).await;
    assert_eq!(up_buf, early);

    let up_data = noise(1, 300_000);
    client.write_all(&up_data).await.unwrap();
    client.shutdown().await.unwrap(); // half-close: the client is done sending
    let rest = read_to_end(&mut upstream).await;
    assert_eq!(
        hash(&rest),
        hash(&up_data),
        "client→upstream intact, then EOF passed on"
    );

    // The other direction still flows after the client's half-close.
    let down_data = noise(2, 500_000);
    upstream.write_all(&down_data).await.unwrap();
    drop(upstream);
    let got = read_to_end(&mut client).await;
    assert_eq!(hash(&got), hash(&down_data));

    let closed = proxy.next_event("tunnel_closed").await;
    assert_eq!(closed["id"], upgrade["id"]);
    assert_eq!(closed["conn"], upgrade["conn"]);
    assert_eq!(closed["closed_by"], "client");
    assert_eq!(closed["error"], serde_json::Value::Null);
    assert_eq!(
        closed["bytes_client_to_upstream"],
        (early.len() + up_data.len()) as u64
    );
    assert_eq!(
        closed["bytes_upstream_to_client"],
        (first.len() + down_data.len()) as u64
    );
    assert_eq!(closed["httpRequest"]["protocol"], "websocket");
    assert_eq!(closed["httpRequest"]["status"], 101);
    assert_eq!(closed["sio"]["sid"], "SID");
}

#[tokio::test]
async fn upstream_closing_first_is_closed_by_upstream() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let (mut client, _, upstream, _) = open_tunnel(&proxy, &mut up, b"", b"").await;
    drop(upstream);
    read_to_end(&mut client).await;
    drop(client);
    let closed = proxy.next_event("tunnel_closed").await;
    assert_eq!(closed["closed_by"], "upstream");
    assert_eq!(closed["bytes_client_to_upstream"], 0);
}

/// Each small message is read with room to spare in the tunnel's buffer, which the
/// tunnel takes as "socket drained" and then waits for the next readiness event rather
/// than reading again. A lost event would stall this ping-pong (each message is sent
/// only after the previous echo arrived); an end-of-stream that came in with the last
/// data must still end the direction.
#[tokio::test]
async fn ping_pong_of_small_messages_and_data_with_fin_all_arrive() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let (mut client, mut client_buf, mut upstream, mut up_buf) =
        open_tunnel(&proxy, &mut up, b"", b"").await;
    for i in 0..300u32 {
        let msg = format!("ping{i:05}");
        client.write_all(msg.as_bytes()).await.unwrap();
        read_at_least(&mut upstream, &mut up_buf, msg.len()).await;
        assert_eq!(up_buf, msg.as_bytes());
        up_buf.clear();
        let echo = format!("pong{i:05}");
        upstream.write_all(echo.as_bytes()).await.unwrap();
        read_at_least(&mut client, &mut client_buf, echo.len()).await;
        assert_eq!(client_buf, echo.as_bytes());
        client_buf.clear();
    }
    // Data and FIN back to back, both ways.
    upstream.write_all(b"bye").await.unwrap();
    upstream.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut client).await, b"bye");
    client.write_all(b"ok").await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut upstream).await, b"ok");
    let closed = proxy.next_event("tunnel_closed").await;
    assert_eq!(closed["closed_by"], "upstream");
    assert_eq!(closed["bytes_client_to_upstream"], 300 * 9 + 2);
    assert_eq!(closed["bytes_upstream_to_client"], 300 * 9 + 3);
}

#[tokio::test]
async fn client_reset_mid_tunnel_keeps_counts() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let (mut client, _, mut upstream, mut up_buf) = open_tunnel(&proxy, &mut up, b"", b"").await;
    client.write_all(b"12345").await.unwrap();
    read_at_least(&mut upstream, &mut up_buf, 5).await;
    client.set_zero_linger().unwrap();
    drop(client); // RST
    assert_eq!(
        read_end(&mut upstream).await,
        Err(io::ErrorKind::ConnectionReset),
        "the client's reset reaches the upstream as a reset, not a clean close"
    );
    let closed = proxy.next_event("tunnel_closed").await;
    assert_eq!(closed["closed_by"], "client");
    assert_eq!(closed["bytes_client_to_upstream"], 5);
    assert!(closed["error"].is_string(), "{closed}");
}

#[tokio::test]
async fn upstream_reset_mid_tunnel_reaches_the_client_as_a_reset() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let (mut client, mut client_buf, upstream, _) = open_tunnel(&proxy, &mut up, b"", b"").await;
    let mut upstream = upstream;
    upstream.write_all(b"678").await.unwrap();
    read_at_least(&mut client, &mut client_buf, 3).await;
    upstream.set_zero_linger().unwrap();
    drop(upstream); // RST
    assert_eq!(
        read_end(&mut client).await,
        Err(io::ErrorKind::ConnectionReset),
        "the upstream's reset reaches the client as a reset, not a clean close"
    );
    let closed = proxy.next_event("tunnel_closed").await;
    assert_eq!(closed["closed_by"], "upstream");
    assert_eq!(closed["bytes_upstream_to_client"], 3);
    assert!(closed["error"].is_string(), "{closed}");
}

/// Reads `s` to its end: the bytes when it ended with a FIN, the error kind when it
/// ended otherwise (a reset).
async fn read_end(s: &mut TcpStream) -> Result<Vec<u8>, io::ErrorKind> {
    let mut out = Vec::new();
    within(s.read_to_end(&mut out))
        .await
        .map(|_| out)
        .map_err(|e| e.kind())
}

/// The upgrade request as nginx sends it without `proxy_http_version 1.1` (but with the
/// Upgrade and Connection headers set).
const UPGRADE_REQ_10: &str = "GET /socket.io/?EIO=4&transport=websocket&sid=SID HTTP/1.0\r\nHost: ide.example.com\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// HTTP/1.1 says to ignore Upgrade in an HTTP/1.0 request, but Node (theia) upgrades
/// it; hyper alone would pass theia's 101 on and then close the connection. sockproxy
/// tunnels it as theia answered, and the records say HTTP/1.0.
#[tokio::test]
async fn an_http10_upgrade_is_tunnelled_as_theia_answered_it_and_recorded_as_http10() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let mut client = send_raw(proxy.addr, UPGRADE_REQ_10.as_bytes()).await;
    let mut upstream = up.accept().await;
    let mut up_buf = Vec::new();
    assert_eq!(
        read_head(&mut upstream, &mut up_buf).await,
        UPGRADE_REQ_10.as_bytes(),
        "theia gets the HTTP/1.0 request as sent"
    );
    upstream.write_all(SWITCH).await.unwrap();
    let mut client_buf = Vec::new();
    assert_eq!(
        String::from_utf8_lossy(&read_head(&mut client, &mut client_buf).await),
        String::from_utf8_lossy(SWITCH),
        "the client gets theia's 101 exactly"
    );

    let upgrade = proxy.next_event("upgrade").await;
    assert_eq!(upgrade["status"], 101);
    assert_eq!(upgrade["httpRequest"]["protocol"], "HTTP/1.0");
    assert_eq!(
        upgrade["flags"],
        serde_json::json!(["sid_not_issued_here", "http10_upgrade"])
    );
    assert!(
        upgrade["message"]
            .as_str()
            .unwrap()
            .ends_with(",http10_upgrade]"),
        "{upgrade}"
    );

    // The tunnel lives: both ways, then a clean close from the client.
    client.write_all(b"\x81\x01a").await.unwrap();
    read_at_least(&mut upstream, &mut up_buf, 3).await;
    assert_eq!(up_buf, b"\x81\x01a");
    upstream.write_all(b"\x81\x01b").await.unwrap();
    read_at_least(&mut client, &mut client_buf, 3).await;
    assert_eq!(client_buf, b"\x81\x01b");
    client.shutdown().await.unwrap();
    assert_eq!(read_end(&mut upstream).await, Ok(Vec::new()));
    drop(upstream);
    let closed = proxy.next_event("tunnel_closed").await;
    assert_eq!(closed["id"], upgrade["id"]);
    assert_eq!(closed["closed_by"], "client");
    assert_eq!(closed["error"], serde_json::Value::Null);
    assert_eq!(closed["bytes_client_to_upstream"], 3);
    assert_eq!(closed["bytes_upstream_to_client"], 3);
}

async fn ws_echo_upstream() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_binary() || m.is_text() {
                        ws.send(m).await.unwrap();
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn websocket_frames_1b_to_256kib_arrive_intact() {
    let upstream = ws_echo_upstream().await;
    let mut proxy = Proxy::start(upstream, |_| {}).await;
    let (mut ws, resp) = ws_connect(proxy.addr, "/socket.io/?EIO=4&transport=websocket").await;
    assert_eq!(resp.status(), 101);
    let mut sizes = vec![1usize, 2, 125, 126, 127, 65_535, 65_536, 65_537, 256 * 1024];
    sizes.extend((0..24u64).map(|i| 1 + (hash(&i.to_le_bytes()) as usize % (256 * 1024))));
    let mut sent = 0u64;
    for (i, size) in sizes.iter().enumerate() {
        let payload = noise(i as u64 + 100, *size);
        within(ws.send(Message::binary(payload.clone())))
            .await
            .unwrap();
        match within(ws.next()).await {
            Some(Ok(Message::Binary(echo))) => {
                assert_eq!(hash(&echo), hash(&payload), "frame {i} of {size} B")
            }
            other => panic!("frame {i}: {other:?}"),
        }
        sent += *size as u64;
    }
    within(ws.close(None)).await.unwrap();
    ws_until_end(&mut ws).await;
    drop(ws); // a browser closes its TCP connection after the close handshake
    let closed = proxy.next_event("tunnel_closed").await;
    let c2u = closed["bytes_client_to_upstream"].as_u64().unwrap();
    let u2c = closed["bytes_upstream_to_client"].as_u64().unwrap();
    // Payload plus framing: client frames carry a 4-byte mask and up to 10 bytes of header.
    assert!(
        c2u >= sent && c2u <= sent + 14 * (sizes.len() as u64 + 1),
        "{c2u} vs {sent}"
    );
    assert!(
        u2c >= sent && u2c <= sent + 10 * (sizes.len() as u64 + 1),
        "{u2c} vs {sent}"
    );
}

#[tokio::test]
async fn websocket_only_handshake_sid_comes_from_the_first_frame() {
    let engine = engine_upstream().await;
    let mut proxy = Proxy::start(engine, |_| {}).await;
    let (mut ws, _) = ws_connect(proxy.addr, "/socket.io/?EIO=4&transport=websocket").await;
    let open = match within(ws.next()).await {
        Some(Ok(Message::Text(t))) => t.to_string(),
        other => panic!("{other:?}"),
    };
    let sid = sockproxy::sio::open_packet_sid(open.as_bytes()).expect("open packet");
    let upgrade = proxy.next_event("upgrade").await;
    assert_eq!(
        upgrade["sio"]["sid"],
        serde_json::Value::Null,
        "no sid in the query yet"
    );
    within(ws.close(None)).await.unwrap();
    ws_until_end(&mut ws).await;
    drop(ws); // a browser closes its TCP connection after the close handshake
    let closed = proxy.next_event("tunnel_closed").await;
    assert_eq!(closed["sio"]["sid"], sid.as_str());

    // Learned: a later request with that sid is not "from another pod".
    let mut c = send_raw(proxy.addr, format!("GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes()).await;
    read_to_end(&mut c).await;
    let r = proxy.next_event("request").await;
    assert!(
        !r["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "sid_not_issued_here"),
        "{r}"
    );
}

#[tokio::test]
async fn refused_upgrade_is_a_request_record_with_the_raw_400_decoded() {
    let engine = engine_upstream().await;
    let mut proxy = Proxy::start(engine, |_| {}).await;
    let mut c = send_raw(
        proxy.addr,
        UPGRADE_REQ.replace("SID", "staleSid").as_bytes(),
    )
    .await;
    let got = read_to_end(&mut c).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nSession ID unknown"), "{text}");
    let r = proxy.next_event("request").await;
    assert_eq!(r["status"], 400);
    assert_eq!(
        r["sio_error"],
        serde_json::json!({"code": 1, "message": "Session ID unknown"})
    );
    assert_eq!(
        r["flags"],
        serde_json::json!(["sid_unknown", "sid_not_issued_here"])
    );
    assert_eq!(r["headers"]["upgrade"], "websocket");
}

#[tokio::test]
async fn upgrades_on_any_path_are_recorded() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let req = "GET /services/terminal HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let mut client = send_raw(proxy.addr, req.as_bytes()).await;
    let mut upstream = up.accept().await;
    read_head(&mut upstream, &mut Vec::new()).await;
    upstream.write_all(SWITCH).await.unwrap();
    read_head(&mut client, &mut Vec::new()).await;
    let r = proxy.next_event("upgrade").await;
    assert_eq!(r["path"], "/services/terminal");
    assert!(r.get("sio").is_none());
    drop(client);
    drop(upstream);
    let closed = proxy.next_event("tunnel_closed").await;
    assert_eq!(closed["id"], r["id"]);
}
