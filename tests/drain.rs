//! SIGTERM (here: the signal channel): stop accepting, finish in-flight work, close
//! tunnels at the deadline with `closed_by: shutdown`, write `stopped`.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const UPGRADE_REQ: &[u8] = b"GET /socket.io/?EIO=4&transport=websocket&sid=S HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
const SWITCH: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";

#[tokio::test]
async fn in_flight_long_poll_finishes_during_drain() {
    let mut up = RawUpstream::start().await;
    // A deadline far beyond any test: only the work being done can end this drain.
    let mut proxy = Proxy::start(up.addr, |c| c.drain_timeout = Duration::from_secs(600)).await;
    let (mut client, mut conn) = pending_long_poll(proxy.addr, &mut up).await;

    proxy.signal().await;
    let draining = proxy.next_event("draining").await;
    assert_eq!(draining["open_requests"], 1);
    assert_eq!(draining["deadline_s"], 600.0);
    // New connections are no longer accepted.
    assert!(within(TcpStream::connect(proxy.addr)).await.is_err());

    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n6")
        .await
        .unwrap();
    let mut got = Vec::new();
    read_head(&mut client, &mut got).await;
    read_at_least(&mut client, &mut got, 1).await;
    assert_eq!(got, b"6");
    let r = proxy.next_event("request").await;
    assert_eq!(r["outcome"], "complete");
    let started = Instant::now();
    let (summary, rest) = proxy.stop_after_signal().await;
    assert!(summary.drained);
    assert!(
        started.elapsed() < slacken(Duration::from_secs(5)),
        "exits as soon as the work is done"
    );
    assert_eq!(rest.last().unwrap()["event"], "stopped");
    assert_eq!(rest.last().unwrap()["drained"], true);
}

#[tokio::test]
async fn open_tunnel_is_closed_at_the_deadline_by_shutdown() {
    // The deadline has to outlast one round trip through the tunnel after `draining`
    // (the load side, hence the slack); the close must not come before it.
    let deadline = slacken(Duration::from_secs(1));
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |c| c.drain_timeout = deadline).await;
    let mut client = send_raw(proxy.addr, UPGRADE_REQ).await;
    let mut upstream = up.accept().await;
    read_head(&mut upstream, &mut Vec::new()).await;
    upstream.write_all(SWITCH).await.unwrap();
    read_head(&mut client, &mut Vec::new()).await;
    proxy.next_event("upgrade").await;

    // Taken before the signal is sent, so before the proxy starts its deadline.
    let signalled = Instant::now();
    proxy.signal().await;
    let draining = proxy.next_event("draining").await;
    assert_eq!(draining["open_tunnels"], 1);
    // The tunnel keeps working during the drain.
    client.write_all(b"ping").await.unwrap();
    let mut buf = Vec::new();
    read_at_least(&mut upstream, &mut buf, 4).await;
    assert_eq!(buf, b"ping");

    let closed = proxy.next_event("tunnel_closed").await;
    let took = signalled.elapsed();
    assert!(
        took >= deadline,
        "closed {took:?} after the signal, before the deadline"
    );
    assert_eq!(closed["closed_by"], "shutdown");
    assert_eq!(closed["bytes_client_to_upstream"], 4);
    let (summary, rest) = proxy.stop_after_signal().await;
    assert!(!summary.drained);
    assert_eq!(summary.tunnels_closed_by_shutdown, 1);
    let stopped = rest.last().unwrap();
    assert_eq!(stopped["event"], "stopped");
    assert_eq!(stopped["drained"], false);
    assert_eq!(stopped["tunnels_closed_by_shutdown"], 1);
    assert!(
        read_to_end(&mut client).await.is_empty(),
        "the client sees the tunnel close"
    );
}

#[tokio::test]
async fn second_signal_ends_at_once() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |c| c.drain_timeout = Duration::from_secs(600)).await;
    let mut client = send_raw(proxy.addr, UPGRADE_REQ).await;
    let mut upstream = up.accept().await;
    read_head(&mut upstream, &mut Vec::new()).await;
    upstream.write_all(SWITCH).await.unwrap();
    read_head(&mut client, &mut Vec::new()).await;
    proxy.signal().await;
    proxy.next_event("draining").await;
    let (summary, rest) = proxy.stop().await; // the second signal
    assert!(!summary.drained);
    assert!(
        rest.iter()
            .any(|r| r["event"] == "tunnel_closed" && r["closed_by"] == "shutdown")
    );
    assert_eq!(rest.last().unwrap()["event"], "stopped");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_and_nothing_waits_for_them() {
    let engine = engine_upstream().await;
    // A deadline far beyond any test: only the idle connection could hold this drain up.
    let mut proxy = Proxy::start(engine, |c| c.drain_timeout = Duration::from_secs(600)).await;
    let mut client = send_raw(
        proxy.addr,
        b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .await;
    read_head(&mut client, &mut Vec::new()).await;
    proxy.next_event("request").await;
    let started = Instant::now();
    proxy.signal().await;
    let (summary, _) = proxy.stop_after_signal().await;
    assert!(summary.drained);
    assert!(started.elapsed() < slacken(Duration::from_secs(5)));
    let rest = read_to_end(&mut client).await;
    assert!(rest.len() < 200, "connection closed after the drain");
}

#[tokio::test]
async fn long_poll_cut_at_the_deadline_is_shutdown_not_client_aborted() {
    let mut up = RawUpstream::start().await;
    let deadline = Duration::from_millis(200);
    let mut proxy = Proxy::start(up.addr, |c| c.drain_timeout = deadline).await;
    let (mut client, _conn) = pending_long_poll(proxy.addr, &mut up).await;
    let signalled = Instant::now();
    proxy.signal().await;
    let r = proxy.next_event("request").await;
    assert!(signalled.elapsed() >= deadline, "cut before the deadline");
    assert_eq!(r["outcome"], "shutdown", "{r}");
    assert_eq!(r["severity"], "WARNING");
    assert!(
        !r["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "poll_aborted"),
        "{r}"
    );
    let (summary, _) = proxy.stop_after_signal().await;
    assert!(!summary.drained);
    assert!(read_to_end(&mut client).await.is_empty());
}
