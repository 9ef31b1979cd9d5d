//! The upstream connection pool: kept-alive connections are reused across client
//! connections, and a connection the upstream closed is never used again.

mod support;

use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const POLL: &[u8] =
    b"GET /socket.io/?EIO=4&transport=polling&sid=S HTTP/1.1\r\nHost: ide.example.com\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A client on its own connection: sends one polling GET, reads until `until`.
fn client(addr: std::net::SocketAddr, until: &'static [u8]) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut client = send_raw(addr, POLL).await;
        let mut got = Vec::new();
        read_until(&mut client, &mut got, until).await;
        got
    })
}

/// One poll from a new client connection that must arrive on the upstream connection
/// `conn` (already open): the head arrives intact, the client gets the 200.
async fn poll_arrives_on(proxy: &Proxy, conn: &mut TcpStream, buf: &mut Vec<u8>, what: &str) {
    let answer = client(proxy.addr, b"ok");
    assert_eq!(read_head(conn, buf).await, POLL, "{what}");
    conn.write_all(OK).await.unwrap();
    assert!(answer.await.unwrap().starts_with(b"HTTP/1.1 200 OK"));
}

#[tokio::test]
async fn one_upstream_connection_carries_requests_from_several_clients() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let first = client(proxy.addr, b"ok");
    let mut conn = up.accept().await;
    let mut buf = Vec::new();
    assert_eq!(read_head(&mut conn, &mut buf).await, POLL);
    conn.write_all(OK).await.unwrap();
    assert!(first.await.unwrap().starts_with(b"HTTP/1.1 200 OK"));
    assert_eq!(proxy.next_event("request").await["status"], 200);

    // The next request, from another client connection, arrives on the same upstream
    // connection: the pool kept it.
    for round in 0..3 {
        poll_arrives_on(&proxy, &mut conn, &mut buf, &format!("round {round}")).await;
        let r = proxy.next_event("request").await;
        assert_eq!(
            (r["status"].as_u64(), r["outcome"].as_str()),
            (Some(200), Some("complete"))
        );
    }
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_replaced_not_reused() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    for round in 0..3 {
        let answer = client(proxy.addr, b"ok");
        // Each request comes on a fresh upstream connection: the previous one was
        // closed by the upstream right after its answer (keep-alive ended, as Node
        // does after `keepAliveTimeout`).
        let mut conn = up.accept().await;
        assert_eq!(
            read_head(&mut conn, &mut Vec::new()).await,
            POLL,
            "round {round}"
        );
        conn.write_all(OK).await.unwrap();
        drop(conn);
        assert!(
            answer.await.unwrap().starts_with(b"HTTP/1.1 200 OK"),
            "round {round}: answered, never a 502 from a dead pooled connection"
        );
        assert_eq!(proxy.next_event("request").await["status"], 200);
    }
}

#[tokio::test]
async fn connection_close_from_the_upstream_is_honoured() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let answer = client(proxy.addr, b"ok");
    let mut conn = up.accept().await;
    read_head(&mut conn, &mut Vec::new()).await;
    conn.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        .await
        .unwrap();
    assert!(answer.await.unwrap().starts_with(b"HTTP/1.1 200 OK"));
    proxy.next_event("request").await;
    // The upstream said it closes: the next request opens a new connection, while
    // the old one is kept open here (so only the proxy's own choice can explain it).
    let next = client(proxy.addr, b"ok");
    let mut second = up.accept().await;
    assert_eq!(read_head(&mut second, &mut Vec::new()).await, POLL);
    second.write_all(OK).await.unwrap();
    assert!(next.await.unwrap().starts_with(b"HTTP/1.1 200 OK"));
    drop(conn);
}

#[tokio::test]
async fn an_upstream_that_closes_without_answering_is_a_502_with_a_record() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let answer = client(proxy.addr, b"\r\n\r\n");
    let mut conn = up.accept().await;
    read_head(&mut conn, &mut Vec::new()).await;
    drop(conn); // read the request, never answered
    assert!(answer.await.unwrap().starts_with(b"HTTP/1.1 502"));
    let r = proxy.next_event("request").await;
    assert_eq!(r["status"], 502);
    assert!(
        r["upstream_error"]
            .as_str()
            .unwrap()
            .starts_with("no response: "),
        "{r}"
    );
}

#[tokio::test]
async fn a_response_with_trailers_is_complete_and_its_connection_reused() {
    let mut up = RawUpstream::start().await;
    let mut proxy = Proxy::start(up.addr, |_| {}).await;
    let answer = client(proxy.addr, b"\r\n\r\n");
    let mut conn = up.accept().await;
    let mut buf = Vec::new();
    read_head(&mut conn, &mut buf).await;
    conn.write_all(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n2\r\nok\r\n0\r\nX-Checksum: 1\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(answer.await.unwrap().starts_with(b"HTTP/1.1 200 OK"));
    let r = proxy.next_event("request").await;
    assert_eq!(
        (r["outcome"].as_str(), r["bytes_out"].as_u64()),
        (Some("complete"), Some(2)),
        "trailers end the body: {r}"
    );
    poll_arrives_on(&proxy, &mut conn, &mut buf, "same upstream connection").await;
}
