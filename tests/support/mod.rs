//! Test helpers: the proxy in-process on port 0 with an in-memory sink, raw TCP peers.
#![allow(dead_code)] // each test file uses a different part of this module

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use sockproxy::config::Config;
use sockproxy::server::Summary;
use sockproxy::sink::Sink;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Every await in the tests is bounded by this, times [`slack`].
pub const WAIT: Duration = Duration::from_secs(10);

/// How much slower than a quiet 2-CPU machine this one may be: `SOCKPROXY_TEST_SLACK`, a
/// number >= 1 (default 1; the e2e suite reads the same variable, tests/e2e/lib/slack.js).
/// It multiplies every deadline ([`WAIT`]) and the load side of every timing window (how
/// late an event may come), never the side that proves the feature: a timeout still must
/// not fire before its configured time. CI on a busy machine sets it to 3, say; a test
/// that then passes only thanks to it waits on a clock where it could wait on an event.
pub fn slack() -> f64 {
    static SLACK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    // Reading (not setting) the environment is fine in a test.
    *SLACK.get_or_init(|| match std::env::var("SOCKPROXY_TEST_SLACK") {
        Err(_) => 1.0,
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 1.0 => s,
            _ => panic!("SOCKPROXY_TEST_SLACK={v:?}: expected a number >= 1"),
        },
    })
}

/// `d` widened by [`slack`]: for deadlines and the late side of timing windows only.
pub fn slacken(d: Duration) -> Duration {
    d.mul_f64(slack())
}

/// Awaits `f`, failing the test after [`WAIT`] (times [`slack`]).
pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(slacken(WAIT), f)
        .await
        .expect("timed out")
}

/// sockproxy running in this process.
pub struct Proxy {
    pub addr: SocketAddr,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`).
    pub admin: SocketAddr,
    pub records: mpsc::UnboundedReceiver<String>,
    stop: mpsc::Sender<()>,
    task: JoinHandle<std::io::Result<Summary>>,
}

impl Proxy {
    /// Starts the proxy in front of `upstream`; `tune` adjusts the config.
    pub async fn start(upstream: SocketAddr, tune: impl FnOnce(&mut Config)) -> Proxy {
        let mut cfg = sockproxy::cli::config_for_upstream(upstream);
        cfg.pod = Some("pod-test".into());
        cfg.pod_ip = Some("10.0.0.7".into());
        tune(&mut cfg);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = admin_listener.local_addr().unwrap();
        let (sink, records) = Sink::memory(cfg.pod.clone(), cfg.pod_ip.clone());
        let (stop, signals) = mpsc::channel(4);
        let task = tokio::spawn(sockproxy::server::run(
            listener,
            Some(admin_listener),
            cfg,
            sink,
            signals,
        ));
        let mut proxy = Proxy {
            addr,
            admin,
            records,
            stop,
            task,
        };
        let listening = proxy.next_record().await;
        assert_eq!(listening["event"], "listening");
        proxy
    }

    /// The next record, parsed; fails if it is not exactly one JSON line.
    pub async fn next_record(&mut self) -> Value {
        let line = within(self.records.recv()).await.expect("sink closed");
        parse_line(&line)
    }

    /// Skips records until one with `event` arrives.
    pub async fn next_event(&mut self, event: &str) -> Value {
        loop {
            let r = self.next_record().await;
            if r["event"] == event {
                return r;
            }
        }
    }

    /// Sends one shutdown signal (SIGTERM in the binary).
    pub async fn signal(&self) {
        self.stop.send(()).await.unwrap();
    }

    /// Signals, waits for the run to end, and returns its summary and remaining records.
    pub async fn stop(mut self) -> (Summary, Vec<Value>) {
        self.signal().await;
        let summary = within(self.task).await.unwrap().unwrap();
        let mut rest = Vec::new();
        while let Ok(line) = self.records.try_recv() {
            rest.push(parse_line(&line));
        }
        (summary, rest)
    }
}

/// Parses one sink line: exactly one JSON object followed by a newline.
pub fn parse_line(line: &str) -> Value {
    assert!(
        line.ends_with('\n'),
        "record not newline-terminated: {line:?}"
    );
    assert_eq!(
        line.matches('\n').count(),
        1,
        "record spans lines: {line:?}"
    );
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {e}: {line}"));
    assert!(v.is_object());
    v
}

/// A raw upstream: accepts connections and hands each to the test.
pub struct RawUpstream {
    pub addr: SocketAddr,
    conns: mpsc::UnboundedReceiver<TcpStream>,
}

impl RawUpstream {
    pub async fn start() -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, conns) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                if tx.send(s).is_err() {
                    break;
                }
            }
        });
        RawUpstream { addr, conns }
    }

    /// The next connection the proxy opened.
    pub async fn accept(&mut self) -> TcpStream {
        within(self.conns.recv())
            .await
            .expect("upstream listener gone")
    }
}

/// Reads from `s` until `buf` ends with the end of an HTTP head; returns the head bytes
/// (and keeps anything after it in `buf`).
pub async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Vec<u8> {
    loop {
        if let Some(pos) = find(buf, b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..pos + 4).collect();
            return head;
        }
        let mut chunk = [0u8; 8192];
        let n = within(s.read(&mut chunk)).await.unwrap();
        assert!(
            n > 0,
            "EOF before the end of the head; got {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads until `buf` holds at least `len` bytes.
pub async fn read_at_least(s: &mut TcpStream, buf: &mut Vec<u8>, len: usize) {
    while buf.len() < len {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = within(s.read(&mut chunk)).await.unwrap();
        assert!(n > 0, "EOF after {} of {len} bytes", buf.len());
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads to end-of-stream.
pub async fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    within(s.read_to_end(&mut out)).await.unwrap();
    out
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Connects to `addr` and writes `bytes`.
pub async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s
}

/// A real engine.io-speaking upstream (the demo's), on port 0.
pub async fn engine_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(sockproxy::demo::serve_engine(listener));
    addr
}

/// A closed port: bound, then released.
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// FNV-1a, enough to compare streams.
pub fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// Reads until `buf` contains `needle`.
pub async fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, needle: &[u8]) {
    while find(buf, needle).is_none() {
        let want = buf.len() + 1;
        read_at_least(s, buf, want).await;
    }
}

impl Proxy {
    /// Waits for the run to end after a signal was already sent; returns the rest.
    pub async fn stop_after_signal(mut self) -> (Summary, Vec<Value>) {
        let summary = within(self.task).await.unwrap().unwrap();
        let mut rest = Vec::new();
        while let Ok(line) = self.records.try_recv() {
            rest.push(parse_line(&line));
        }
        (summary, rest)
    }
}

/// A polling GET with a sid that the upstream has received and holds unanswered, as
/// engine.io holds a long-poll: returns the client end and the upstream's end.
pub async fn pending_long_poll(proxy: SocketAddr, up: &mut RawUpstream) -> (TcpStream, TcpStream) {
    let client = send_raw(
        proxy,
        b"GET /socket.io/?EIO=4&transport=polling&sid=S HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .await;
    let mut conn = up.accept().await;
    read_head(&mut conn, &mut Vec::new()).await;
    (client, conn)
}

/// GET `path` on a fresh connection: status, content type, body.
pub async fn get(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut c = send_raw(
        addr,
        format!("{method} {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    let resp = String::from_utf8(read_to_end(&mut c).await).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

/// Parses /metrics with prometheus-parse; returns `name{labels}` → value for counters
/// and gauges, and `name_count` for histograms.
pub async fn scrape(admin: SocketAddr) -> std::collections::HashMap<String, f64> {
    let (status, ctype, body) = get(admin, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let mut out = std::collections::HashMap::new();
    for s in scrape.samples {
        let mut labels: Vec<_> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let key = format!("{}{{{}}}", s.metric, labels.join(","));
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => continue,
        };
        out.insert(key, v);
    }
    out
}

/// A websocket client over a new connection to `addr`, requesting `path`; the handshake
/// (up to the 101) is bounded like every other wait.
pub async fn ws_connect(
    addr: SocketAddr,
    path: &str,
) -> (
    tokio_tungstenite::WebSocketStream<TcpStream>,
    tokio_tungstenite::tungstenite::handshake::client::Response,
) {
    let stream = within(TcpStream::connect(addr)).await.unwrap();
    within(tokio_tungstenite::client_async(
        format!("ws://{addr}{path}"),
        stream,
    ))
    .await
    .unwrap()
}

/// Reads `ws` until its stream ends (after a close handshake), bounded.
pub async fn ws_until_end<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    within(async { while ws.next().await.is_some() {} }).await;
}

/// A listener whose accept queue is full: connects to it hang (SYNs are dropped).
pub async fn full_backlog() -> (SocketAddr, Vec<TcpStream>) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..8 {
        // A connect that the queue takes completes at once; one that has not within this
        // time is taken to hang (a slow but successful connect would leave room, so the
        // margin is on the load side, hence the slack).
        let hangs_after = slacken(Duration::from_millis(300));
        match tokio::time::timeout(hangs_after, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => held.push(s),
            _ => break,
        }
    }
    std::mem::forget(listener); // never accepts, stays open for the test
    (addr, held)
}

/// The six verdicts of a `report --json` output in H1..H6 order, as `C` confirmed, `I`
/// isolated, `R` ruled out, `-` no evidence.
pub fn verdicts(v: &Value) -> String {
    v["hypotheses"]
        .as_array()
        .expect("hypotheses")
        .iter()
        .map(|h| match h["verdict"].as_str() {
            Some("confirmed") => 'C',
            Some("isolated") => 'I',
            Some("ruled_out") => 'R',
            Some("no_evidence") => '-',
            other => panic!("verdict {other:?}"),
        })
        .collect()
}

/// A fresh directory under the system's temp dir for one test (`what` names the suite).
pub fn temp_dir(what: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sockproxy-{what}-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
