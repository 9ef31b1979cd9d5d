//! The load generators: browser-shaped engine.io traffic over raw HTTP/1.1 and
//! tokio-tungstenite, each returning what it did and how long it took.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Headers a browser behind the GKE load balancer and the pod's nginx would send.
const BROWSER: &str = "Host: ide.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n\
Accept: */*\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Origin: https://ide.example.com\r\n\
Cookie: io=lv_VI97HAXpY6yYWAAAC; _ga=GA1.1.1234567890.1700000000\r\n\
X-Forwarded-For: 203.0.113.7, 10.128.0.12\r\n\
X-Forwarded-Proto: https\r\n";

/// What a request workload did.
#[derive(Debug, Default, Clone)]
pub struct Done {
    /// Completed requests (or handshakes, or round trips, or bytes).
    pub count: u64,
    /// Failed attempts (connect refused, bad status, reset).
    pub errors: u64,
    /// Upgrades that succeeded (each is one tunnel at the proxy).
    pub upgrades: u64,
    /// HTTP requests that reached the proxy and got an answer (records expected).
    pub requests: u64,
    pub elapsed: Duration,
    /// Each completed unit's latency in µs, where the workload measures it (the
    /// new-connection workload: connect, request, whole response).
    pub latencies_us: Vec<f64>,
}

/// What one load loop did: successes, failures, and the latencies it measured.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: u64,
    pub err: u64,
    pub latencies_us: Vec<f64>,
}

fn poll_request(n: u64) -> Vec<u8> {
    format!(
        "GET /socket.io/?EIO=4&transport=polling&t=P{n:x}&sid=lv_VI97HAXpY6yYWAAAC HTTP/1.1\r\n{BROWSER}\r\n"
    )
    .into_bytes()
}

fn upgrade_request() -> Vec<u8> {
    format!(
        "GET /socket.io/?EIO=4&transport=websocket&sid=lv_VI97HAXpY6yYWAAAC HTTP/1.1\r\n{BROWSER}\
Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    )
    .into_bytes()
}

/// Reads one response head (and its Content-Length body) from `s`; returns the status.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    buf.clear();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(std::io::Error::other)?;
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    if status == 101 {
        return Ok(status);
    }
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| std::io::Error::other("no content-length"))?;
    let mut have = buf.len() - head_end;
    while have < len {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
    }
    Ok(status)
}

async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Runs `conns` loops until `dur` is over; each loop reports what it did.
async fn loops<F, Fut>(conns: usize, dur: Duration, one: F) -> Done
where
    F: Fn(Instant) -> Fut,
    Fut: std::future::Future<Output = Tally> + Send + 'static,
{
    let start = Instant::now();
    let deadline = start + dur;
    let tasks: Vec<_> = (0..conns).map(|_| tokio::spawn(one(deadline))).collect();
    let mut done = Done::default();
    for t in tasks {
        let tally = t.await.unwrap_or(Tally {
            err: 1,
            ..Tally::default()
        });
        done.count += tally.ok;
        done.errors += tally.err;
        done.latencies_us.extend(tally.latencies_us);
    }
    done.elapsed = start.elapsed();
    done.requests = done.count;
    done
}

/// Long-poll GETs on `conns` keep-alive connections.
pub async fn polling_keepalive(addr: SocketAddr, conns: usize, dur: Duration) -> Done {
    loops(conns, dur, move |deadline| async move {
        let (mut ok, mut err) = (0, 0);
        let mut buf = Vec::with_capacity(4096);
        let mut s: Option<TcpStream> = None;
        while Instant::now() < deadline {
            let stream = match s.as_mut() {
                Some(st) => st,
                None => match connect(addr).await {
                    Ok(st) => s.insert(st),
                    Err(_) => {
                        err += 1;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                },
            };
            let res = async {
                stream.write_all(&poll_request(ok)).await?;
                read_response(stream, &mut buf).await
            }
            .await;
            match res {
                Ok(200) => ok += 1,
                _ => {
                    err += 1;
                    s = None;
                }
            }
        }
        Tally {
            ok,
            err,
            latencies_us: Vec::new(),
        }
    })
    .await
}

/// One polling GET per new connection, `conns` at a time; each one's latency is from
/// `connect` to the last byte of the response.
pub async fn polling_new_conn(addr: SocketAddr, conns: usize, dur: Duration) -> Done {
    loops(conns, dur, move |deadline| async move {
        let mut t = Tally::default();
        let mut buf = Vec::with_capacity(4096);
        while Instant::now() < deadline {
            let began = Instant::now();
            let res = async {
                let mut s = connect(addr).await?;
                s.write_all(&poll_request(t.ok)).await?;
                read_response(&mut s, &mut buf).await
            }
            .await;
            match res {
                Ok(200) => {
                    t.ok += 1;
                    t.latencies_us
                        .push(began.elapsed().as_nanos() as f64 / 1000.0);
                }
                _ => t.err += 1,
            }
        }
        t
    })
    .await
}

/// Opens a websocket with a raw handshake; the stream is left open.
async fn raw_upgrade(
    addr: SocketAddr,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<TcpStream> {
    let mut s = connect(addr).await?;
    s.write_all(req).await?;
    match read_response(&mut s, buf).await? {
        101 => Ok(s),
        other => Err(std::io::Error::other(format!("status {other}"))),
    }
}

/// Websocket handshakes, each on a new connection that closes right after the 101.
pub async fn handshakes(addr: SocketAddr, conns: usize, dur: Duration) -> Done {
    let mut done = loops(conns, dur, move |deadline| async move {
        let (mut ok, mut err) = (0, 0);
        let req = upgrade_request();
        let mut buf = Vec::with_capacity(4096);
        while Instant::now() < deadline {
            match raw_upgrade(addr, &req, &mut buf).await {
                Ok(_) => ok += 1,
                Err(_) => err += 1,
            }
        }
        Tally {
            ok,
            err,
            latencies_us: Vec::new(),
        }
    })
    .await;
    done.upgrades = done.count;
    done
}

/// Opens `n` websockets (64 handshakes at a time) and returns them open and idle.
pub async fn open_idle(addr: SocketAddr, n: usize) -> (Vec<TcpStream>, u64) {
    let gate = Arc::new(Semaphore::new(64));
    let req: Arc<[u8]> = upgrade_request().into();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let gate = gate.clone();
            let req = req.clone();
            tokio::spawn(async move {
                let _permit = gate.acquire().await.expect("never closed");
                raw_upgrade(addr, &req, &mut Vec::with_capacity(1024)).await
            })
        })
        .collect();
    let mut open = Vec::with_capacity(n);
    let mut errors = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => open.push(s),
            _ => errors += 1,
        }
    }
    (open, errors)
}

async fn ws_connect(
    addr: SocketAddr,
) -> Result<tokio_tungstenite::WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::Error> {
    let mut req =
        format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&sid=lv_VI97HAXpY6yYWAAAC")
            .into_client_request()?;
    for line in BROWSER.lines() {
        let (k, v) = line.split_once(": ").expect("BROWSER lines are headers");
        if !k.eq_ignore_ascii_case("host") {
            req.headers_mut().insert(
                http::HeaderName::from_bytes(k.as_bytes()).expect("valid name"),
                v.parse().expect("valid value"),
            );
        }
    }
    let stream = connect(addr).await?;
    let (ws, _) = tokio_tungstenite::client_async(req, stream).await?;
    Ok(ws)
}

/// Round-trip times of `n` 32-byte messages over one websocket, in microseconds.
pub async fn ws_rtt(addr: SocketAddr, n: usize) -> Result<(Vec<f64>, Duration), String> {
    let mut ws = ws_connect(addr).await.map_err(|e| e.to_string())?;
    let payload = Bytes::from_static(&[b'x'; 32]);
    let mut rtts = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        ws.send(Message::Binary(payload.clone()))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(_))) => break,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("closed".into()),
            }
        }
        rtts.push(t.elapsed().as_nanos() as f64 / 1000.0);
    }
    let elapsed = start.elapsed();
    let _ = ws.close(None).await;
    Ok((rtts, elapsed))
}

/// `conns` websockets each keeping `window` frames of `size` bytes in flight to the echo
/// server for `dur`. Returns (payload bytes echoed back before the deadline, all bytes
/// echoed, errors).
pub async fn ws_throughput(
    addr: SocketAddr,
    conns: usize,
    size: usize,
    window: usize,
    dur: Duration,
) -> Result<(u64, u64, Duration), String> {
    let payload = Bytes::from(vec![0xa5u8; size]);
    let in_time = Arc::new(AtomicU64::new(0));
    let total = Arc::new(AtomicU64::new(0));
    let mut sockets = Vec::with_capacity(conns);
    for _ in 0..conns {
        sockets.push(ws_connect(addr).await.map_err(|e| e.to_string())?);
    }
    let start = Instant::now();
    let deadline = start + dur;
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|ws| {
            let (mut tx, mut rx) = ws.split();
            let credit = Arc::new(Semaphore::new(window));
            let sent = Arc::new(AtomicU64::new(0));
            let writer = {
                let credit = credit.clone();
                let payload = payload.clone();
                let sent = sent.clone();
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        credit.acquire().await.expect("never closed").forget();
                        if tx.send(Message::Binary(payload.clone())).await.is_err() {
                            break;
                        }
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    tx
                })
            };
            let (in_time, total) = (in_time.clone(), total.clone());
            tokio::spawn(async move {
                let mut received = 0u64;
                loop {
                    if writer.is_finished() && received >= sent.load(Ordering::Relaxed) {
                        break;
                    }
                    let next = tokio::time::timeout(Duration::from_millis(50), rx.next()).await;
                    match next {
                        Ok(Some(Ok(Message::Binary(b)))) => {
                            received += 1;
                            credit.add_permits(1);
                            total.fetch_add(b.len() as u64, Ordering::Relaxed);
                            if Instant::now() < deadline {
                                in_time.fetch_add(b.len() as u64, Ordering::Relaxed);
                            }
                        }
                        Ok(Some(Ok(_))) | Err(_) => {}
                        Ok(Some(Err(_)) | None) => break,
                    }
                }
                if let Ok(tx) = writer.await
                    && let Ok(mut ws) = tx.reunite(rx)
                {
                    let _ = ws.close(None).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    Ok((
        in_time.load(Ordering::Relaxed),
        total.load(Ordering::Relaxed),
        start.elapsed(),
    ))
}
