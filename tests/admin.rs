//! The admin listener: /healthz, /readyz (503 while draining), /metrics parsed by a real
//! Prometheus text parser.

mod support;

use futures_util::{SinkExt, StreamExt};
use support::*;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn health_and_readiness() {
    let engine = engine_upstream().await;
    let proxy = Proxy::start(engine, |_| {}).await;
    assert_eq!(get(proxy.admin, "GET", "/healthz").await.0, 200);
    assert_eq!(get(proxy.admin, "GET", "/readyz").await.0, 200);
    assert_eq!(
        get(proxy.admin, "GET", "/socket.io/?EIO=4&transport=polling")
            .await
            .0,
        404,
        "never proxied"
    );
    assert_eq!(get(proxy.admin, "POST", "/healthz").await.0, 405);
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let engine = engine_upstream().await;
    let mut proxy = Proxy::start(engine, |_| {}).await;
    let before = scrape(proxy.admin).await;
    assert_eq!(
        before.get("sockproxy_upgrades_attempted_total{}"),
        Some(&0.0)
    );

    // A polling handshake, a refused upgrade (stale sid) and a websocket tunnel.
    let mut c = send_raw(
        proxy.addr,
        b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    read_to_end(&mut c).await;
    let mut c = send_raw(proxy.addr, b"GET /socket.io/?EIO=4&transport=websocket&sid=stale HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await;
    read_to_end(&mut c).await;
    let (mut ws, _) = ws_connect(proxy.addr, "/socket.io/?EIO=4&transport=websocket").await;
    let open_packet = within(ws.next()).await.unwrap().unwrap();
    within(ws.send(Message::text("2probe"))).await.unwrap();
    within(ws.next()).await.unwrap().unwrap();
    proxy.next_event("upgrade").await;
    // Frames on the wire (RFC 6455 §5.2): 2 header bytes below 126 bytes of payload, plus
    // a 4-byte mask from the client.
    let frame = |payload: usize, masked: bool| (2 + payload + if masked { 4 } else { 0 }) as f64;
    assert!(open_packet.len() < 126, "{open_packet}");
    let open = scrape(proxy.admin).await;
    assert_eq!(open["sockproxy_tunnels_open{}"], 1.0);
    assert_eq!(
        open["sockproxy_tunnel_bytes_total{direction=client_to_upstream}"],
        frame(6, true),
        "counted while flowing: 2probe"
    );
    assert_eq!(
        open["sockproxy_tunnel_bytes_total{direction=upstream_to_client}"],
        frame(open_packet.len(), false) + frame(6, false),
        "the open packet and 3probe"
    );
    within(ws.close(None)).await.unwrap();
    ws_until_end(&mut ws).await;
    drop(ws);
    proxy.next_event("tunnel_closed").await;

    let m = scrape(proxy.admin).await;
    assert_eq!(
        m["sockproxy_exchanges_total{class=2xx,transport=polling}"],
        1.0
    );
    assert_eq!(
        m["sockproxy_exchanges_total{class=4xx,transport=websocket}"],
        1.0
    );
    assert_eq!(m["sockproxy_upgrades_attempted_total{}"], 2.0);
    assert_eq!(m["sockproxy_upgrades_succeeded_total{}"], 1.0);
    assert_eq!(m["sockproxy_upgrades_refused_total{}"], 1.0);
    assert_eq!(m["sockproxy_tunnels_open{}"], 0.0);
    assert_eq!(m["sockproxy_flags_total{name=sid_unknown}"], 1.0);
    assert_eq!(m["sockproxy_flags_total{name=sid_not_issued_here}"], 1.0);
    // And the two empty close frames.
    assert_eq!(
        m["sockproxy_tunnel_bytes_total{direction=client_to_upstream}"],
        frame(6, true) + frame(0, true)
    );
    assert_eq!(
        m["sockproxy_tunnel_bytes_total{direction=upstream_to_client}"],
        frame(open_packet.len(), false) + frame(6, false) + frame(0, false)
    );
    assert_eq!(
        m["sockproxy_tunnel_lifetime_seconds{}"], 1.0,
        "one tunnel observed"
    );
    assert_eq!(m["sockproxy_records_not_written_total{}"], 0.0);
    let closed: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("sockproxy_tunnels_closed_total"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(closed, 1.0);
}

#[tokio::test]
async fn upstream_errors_are_counted() {
    let mut proxy = Proxy::start(closed_port().await, |_| {}).await;
    let mut c = send_raw(
        proxy.addr,
        b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    read_to_end(&mut c).await;
    proxy.next_event("request").await;
    let m = scrape(proxy.admin).await;
    assert_eq!(
        m["sockproxy_upstream_errors_total{kind=connect_failed}"],
        1.0
    );
    assert_eq!(
        m["sockproxy_exchanges_total{class=5xx,transport=none}"],
        1.0
    );
    assert_eq!(m["sockproxy_flags_total{name=upstream_unreachable}"], 1.0);
}

#[tokio::test]
async fn readyz_turns_503_at_once_when_draining() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |c| {
        c.drain_timeout = std::time::Duration::from_secs(60)
    })
    .await;
    // An open long-poll keeps the drain going while we look.
    let (_client, conn) = pending_long_poll(proxy.addr, &mut up).await;
    proxy.signal().await;
    proxy.next_event("draining").await;
    assert_eq!(get(proxy.admin, "GET", "/readyz").await.0, 503);
    assert_eq!(get(proxy.admin, "GET", "/healthz").await.0, 200);
    let m = scrape(proxy.admin).await;
    assert_eq!(m["sockproxy_draining{}"], 1.0);
    assert_eq!(m["sockproxy_requests_in_flight{}"], 1.0);
    drop(conn); // the upstream gives up; the exchange ends and the drain completes
    let (summary, _) = proxy.stop_after_signal().await;
    assert!(summary.drained);
}
