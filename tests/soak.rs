//! Soak: mixed traffic through the built binary, an upstream restart, then the books.
//!
//! Polling GETs and POST echoes on keep-alive connections, websocket tunnels echoing
//! random messages (closed by the client, by the upstream, or cut by the client),
//! clients that go away mid-request and mid-response, and the upstream restarting on
//! the same port half way. Afterwards: every payload byte came back intact, every
//! exchange has exactly one `request`/`upgrade` record and every tunnel exactly one
//! `tunnel_closed` with the right `closed_by`, and the proxy's RSS is back near its
//! warm baseline.
//!
//! Short form (default, a few seconds): `cargo test --test soak`.
//! Long form: `SOAK=long cargo test --release --test soak -- --nocapture`.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use support::{hash, noise, parse_line, within};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// How much traffic. `polls` and `tunnels` are split between the two halves around the
/// upstream restart; the warm-up adds a twentieth on top.
#[derive(Debug, Clone, Copy)]
struct Plan {
    long: bool,
    polls: usize,
    tunnels: usize,
    poll_workers: usize,
    tunnel_workers: usize,
    max_body: usize,
    msgs: usize,
    max_msg: usize,
    /// Tunnels held open across the restart (closed by the upstream going away).
    victims: usize,
    /// Requests sent while the upstream is down (each must get sockproxy's 502).
    down_requests: usize,
    /// Allowed RSS growth over the warm baseline after everything closed.
    rss_slack_kib: u64,
}

/// Allowed RSS growth over the warm baseline, either plan. Measured growth on the 2-core VM:
/// +1.0 to +2.1 MiB in 20 short (debug) runs, +0.4 to +1.9 MiB in 3 long (release) runs, so
/// 3 MiB passes a proxy that does not leak, while 2 KiB kept per exchange (+4 MiB in the
/// short run, which the former 8 MiB allowance let through) or 32 bytes in the long run
/// (105k exchanges) fail.
const RSS_SLACK_KIB: u64 = 3 * 1024;

impl Plan {
    fn from_env() -> Plan {
        // Reading (not setting) the environment is fine in a test.
        match std::env::var("SOAK").as_deref() {
            Ok("long") => Plan {
                long: true,
                polls: 100_000,
                tunnels: 2_000,
                poll_workers: 16,
                tunnel_workers: 8,
                max_body: 16 * 1024,
                msgs: 20,
                max_msg: 32 * 1024,
                victims: 50,
                down_requests: 50,
                rss_slack_kib: RSS_SLACK_KIB,
            },
            _ => Plan {
                long: false,
                polls: 2_000,
                tunnels: 100,
                poll_workers: 8,
                tunnel_workers: 4,
                max_body: 4 * 1024,
                msgs: 8,
                max_msg: 8 * 1024,
                victims: 10,
                down_requests: 10,
                rss_slack_kib: RSS_SLACK_KIB,
            },
        }
    }

    /// The same mix at a twentieth of the size, to warm the proxy up before the baseline.
    fn warm_up(self) -> Plan {
        Plan {
            polls: (self.polls / 20).max(self.poll_workers * 4),
            tunnels: (self.tunnels / 20).max(self.tunnel_workers * 2),
            ..self
        }
    }

    /// One of the two halves around the restart.
    fn half(self) -> Plan {
        Plan {
            polls: self.polls / 2,
            tunnels: self.tunnels / 2,
            ..self
        }
    }
}

// ---- the upstream: echoes, and can be killed and re-bound on the same port ---------------

type UpBody = BoxBody<Bytes, Infallible>;

/// Tells the test when the upstream has the head of a request it is about to abandon.
type Arrivals = Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>;

struct Upstream {
    addr: SocketAddr,
    arrivals: Arrivals,
    kill: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl Upstream {
    /// Binds `addr` (port 0 the first time, the same port after a restart) and serves.
    fn start(addr: SocketAddr, arrivals: Arrivals) -> Upstream {
        let socket = TcpSocket::new_v4().unwrap();
        // The old incarnation's connections may linger in TIME_WAIT on this port.
        socket.set_reuseaddr(true).unwrap();
        socket.bind(addr).unwrap();
        let listener = socket.listen(1024).unwrap();
        let addr = listener.local_addr().unwrap();
        let (kill, _) = watch::channel(false);
        let accept = {
            let kill = kill.clone();
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                let mut stop = kill.subscribe();
                loop {
                    let stream = tokio::select! {
                        r = listener.accept() => match r {
                            Ok((s, _)) => s,
                            Err(_) => continue,
                        },
                        _ = stop.wait_for(|k| *k) => return, // drops the listener
                    };
                    let kill = kill.clone();
                    let arrivals = arrivals.clone();
                    tokio::spawn(async move {
                        let mut stop = kill.subscribe();
                        let svc =
                            service_fn(move |req| handle(req, arrivals.clone(), kill.clone()));
                        let conn = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .with_upgrades();
                        tokio::select! {
                            _ = conn => {}
                            _ = stop.wait_for(|k| *k) => {}
                        }
                    });
                }
            })
        };
        Upstream {
            addr,
            arrivals,
            kill,
            accept,
        }
    }

    /// Closes the listener and every connection and tunnel, as a crashed process would.
    async fn stop(self) -> (SocketAddr, Arrivals) {
        self.kill.send_replace(true);
        within(self.accept).await.unwrap();
        (self.addr, self.arrivals)
    }
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|p| p.strip_prefix(key)?.strip_prefix('='))
}

/// The GET answer for `t`, `len` bytes long; the client computes the same bytes.
fn get_payload(t: &str, len: usize) -> Vec<u8> {
    noise(hash(t.as_bytes()), len)
}

async fn handle(
    mut req: Request<Incoming>,
    arrivals: Arrivals,
    kill: watch::Sender<bool>,
) -> Result<Response<UpBody>, Infallible> {
    let query = req.uri().query().unwrap_or("").to_string();
    let t = query_param(&query, "t").unwrap_or("").to_string();
    if let Some(arrived) = arrivals.lock().unwrap().remove(&t) {
        let _ = arrived.send(());
    }
    if req.headers().contains_key(header::UPGRADE) {
        let key = req.headers()[header::SEC_WEBSOCKET_KEY].as_bytes().to_vec();
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let mut stop = kill.subscribe();
            if let Ok(up) = on_upgrade.await {
                tokio::select! {
                    _ = echo_ws(up) => {}
                    _ = stop.wait_for(|k| *k) => {}
                }
            }
        });
        let mut resp = Response::new(Full::new(Bytes::new()).boxed());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert(header::CONNECTION, "Upgrade".parse().unwrap());
        h.insert(
            header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(&key).parse().unwrap(),
        );
        return Ok(resp);
    }
    if t.starts_with("abort-resp") {
        // Never ends: only the client going away stops it.
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let body = futures_util::stream::repeat_with(move || {
            Ok::<_, Infallible>(Frame::data(chunk.clone()))
        });
        return Ok(Response::new(BodyExt::boxed(StreamBody::new(body))));
    }
    let body = if req.method() == http::Method::POST {
        match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(), // the client went away mid-request
        }
    } else {
        let len = query_param(&query, "len").and_then(|l| l.parse().ok());
        Bytes::from(get_payload(&t, len.unwrap_or(0)))
    };
    Ok(Response::new(Full::new(body).boxed()))
}

/// Echoes every data message; on the text message `bye` it closes the tunnel itself.
async fn echo_ws(up: hyper::upgrade::Upgraded) -> Result<(), WsError> {
    let mut ws =
        tokio_tungstenite::WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, None)
            .await;
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Text(t) if t.as_str() == "bye" => {
                // Returning drops the connection: the upstream ends the tunnel.
                return ws.send(Message::Close(None)).await;
            }
            m @ (Message::Binary(_) | Message::Text(_)) => ws.send(m).await?,
            _ => {}
        }
    }
    Ok(())
}

// ---- the proxy: the built binary, its records read off stdout ------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_sockproxy");

struct Proxy {
    child: Child,
    addr: SocketAddr,
    records: mpsc::UnboundedReceiver<Result<Value, String>>,
    books: Books,
}

/// What the records say, by the `t` each exchange carried and by tunnel id.
#[derive(Default)]
struct Books {
    /// `t` → (event, status, outcome, bytes_in, bytes_out, id) of each request/upgrade record.
    exchanges: HashMap<String, Vec<ExchangeRec>>,
    /// id → closed_by and byte counts of each tunnel_closed record.
    tunnels: HashMap<String, Vec<TunnelRec>>,
    requests: u64,
    upgrades: u64,
    closed: u64,
    other: Vec<Value>,
}

#[derive(Debug, Clone)]
struct ExchangeRec {
    event: String,
    status: u64,
    outcome: String,
    bytes_in: u64,
    bytes_out: u64,
    id: String,
}

#[derive(Debug, Clone)]
struct TunnelRec {
    closed_by: String,
    c2u: u64,
    u2c: u64,
}

impl Books {
    fn add(&mut self, r: Value) {
        let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
        let n = |k: &str| r[k].as_u64().unwrap_or(u64::MAX);
        match r["event"].as_str() {
            Some(event @ ("request" | "upgrade")) => {
                if event == "request" {
                    self.requests += 1;
                } else {
                    self.upgrades += 1;
                }
                let t = r["sio"]["t"].as_str().unwrap_or("").to_string();
                self.exchanges.entry(t).or_default().push(ExchangeRec {
                    event: event.to_string(),
                    status: n("status"),
                    outcome: s("outcome"),
                    bytes_in: n("bytes_in"),
                    bytes_out: n("bytes_out"),
                    id: s("id"),
                });
            }
            Some("tunnel_closed") => {
                self.closed += 1;
                self.tunnels.entry(s("id")).or_default().push(TunnelRec {
                    closed_by: s("closed_by"),
                    c2u: n("bytes_client_to_upstream"),
                    u2c: n("bytes_upstream_to_client"),
                });
            }
            _ => self.other.push(r),
        }
    }

    /// The one exchange record for `t`; fails unless there is exactly one.
    fn exchange(&self, t: &str) -> &ExchangeRec {
        let recs = self.exchanges.get(t).map(Vec::as_slice).unwrap_or(&[]);
        assert_eq!(recs.len(), 1, "records for exchange {t}: {recs:?}");
        &recs[0]
    }

    /// The one tunnel_closed record of the tunnel opened by `t`.
    fn tunnel(&self, t: &str) -> &TunnelRec {
        let up = self.exchange(t);
        assert_eq!((up.event.as_str(), up.status), ("upgrade", 101), "{t}");
        let recs = self.tunnels.get(&up.id).map(Vec::as_slice).unwrap_or(&[]);
        assert_eq!(recs.len(), 1, "tunnel_closed records for {t}: {recs:?}");
        &recs[0]
    }
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let mut cmd = Command::new(BIN);
        cmd.args(["--listen", "127.0.0.1:0", "--admin", "off", "--upstream"])
            .arg(format!("http://{upstream}"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, _) in std::env::vars() {
            if k.starts_with("SOCKPROXY_") || k == "GOOGLE_CLOUD_PROJECT" {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (tx, mut records) = mpsc::unbounded_channel();
        // Drains stdout continuously so the proxy's record queue never fills.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let parsed = std::panic::catch_unwind(|| parse_line(&format!("{line}\n")))
                    .map_err(|_| format!("not one JSON record: {line}"));
                if tx.send(parsed).is_err() {
                    break;
                }
            }
        });
        let listening = within(records.recv()).await.unwrap().unwrap();
        assert_eq!(listening["event"], "listening");
        let addr = listening["listen"].as_str().unwrap().parse().unwrap();
        Proxy {
            child,
            addr,
            records,
            books: Books::default(),
        }
    }

    /// Takes records in until the books hold `exchanges` request/upgrade records and
    /// `tunnels` tunnel_closed records (waits on records, never on time).
    async fn settle(&mut self, exchanges: u64, tunnels: u64) {
        while self.books.requests + self.books.upgrades < exchanges || self.books.closed < tunnels {
            let r = within(self.records.recv()).await.expect("stdout ended");
            self.books.add(r.unwrap_or_else(|e| panic!("{e}")));
        }
    }

    /// Resident memory now, in KiB.
    fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Peak resident memory so far, in KiB.
    fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, key: &str) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} in /proc/PID/status"))
    }

    /// SIGTERM; takes the rest of the records until stdout ends; checks the exit.
    async fn stop(mut self) -> Books {
        let pid = self.child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(ok.success());
        while let Some(r) = within(self.records.recv()).await {
            self.books.add(r.unwrap_or_else(|e| panic!("{e}")));
        }
        let status = within(self.child.wait()).await.unwrap();
        assert_eq!(status.code(), Some(0));
        self.books
    }
}

// ---- traffic ------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Job {
    Get { t: String, len: usize },
    Post { t: String, body: u64, len: usize },
    AbortRequest { t: String },
    AbortResponse { t: String },
    Tunnel { t: String, seed: u64, end: End },
}

/// How a tunnel ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client closes its TCP connection after every echo came back.
    Client,
    /// The client asks the upstream to close (`bye`) and waits for the end.
    Upstream,
    /// The client disappears with echoes still unread.
    ClientAbort,
}

/// Deterministic job lists (xorshift), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn step(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.step() % n as u64) as usize
    }
}

fn jobs(plan: &Plan, phase: &str, rng: &mut Rng) -> (Vec<Job>, Vec<Job>) {
    let polls = (0..plan.polls)
        .map(|i| {
            let t = format!("{phase}-p{i}");
            match rng.below(100) {
                0 => Job::AbortRequest {
                    t: format!("abort-req-{t}"),
                },
                1 => Job::AbortResponse {
                    t: format!("abort-resp-{t}"),
                },
                2..=50 => Job::Get {
                    t,
                    len: rng.below(plan.max_body + 1),
                },
                _ => Job::Post {
                    t,
                    body: rng.step(),
                    len: rng.below(plan.max_body + 1),
                },
            }
        })
        .collect();
    let tunnels = (0..plan.tunnels)
        .map(|i| Job::Tunnel {
            t: format!("{phase}-w{i}"),
            seed: rng.step(),
            end: match rng.below(100) {
                0..=59 => End::Client,
                60..=84 => End::Upstream,
                _ => End::ClientAbort,
            },
        })
        .collect();
    (polls, tunnels)
}

/// Shared by the workers: what was verified.
#[derive(Default)]
struct Tally {
    bytes_verified: AtomicU64,
    polls_ok: AtomicU64,
    tunnels_ok: AtomicU64,
}

fn sio_target(t: &str, transport: &str, extra: &str) -> String {
    format!("/socket.io/?EIO=4&transport={transport}&sid=soak&t={t}{extra}")
}

/// A keep-alive HTTP/1.1 connection to the proxy.
async fn connect(proxy: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = within(TcpStream::connect(proxy)).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn run_poll(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    proxy: SocketAddr,
    job: &Job,
    arrivals: &Arrivals,
    tally: &Tally,
) {
    match job {
        Job::Get { t, len } => {
            let req = Request::get(sio_target(t, "polling", &format!("&len={len}")))
                .header(header::HOST, "soak.example")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = within(send.send_request(req)).await.unwrap();
            assert_eq!(resp.status(), 200, "{t}");
            let got = within(resp.into_body().collect()).await.unwrap().to_bytes();
            assert_eq!(hash(&got), hash(&get_payload(t, *len)), "{t}");
            tally
                .bytes_verified
                .fetch_add(*len as u64, Ordering::Relaxed);
        }
        Job::Post { t, body, len } => {
            let data = Bytes::from(noise(*body, *len));
            let req = Request::post(sio_target(t, "polling", ""))
                .header(header::HOST, "soak.example")
                .body(Full::new(data.clone()))
                .unwrap();
            let resp = within(send.send_request(req)).await.unwrap();
            assert_eq!(resp.status(), 200, "{t}");
            let got = within(resp.into_body().collect()).await.unwrap().to_bytes();
            assert!(got == data, "{t}: echo differs");
            tally
                .bytes_verified
                .fetch_add(2 * *len as u64, Ordering::Relaxed);
        }
        Job::AbortRequest { t } => {
            // Head and part of a body, then gone once the upstream has the request.
            let (arrived_tx, arrived) = oneshot::channel();
            arrivals.lock().unwrap().insert(t.clone(), arrived_tx);
            let mut s = within(TcpStream::connect(proxy)).await.unwrap();
            let head = format!(
                "POST {} HTTP/1.1\r\nHost: soak.example\r\nContent-Length: 100000\r\n\r\n",
                sio_target(t, "polling", "")
            );
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(&[b'a'; 1000]).await.unwrap();
            within(arrived).await.unwrap();
            drop(s);
        }
        Job::AbortResponse { t } => {
            // Reads part of an endless answer, then goes away.
            let mut s = within(TcpStream::connect(proxy)).await.unwrap();
            let head = format!(
                "GET {} HTTP/1.1\r\nHost: soak.example\r\n\r\n",
                sio_target(t, "polling", "")
            );
            s.write_all(head.as_bytes()).await.unwrap();
            let mut got = 0;
            let mut buf = vec![0u8; 64 * 1024];
            while got < 256 * 1024 {
                let n = within(s.read(&mut buf)).await.unwrap();
                assert!(n > 0, "{t}: the answer ended");
                got += n;
            }
            drop(s);
        }
        Job::Tunnel { .. } => unreachable!("tunnels run on their own workers"),
    }
    if matches!(job, Job::Get { .. } | Job::Post { .. }) {
        tally.polls_ok.fetch_add(1, Ordering::Relaxed);
    }
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn open_ws(proxy: SocketAddr, t: &str) -> Ws {
    let stream = within(TcpStream::connect(proxy)).await.unwrap();
    let url = format!("ws://{proxy}{}", sio_target(t, "websocket", ""));
    let (ws, resp) = within(tokio_tungstenite::client_async(url, stream))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

/// Sends one message and checks its echo; returns the payload size.
async fn echo_one(ws: &mut Ws, payload: Vec<u8>, t: &str) -> u64 {
    let want = hash(&payload);
    let len = payload.len() as u64;
    within(ws.send(Message::binary(payload))).await.unwrap();
    match within(ws.next()).await {
        Some(Ok(Message::Binary(got))) => assert_eq!(hash(&got), want, "{t}: echo differs"),
        other => panic!("{t}: expected the echo, got {other:?}"),
    }
    len
}

/// Runs one tunnel; returns the payload bytes it sent (all echoed back, unless cut).
async fn run_tunnel(proxy: SocketAddr, job: &Job, plan: &Plan, tally: &Tally) -> u64 {
    let Job::Tunnel { t, seed, end } = job else {
        unreachable!()
    };
    let mut rng = Rng(*seed | 1);
    let mut ws = open_ws(proxy, t).await;
    let mut sent = 0;
    match end {
        End::Client | End::Upstream => {
            for i in 0..plan.msgs {
                let len = rng.below(plan.max_msg + 1);
                sent += echo_one(&mut ws, noise(*seed ^ i as u64, len), t).await;
            }
            tally.bytes_verified.fetch_add(2 * sent, Ordering::Relaxed);
            if *end == End::Upstream {
                within(ws.send(Message::text("bye"))).await.unwrap();
                // The upstream's Close, then the end of the stream.
                while let Some(Ok(_)) = within(ws.next()).await {}
            }
            drop(ws); // End::Client: the client's end-of-stream comes first
            tally.tunnels_ok.fetch_add(1, Ordering::Relaxed);
        }
        End::ClientAbort => {
            // A few messages out, none of the echoes read, then gone.
            for i in 0..3 {
                let len = 1 + rng.below(plan.max_msg);
                sent += len as u64;
                within(ws.send(Message::binary(noise(*seed ^ i, len))))
                    .await
                    .unwrap();
            }
            drop(ws);
        }
    }
    sent
}

/// Runs the polling and tunnel jobs concurrently on their workers.
async fn run_phase(
    proxy: SocketAddr,
    plan: &Plan,
    polls: Vec<Job>,
    tunnels: Vec<Job>,
    arrivals: &Arrivals,
    tally: &Arc<Tally>,
) {
    let polls = Arc::new(Mutex::new(polls));
    let tunnels = Arc::new(Mutex::new(tunnels));
    let mut workers = Vec::new();
    for _ in 0..plan.poll_workers {
        let (polls, arrivals, tally) = (polls.clone(), arrivals.clone(), tally.clone());
        workers.push(tokio::spawn(async move {
            let mut send = connect(proxy).await;
            loop {
                let Some(job) = polls.lock().unwrap().pop() else {
                    break;
                };
                run_poll(&mut send, proxy, &job, &arrivals, &tally).await;
            }
        }));
    }
    for _ in 0..plan.tunnel_workers {
        let (tunnels, tally, plan) = (tunnels.clone(), tally.clone(), *plan);
        workers.push(tokio::spawn(async move {
            loop {
                let Some(job) = tunnels.lock().unwrap().pop() else {
                    break;
                };
                run_tunnel(proxy, &job, &plan, &tally).await;
            }
        }));
    }
    for w in workers {
        w.await.unwrap(); // each step inside is bounded by `within`
    }
}

/// Checks the books against the jobs of one phase.
fn audit(books: &Books, polls: &[Job], tunnels: &[Job]) {
    for job in polls {
        match job {
            Job::Get { t, len } => {
                let r = books.exchange(t);
                assert_eq!((r.status, r.outcome.as_str()), (200, "complete"), "{t}");
                assert_eq!((r.bytes_in, r.bytes_out), (0, *len as u64), "{t}");
            }
            Job::Post { t, len, .. } => {
                let r = books.exchange(t);
                assert_eq!((r.status, r.outcome.as_str()), (200, "complete"), "{t}");
                assert_eq!((r.bytes_in, r.bytes_out), (*len as u64, *len as u64), "{t}");
            }
            Job::AbortRequest { t } | Job::AbortResponse { t } => {
                let r = books.exchange(t);
                assert_eq!(r.outcome, "client_aborted", "{t}: {r:?}");
            }
            Job::Tunnel { .. } => unreachable!(),
        }
    }
    for job in tunnels {
        let Job::Tunnel { t, end, .. } = job else {
            unreachable!()
        };
        let r = books.tunnel(t);
        let want = match end {
            End::Client | End::ClientAbort => "client",
            End::Upstream => "upstream",
        };
        assert_eq!(r.closed_by, want, "{t}: {end:?} {r:?}");
    }
}

fn exchanges_in(polls: &[Job], tunnels: &[Job]) -> u64 {
    (polls.len() + tunnels.len()) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak() {
    let plan = Plan::from_env();
    let started = Instant::now();
    let arrivals: Arrivals = Arc::default();
    let upstream = Upstream::start("127.0.0.1:0".parse().unwrap(), arrivals.clone());
    let mut proxy = Proxy::start(upstream.addr).await;
    let tally = Arc::new(Tally::default());
    let mut rng = Rng(0x5eed_50a6);
    let (mut exchanges, mut tunnels_expected) = (0u64, 0u64);

    // Warm up with the same mix, then take the baseline once everything has closed.
    let (warm_polls, warm_tunnels) = jobs(&plan.warm_up(), "warm", &mut rng);
    run_phase(
        proxy.addr,
        &plan,
        warm_polls.clone(),
        warm_tunnels.clone(),
        &arrivals,
        &tally,
    )
    .await;
    exchanges += exchanges_in(&warm_polls, &warm_tunnels);
    tunnels_expected += warm_tunnels.len() as u64;
    proxy.settle(exchanges, tunnels_expected).await;
    let rss_warm = proxy.rss_kib();

    // First half.
    let (polls_a, tunnels_a) = jobs(&plan.half(), "a", &mut rng);
    run_phase(
        proxy.addr,
        &plan,
        polls_a.clone(),
        tunnels_a.clone(),
        &arrivals,
        &tally,
    )
    .await;
    exchanges += exchanges_in(&polls_a, &tunnels_a);
    tunnels_expected += tunnels_a.len() as u64;

    // The upstream restarts under open tunnels; requests meanwhile get sockproxy's 502.
    let mut victims = Vec::new();
    for i in 0..plan.victims {
        let t = format!("victim-{i}");
        let mut ws = open_ws(proxy.addr, &t).await;
        echo_one(&mut ws, noise(i as u64, 100), &t).await;
        victims.push((t, ws));
    }
    let (addr, arrivals) = upstream.stop().await;
    for (t, ws) in &mut victims {
        // Dropped by the upstream: the stream ends (maybe with an error), nothing else.
        match within(ws.next()).await {
            None | Some(Err(_)) => {}
            Some(Ok(m)) => panic!("{t}: unexpected {m:?}"),
        }
    }
    drop(victims);
    let mut down = Vec::new();
    for i in 0..plan.down_requests {
        let mut send = connect(proxy.addr).await;
        let t = format!("down-{i}");
        let req = Request::get(sio_target(&t, "polling", ""))
            .header(header::HOST, "soak.example")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = within(send.send_request(req)).await.unwrap();
        assert_eq!(resp.status(), 502, "{t}: upstream down");
        within(resp.into_body().collect()).await.unwrap();
        down.push(t);
    }
    exchanges += (plan.victims + plan.down_requests) as u64;
    tunnels_expected += plan.victims as u64;
    let upstream = Upstream::start(addr, arrivals.clone());
    assert_eq!(upstream.addr, addr, "re-bound on the same port");

    // Second half, against the new upstream.
    let (polls_b, tunnels_b) = jobs(&plan.half(), "b", &mut rng);
    run_phase(
        proxy.addr,
        &plan,
        polls_b.clone(),
        tunnels_b.clone(),
        &arrivals,
        &tally,
    )
    .await;
    exchanges += exchanges_in(&polls_b, &tunnels_b);
    tunnels_expected += tunnels_b.len() as u64;

    proxy.settle(exchanges, tunnels_expected).await;
    let rss_after = proxy.rss_kib();
    let rss_peak = proxy.peak_rss_kib();
    let books = proxy.stop().await;

    // Exactly one record per exchange and per tunnel, nothing else but the lifecycle.
    assert_eq!(
        books.requests + books.upgrades,
        exchanges,
        "exchange records"
    );
    assert_eq!(books.closed, tunnels_expected, "tunnel_closed records");
    let others: Vec<&str> = books
        .other
        .iter()
        .map(|r| r["event"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(others, ["draining", "stopped"], "no records_dropped");
    audit(&books, &warm_polls, &warm_tunnels);
    audit(&books, &polls_a, &tunnels_a);
    audit(&books, &polls_b, &tunnels_b);
    for i in 0..plan.victims {
        let r = books.tunnel(&format!("victim-{i}"));
        assert_eq!(r.closed_by, "upstream", "victim-{i}: {r:?}");
        assert!(r.c2u > 100 && r.u2c > 100, "victim-{i}: {r:?}");
    }
    for t in &down {
        let r = books.exchange(t);
        assert_eq!(
            (r.status, r.outcome.as_str()),
            (502, "upstream_error"),
            "{t}"
        );
    }

    let polls_total = warm_polls.len() + polls_a.len() + polls_b.len() + down.len();
    let tunnels_total = tunnels_expected;
    println!(
        "soak ({}): {} polling requests ({} verified, {} aborted by the client, {} during the \
         upstream restart), {} tunnels ({} verified, {} across the restart), {} payload bytes \
         verified, RSS warm {} KiB, peak {} KiB, after {} KiB ({:+} KiB), {:.1}s",
        if plan.long { "long" } else { "short" },
        polls_total,
        tally.polls_ok.load(Ordering::Relaxed),
        [&warm_polls, &polls_a, &polls_b]
            .iter()
            .flat_map(|v| v.iter())
            .filter(|j| matches!(j, Job::AbortRequest { .. } | Job::AbortResponse { .. }))
            .count(),
        down.len(),
        tunnels_total,
        tally.tunnels_ok.load(Ordering::Relaxed),
        plan.victims,
        tally.bytes_verified.load(Ordering::Relaxed),
        rss_warm,
        rss_peak,
        rss_after,
        rss_after as i64 - rss_warm as i64,
        started.elapsed().as_secs_f64(),
    );
    assert!(
        rss_after <= rss_warm + plan.rss_slack_kib,
        "RSS grew from {rss_warm} KiB to {rss_after} KiB"
    );
}
