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

/// An engine.io POST (a message from the client), as nginx passes it on.
const POST_HEAD: &[u8] = b"POST /socket.io/?EIO=4&transport=polling&sid=S HTTP/1.1\r\nHost: ide.example.com\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: 11\r\n\r\n";
const POST_BODY: &[u8] = b"42[\"msg\",1]";

/// What the upstream does with the idle pooled connection the POST reuses.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pooled {
    /// Nothing: it answers the POST on it.
    Answers,
    /// Closes it just before the POST arrives at sockproxy.
    ClosesBefore,
    /// Closes it in the same instant the POST arrives at sockproxy.
    ClosesWith,
    /// Reads the POST on it, then closes it without an answer.
    ClosesAfterReading,
}

/// engine.io answers a POST that overlaps another with 400 and closes the session, so a
/// POST must reach theia exactly once: sent again only when it never left sockproxy
/// (the pooled connection was found closed first), never once theia may have read it.
/// Each case counts the copies theia got on every connection sockproxy opened.
#[tokio::test]
async fn a_post_reaches_the_upstream_exactly_once_whatever_its_pooled_connection_does() {
    use Pooled::*;
    let mut sent = POST_HEAD.to_vec();
    sent.extend_from_slice(POST_BODY);
    for pooled in [Answers, ClosesBefore, ClosesWith, ClosesAfterReading] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut proxy = Proxy::start(listener.local_addr().unwrap(), |_| {}).await;

        // A first exchange leaves an idle connection in the pool.
        let first = client(proxy.addr, b"ok");
        let mut idle = within(listener.accept()).await.unwrap().0;
        assert_eq!(read_head(&mut idle, &mut Vec::new()).await, POLL);
        idle.write_all(OK).await.unwrap();
        assert!(first.await.unwrap().starts_with(b"HTTP/1.1 200 OK"));
        proxy.next_event("request").await; // written once the connection is back

        let mut post = TcpStream::connect(proxy.addr).await.unwrap();
        let mut idle = Some(idle);
        // No await between the close and the write (one thread runs the test and the
        // proxy): sockproxy finds both the end of the pooled connection and the POST.
        if pooled == ClosesBefore {
            drop(idle.take());
        }
        within(post.write_all(&sent)).await.unwrap();
        if pooled == ClosesWith {
            drop(idle.take());
        }

        // The connection that carries the POST: the pooled one while it is open, else
        // a new one.
        let mut carrier = match idle.take() {
            Some(c) => c,
            None => {
                within(async {
                    tokio::select! {
                        r = listener.accept() => r.unwrap().0,
                        answer = status_line(&mut post) => panic!(
                            "{pooled:?}: answered {answer:?} and never sent on a new connection"
                        ),
                    }
                })
                .await
            }
        };
        let mut body = Vec::new();
        let mut got = read_head(&mut carrier, &mut body).await;
        read_at_least(&mut carrier, &mut body, POST_BODY.len()).await;
        got.extend_from_slice(&body);
        assert_eq!(got, sent, "{pooled:?}: the POST, once");

        let status = if pooled == ClosesAfterReading {
            drop(carrier); // theia may have acted on it: sockproxy must not send it again
            502
        } else {
            carrier
                .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
                .await
                .unwrap();
            // Closed by sockproxy after the answer (`Connection: close`): anything
            // after the POST on this connection would show here.
            assert_eq!(read_to_end(&mut carrier).await, b"", "{pooled:?}");
            200
        };
        let answer = status_line(&mut post).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{pooled:?}: {answer}"
        );
        assert_eq!(proxy.next_event("request").await["status"], status);

        // The answer went out, so sockproxy is done with the POST: no other connection
        // was opened for it (a connect completes at once on loopback, so it would be
        // waiting here).
        let listener = listener.into_std().unwrap();
        listener.set_nonblocking(true).unwrap();
        let more = listener.accept().map(|(_, peer)| peer);
        assert!(
            more.as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
            "{pooled:?}: another upstream connection: {more:?}"
        );
    }
}

/// The status line of the answer on `s`.
async fn status_line(s: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    read_until(s, &mut answer, b"\r\n").await;
    String::from_utf8_lossy(&answer).into_owned()
}
