//! `sockproxy probe` (the built binary) against in-process engine.io pods behind fronts
//! that behave like a healthy or a misbehaving load balancer.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_sockproxy");

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", self.stdout))
    }
}

async fn probe(args: &[&str]) -> Out {
    let out = within(
        Command::new(BIN)
            .arg("probe")
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    Out {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A pod: the demo engine.io upstream with sockproxy in front, answering `X-Pod-Name`.
async fn pod(name: &str) -> Proxy {
    let engine = engine_upstream().await;
    let name = name.to_string();
    Proxy::start(engine, move |c| {
        c.pod = Some(name);
        c.pod_header = true;
    })
    .await
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}/theia/socket.io/")
}

fn step_names(session: &Value) -> Vec<String> {
    session["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap().to_string())
        .collect()
}

/// What a misbehaving (or honest) load balancer does. One request per connection, like
/// the probe and like nginx's upstream connections without keepalive.
#[derive(Clone, Default)]
struct FrontCfg {
    /// Drop `Upgrade` and send `Connection: close` (H1).
    strip_upgrade: bool,
    /// GCLB-like affinity: a request without the cookie is balanced round-robin and the
    /// answer sets `GCLB=<secret>-<backend>`; a request with it goes to that backend.
    sticky_cookie: bool,
    /// Cut upgraded connections once the upstream has sent these bytes (a backend
    /// timeout as the probe sees it, H6: the websocket ends without a close frame). The
    /// cut follows an event, not a clock, so a slow machine cannot move it earlier.
    cut_tunnels_after: Option<&'static [u8]>,
    /// Replace Host with this (nginx's default `proxy_set_header Host $proxy_host`, H4).
    rewrite_host: Option<String>,
}

const COOKIE_SECRET: &str = "lbsecret";

/// Starts a front over `backends` and returns its address.
async fn front(backends: Vec<SocketAddr>, cfg: FrontCfg) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (backends, cfg, next) = (backends.clone(), cfg.clone(), next.clone());
            tokio::spawn(async move {
                let _ = relay(client, &backends, &cfg, &next).await;
            });
        }
    });
    addr
}

async fn relay(
    mut client: TcpStream,
    backends: &[SocketAddr],
    cfg: &FrontCfg,
    next: &AtomicUsize,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break String::from_utf8_lossy(&buf.drain(..pos + 4).collect::<Vec<_>>()).into_owned();
        }
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let lower = head.to_ascii_lowercase();
    let upgrade = lower.contains("\r\nupgrade:");
    let pinned = lower
        .split(&format!("{COOKIE_SECRET}-"))
        .nth(1)
        .and_then(|rest| rest[..1].parse::<usize>().ok())
        .filter(|_| cfg.sticky_cookie);
    let index = pinned.unwrap_or_else(|| next.fetch_add(1, Ordering::SeqCst) % backends.len());
    let mut out = String::new();
    for line in head.split("\r\n") {
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        if cfg.strip_upgrade && name == "upgrade" {
            continue;
        }
        if cfg.strip_upgrade && name == "connection" {
            out.push_str("Connection: close\r\n");
            continue;
        }
        if let (Some(host), "host") = (&cfg.rewrite_host, name.as_str()) {
            out.push_str(&format!("Host: {host}\r\n"));
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.truncate(out.len() - 2);
    let mut upstream = TcpStream::connect(backends[index]).await?;
    upstream.write_all(out.as_bytes()).await?;
    upstream.write_all(&buf).await?;
    if cfg.sticky_cookie && pinned.is_none() {
        // Insert Set-Cookie right after the status line.
        let mut status = Vec::new();
        while !status.ends_with(b"\r\n") {
            let b = upstream.read_u8().await?;
            status.push(b);
        }
        client.write_all(&status).await?;
        let cookie = format!("Set-Cookie: GCLB={COOKIE_SECRET}-{index}; path=/; HttpOnly\r\n");
        client.write_all(cookie.as_bytes()).await?;
    }
    match cfg.cut_tunnels_after {
        Some(marker) if upgrade => {
            splice_until(&mut client, &mut upstream, marker).await?;
            // The cut itself: both connections are dropped without a close frame.
        }
        _ => {
            tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        }
    }
    Ok(())
}

/// Splices both ways until the upstream has sent `marker` (relayed too), or either side
/// ends.
async fn splice_until(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    marker: &[u8],
) -> std::io::Result<()> {
    let (mut client_rx, mut client_tx) = client.split();
    let (mut up_rx, mut up_tx) = upstream.split();
    let up_to_client = async {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = up_rx.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            client_tx.write_all(&chunk[..n]).await?;
            seen.extend_from_slice(&chunk[..n]);
            if find(&seen, marker).is_some() {
                return Ok(());
            }
        }
    };
    tokio::select! {
        r = up_to_client => r,
        r = tokio::io::copy(&mut client_rx, &mut up_tx) => r.map(drop),
    }
}

#[tokio::test]
async fn healthy_every_step_passes() {
    let mut pod = pod("pod-a").await;
    let out = probe(&["--json", &url(pod.addr)]).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let doc = out.json();
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["failure"], Value::Null);
    let s = &doc["sessions"][0];
    assert_eq!(
        step_names(s),
        [
            "handshake",
            "post",
            "poll",
            "upgrade",
            "probe",
            "message",
            "close"
        ]
    );
    for step in s["steps"].as_array().unwrap() {
        assert_eq!(step["ok"], true, "{step}");
        assert_eq!(step["pod"], "pod-a", "{step}");
    }
    // Each step's own wall time, in ms rounded to 0.1: the HTTP steps each take a round
    // trip through the proxy (well above 0.05 ms), and the steps run one after the other
    // inside the session, so together they fit in its time (give or take the rounding).
    let step_ms: Vec<f64> = s["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["ms"].as_f64().unwrap())
        .collect();
    assert!(step_ms[..4].iter().all(|ms| *ms > 0.0), "{step_ms:?}");
    let session_ms = s["ms"].as_f64().unwrap();
    let rounding = 0.05 * (step_ms.len() + 1) as f64;
    assert!(
        step_ms.iter().sum::<f64>() <= session_ms + rounding,
        "steps {step_ms:?} within the session's {session_ms} ms"
    );
    let sid = s["sid"].as_str().unwrap();
    assert!(sid.starts_with("demoSid"), "{sid}");
    assert_eq!(s["steps"][3]["status"], 101);
    assert_eq!(s["steps"][3]["headers"]["upgrade"], "websocket");
    assert!(
        s["steps"][2]["detail"].as_str().unwrap().contains("40{"),
        "the poll carried socket.io's connect answer: {}",
        s["steps"][2]
    );
    assert!(
        s["steps"][5]["detail"]
            .as_str()
            .unwrap()
            .contains("/sockproxy-probe,"),
        "{}",
        s["steps"][5]
    );
    // The proxy saw a real upgrade of the same session.
    let up = pod.next_event("upgrade").await;
    assert_eq!(up["sio"]["sid"], sid);

    let human = probe(&[&url(pod.addr)]).await;
    assert_eq!(human.code, 0, "{}", human.stdout);
    for step in [
        "handshake",
        "post",
        "poll",
        "upgrade",
        "probe",
        "message",
        "close",
    ] {
        assert!(
            human.stdout.contains(&format!("ok    {step}")),
            "{step}: {}",
            human.stdout
        );
    }
    assert!(
        human.stdout.contains("x-pod-name: pod-a"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.lines().last().unwrap().starts_with("PASS"),
        "{}",
        human.stdout
    );
}

#[tokio::test]
async fn upgrade_stripped_names_the_upgrade_step_and_h1() {
    let pod = pod("pod-a").await;
    let lb = front(
        vec![pod.addr],
        FrontCfg {
            strip_upgrade: true,
            ..FrontCfg::default()
        },
    )
    .await;
    let out = probe(&["--json", &url(lb)]).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    let doc = out.json();
    assert_eq!(doc["failure"]["step"], "upgrade");
    assert_eq!(doc["failure"]["hypothesis"], "H1");
    let s = &doc["sessions"][0];
    assert_eq!(step_names(s), ["handshake", "post", "poll", "upgrade"]);
    let up = &s["steps"][3];
    assert_eq!(up["status"], 400);
    assert_eq!(up["sio_error"]["code"], 3);
    assert_eq!(
        s["skipped"],
        serde_json::json!(["probe", "message", "close"])
    );

    let human = probe(&[&url(lb)]).await;
    assert_eq!(human.code, 1);
    assert!(
        human
            .stdout
            .contains("FAIL at step upgrade: H1 Upgrade stripped on the way"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("engine.io error 3"),
        "{}",
        human.stdout
    );
}

#[tokio::test]
async fn unknown_sid_on_another_pod_is_h2() {
    let (a, b) = (pod("pod-a").await, pod("pod-b").await);
    let lb = front(vec![a.addr, b.addr], FrontCfg::default()).await;
    let out = probe(&["--json", &url(lb)]).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    let doc = out.json();
    let f = &doc["failure"];
    assert_eq!(
        (&f["step"], &f["hypothesis"]),
        (&"post".into(), &"H2".into())
    );
    assert!(
        f["why"].as_str().unwrap().contains("issued by pod-a")
            && f["why"].as_str().unwrap().contains("reached pod-b"),
        "{f}"
    );
    let post = &doc["sessions"][0]["steps"][1];
    assert_eq!(post["status"], 400);
    assert_eq!(post["sio_error"]["code"], 1);
    assert_eq!(post["pod"], "pod-b");
    assert_eq!(
        doc["sessions"][0]["pods"],
        serde_json::json!(["pod-a", "pod-b"])
    );
}

#[tokio::test]
async fn affinity_cookie_keeps_sessions_on_one_pod_unless_no_cookies() {
    let (a, b) = (pod("pod-a").await, pod("pod-b").await);
    let lb = front(
        vec![a.addr, b.addr],
        FrontCfg {
            sticky_cookie: true,
            ..FrontCfg::default()
        },
    )
    .await;
    let out = probe(&["--json", "--count", "4", &url(lb)]).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    let aff = &out.json()["affinity"];
    assert_eq!(
        (&aff["sessions"], &aff["stayed"]),
        (&4.into(), &4.into()),
        "{aff}"
    );
    assert_eq!(aff["by"], "x-pod-name");
    assert_eq!(aff["handshake_pods"].as_array().unwrap().len(), 1, "{aff}");
    assert_eq!(aff["cookies_set"], serde_json::json!(["GCLB"]));
    assert!(
        !out.stdout.contains(COOKIE_SECRET),
        "cookie values other than io= are never printed"
    );

    let out = probe(&["--json", "--count", "4", "--no-cookies", &url(lb)]).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    let doc = out.json();
    assert_eq!(
        (&doc["affinity"]["sessions"], &doc["affinity"]["stayed"]),
        (&4.into(), &0.into())
    );
    assert_eq!(doc["affinity"]["cookies_sent"], false);
    assert_eq!(doc["failure"]["hypothesis"], "H2");
    for s in doc["sessions"].as_array().unwrap() {
        assert!(s["steps"][1]["cookies_sent"].as_array().unwrap().is_empty());
    }

    let human = probe(&["--count", "3", "--no-cookies", &url(lb)]).await;
    assert!(
        human
            .stdout
            .contains("affinity: 0/3 sessions stayed on one pod (by X-Pod-Name)"),
        "{}",
        human.stdout
    );
    assert!(!human.stdout.contains(COOKIE_SECRET), "{}", human.stdout);
}

/// Which requests an `allow_request_upstream` lets through: Theia >= 1.73's two
/// `allowRequest` checks (PROTOCOL-NOTES §H), one at a time.
#[derive(Clone, Copy)]
enum Allow {
    /// ws-origin-validator with THEIA_HOSTS unset: no Origin, or Origin's host equal to Host.
    SameOrigin,
    /// browser-connection-token: only with the cookie `theia-connection-token=good`.
    Token,
}

/// The value of header `name` in a request head (first one, any case).
fn header_of(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// An engine.io handshake endpoint behind `allowRequest`: an open packet when `allow`
/// lets the request through, else `abortRequest`'s 403 byte for byte (Node, chunked).
/// Every request head it gets goes to the receiver.
async fn allow_request_upstream(allow: Allow) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heads, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while find(&buf, b"\r\n\r\n").is_none() {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let allowed = match allow {
                    Allow::SameOrigin => match header_of(&head, "origin") {
                        None => true,
                        Some(o) => {
                            let host = o.split_once("://").map_or("", |(_, h)| h);
                            Some(host.to_string()) == header_of(&head, "host")
                        }
                    },
                    Allow::Token => header_of(&head, "cookie")
                        .is_some_and(|c| c.split("; ").any(|p| p == "theia-connection-token=good")),
                };
                let _ = heads.send(head);
                let resp = if allowed {
                    let body = r#"0{"sid":"allowedSid1","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    let body = r#"{"code":4,"message":"Forbidden"}"#;
                    format!(
                        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                        body.len()
                    )
                };
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (addr, rx)
}

/// A request head without its Origin line.
fn without_origin(head: &str) -> String {
    head.split("\r\n")
        .filter(|l| header_of(l, "origin").is_none())
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[tokio::test]
async fn code_4_accepted_without_origin_is_the_origin_check_h4() {
    let (theia, mut heads) = allow_request_upstream(Allow::SameOrigin).await;
    // The browser's Origin names the public host; the front hands Theia its own address.
    let lb = front(
        vec![theia],
        FrontCfg {
            rewrite_host: Some(theia.to_string()),
            ..FrontCfg::default()
        },
    )
    .await;
    let out = probe(&["--json", &url(lb)]).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    let doc = out.json();
    let f = &doc["failure"];
    assert_eq!(
        (&f["step"], &f["hypothesis"]),
        (&"handshake".into(), &"H4".into())
    );
    let why = f["why"].as_str().unwrap();
    assert!(
        why.contains("without Origin was accepted (200)")
            && why.contains("a hop changed Host or Origin"),
        "{why}"
    );
    let s = &doc["sessions"][0];
    assert_eq!(step_names(s), ["handshake", "no-origin"]);
    let (refused, resent) = (&s["steps"][0], &s["steps"][1]);
    assert_eq!(
        (&refused["status"], &refused["sio_error"]["code"]),
        (&403.into(), &4.into())
    );
    assert_eq!(
        (&resent["ok"], &resent["status"]),
        (&true.into(), &200.into())
    );
    assert!(
        resent["request"]
            .as_str()
            .unwrap()
            .contains(&format!("again without Origin (was http://{lb})")),
        "{resent}"
    );
    assert_eq!(
        s["skipped"],
        serde_json::json!(["post", "poll", "upgrade", "probe", "message", "close"])
    );
    // Ground truth: Theia got the same request twice, the second without Origin.
    let first = within(heads.recv()).await.unwrap();
    let second = within(heads.recv()).await.unwrap();
    assert_eq!(header_of(&first, "origin"), Some(format!("http://{lb}")));
    assert_eq!(header_of(&second, "origin"), None, "{second}");
    assert_eq!(without_origin(&first), second);

    let human = probe(&[&url(lb)]).await;
    assert!(
        human.stdout.contains("ok    no-origin 200")
            && human
                .stdout
                .contains("FAIL at step handshake: H4 Origin/Host changed"),
        "{}",
        human.stdout
    );
}

#[tokio::test]
async fn code_4_whatever_the_origin_is_not_h4() {
    let (theia, mut heads) = allow_request_upstream(Allow::Token).await;
    let proxy = Proxy::start(theia, |_| {}).await;
    let out = probe(&[
        "--json",
        "--origin",
        "https://elsewhere.example",
        &url(proxy.addr),
    ])
    .await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    let doc = out.json();
    assert_eq!(doc["origin"], "https://elsewhere.example");
    let f = &doc["failure"];
    assert_eq!(
        (&f["step"], &f["hypothesis"]),
        (&"handshake".into(), &Value::Null)
    );
    assert_eq!(f["hypotheses"], serde_json::json!([]));
    let why = f["why"].as_str().unwrap();
    assert!(
        why.contains("refused whatever the Origin") && why.contains("theia-connection-token"),
        "{why}"
    );
    let s = &doc["sessions"][0];
    assert_eq!(step_names(s), ["handshake", "no-origin"]);
    for step in s["steps"].as_array().unwrap() {
        assert_eq!(step["status"], 403, "{step}");
        assert_eq!(
            step["sio_error"],
            serde_json::json!({"code": 4, "message": "Forbidden"})
        );
    }
    assert_eq!(s["steps"][1]["ok"], false);
    let first = within(heads.recv()).await.unwrap();
    let second = within(heads.recv()).await.unwrap();
    assert_eq!(
        header_of(&first, "origin").as_deref(),
        Some("https://elsewhere.example")
    );
    assert_eq!(header_of(&second, "origin"), None, "{second}");

    let human = probe(&[&url(proxy.addr)]).await;
    assert!(
        human.stdout.contains("FAIL  no-origin 403")
            && human
                .stdout
                .contains("FAIL at step handshake: not one of H1-H6")
            && human.stdout.contains("refused whatever the Origin"),
        "{}",
        human.stdout
    );

    // No Origin sent at all: nothing to take away, and not the Origin check either.
    let out = probe(&["--json", "--origin", "", &url(proxy.addr)]).await;
    let doc = out.json();
    assert_eq!(step_names(&doc["sessions"][0]), ["handshake"]);
    assert_eq!(doc["failure"]["hypothesis"], Value::Null);
    let why = doc["failure"]["why"].as_str().unwrap();
    assert!(why.contains("no Origin was sent"), "{why}");
}

#[tokio::test]
async fn tunnel_cut_early_is_h6() {
    let pod = pod("pod-a").await;
    let lb = front(
        vec![pod.addr],
        FrontCfg {
            // Right after the answer of the message step, the last step before the hold.
            cut_tunnels_after: Some(b"/sockproxy-probe,"),
            ..FrontCfg::default()
        },
    )
    .await;
    let out = probe(&["--json", "--hold", "8", &url(lb)]).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    let doc = out.json();
    assert_eq!(doc["failure"]["step"], "hold");
    assert_eq!(doc["failure"]["hypothesis"], "H6");
    assert_eq!(
        doc["failure"]["hypotheses"],
        serde_json::json!(["H6", "H5"])
    );
    let s = &doc["sessions"][0];
    assert_eq!(
        step_names(s),
        [
            "handshake",
            "post",
            "poll",
            "upgrade",
            "probe",
            "message",
            "hold"
        ]
    );
    assert_eq!(s["skipped"], serde_json::json!(["close"]));
}

/// A TLS front with a fresh self-signed certificate for 127.0.0.1, over `upstream`.
async fn tls_front(upstream: SocketAddr) -> SocketAddr {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to do.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn https_self_signed_fails_with_a_clear_tls_error_and_passes_with_insecure() {
    let pod = pod("pod-a").await;
    let lb = tls_front(pod.addr).await;
    let https = format!("https://{lb}/theia/socket.io/");

    let out = probe(&["--json", &https]).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    let doc = out.json();
    assert_eq!(doc["failure"]["step"], "handshake");
    assert_eq!(doc["failure"]["hypothesis"], Value::Null);
    let why = doc["failure"]["why"].as_str().unwrap();
    assert!(
        why.contains("certificate") && why.contains("--insecure"),
        "{why}"
    );
    let human = probe(&[&https]).await;
    assert_eq!(human.code, 1);
    assert!(
        human.stdout.contains("invalid peer certificate")
            && human
                .stdout
                .contains("FAIL at step handshake: not one of H1-H6"),
        "{}",
        human.stdout
    );

    let out = probe(&["--json", "--insecure", &https]).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(out.json()["sessions"][0]["steps"][3]["status"], 101);
}

#[tokio::test]
async fn nothing_listening_is_a_failed_handshake_not_a_usage_error() {
    let closed = closed_port().await;
    let out = probe(&["--json", "--timeout", "5", &url(closed)]).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    let doc = out.json();
    assert_eq!(doc["failure"]["step"], "handshake");
    assert!(
        doc["failure"]["why"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{doc}"
    );
}

#[tokio::test]
async fn usage_errors_exit_2_with_one_line() {
    for args in [
        &[][..],
        &["ftp://h/socket.io/"],
        &["not a url"],
        &["http://h/", "--eio", "5"],
        &["http://h/", "--header", "no colon"],
        &["http://h/", "--count", "0"],
        &["http://h/", "--timeout", "soon"],
    ] {
        let out = probe(args).await;
        assert_eq!(out.code, 2, "{args:?}: {}{}", out.stdout, out.stderr);
        assert_eq!(out.stdout, "", "{args:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {}", out.stderr);
    }
}
