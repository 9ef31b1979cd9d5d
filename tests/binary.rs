//! The built binary: flags and env, stdout holds records only, SIGTERM, exit codes, demo.

mod support;

use std::process::Stdio;

use serde_json::Value;
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};

const BIN: &str = env!("CARGO_BIN_EXE_sockproxy");

fn sockproxy(args: &[&str]) -> Command {
    sockproxy_via(&[], args)
}

/// The binary started through `wrapper` (e.g. `taskset -c 0`), or directly when empty.
fn sockproxy_via(wrapper: &[&str], args: &[&str]) -> Command {
    let mut c = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    c.args(args)
        .env_remove("RUST_LOG")
        .env("POD_NAME", "pod-bin")
        .env("POD_IP", "10.1.2.3")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("SOCKPROXY_") || k == "GOOGLE_CLOUD_PROJECT" {
            c.env_remove(k);
        }
    }
    c
}

async fn next_json(lines: &mut tokio::io::Lines<BufReader<ChildStdout>>) -> Value {
    let line = within(lines.next_line())
        .await
        .unwrap()
        .expect("stdout ended");
    parse_line(&format!("{line}\n"))
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[tokio::test]
async fn runs_records_and_stops_on_sigterm() {
    let engine = engine_upstream().await;
    let upstream = format!("http://{engine}");
    let mut child = sockproxy(&[
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "off",
        "--upstream",
        &upstream,
    ])
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = next_json(&mut lines).await;
    assert_eq!(listening["event"], "listening");
    assert_eq!(listening["pod"], "pod-bin");
    assert_eq!(listening["pod_ip"], "10.1.2.3");
    let addr: std::net::SocketAddr = listening["listen"].as_str().unwrap().parse().unwrap();
    assert_ne!(addr.port(), 0, "the real bound port");

    let mut c = send_raw(
        addr,
        b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    let resp = read_to_end(&mut c).await;
    assert!(resp.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let r = next_json(&mut lines).await;
    assert_eq!(r["event"], "request");
    assert_eq!(r["sio"]["handshake"], true);

    sigterm(&child);
    let mut rest = Vec::new();
    while let Some(line) = within(lines.next_line()).await.unwrap() {
        rest.push(parse_line(&format!("{line}\n")));
    }
    let status = within(child.wait()).await.unwrap();
    assert_eq!(status.code(), Some(0));
    let events: Vec<_> = rest
        .iter()
        .map(|r| r["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events, ["draining", "stopped"]);
}

async fn usage_error(cmd: &mut Command) -> String {
    let out = within(cmd.output()).await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "stdout carries records only");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "one clear line: {err}");
    err
}

#[tokio::test]
async fn bad_values_name_the_flag_and_the_env_var() {
    let err = usage_error(&mut sockproxy(&["--listen", "nowhere"])).await;
    assert!(
        err.contains("--listen") && err.contains("SOCKPROXY_LISTEN"),
        "{err}"
    );
    let err = usage_error(sockproxy(&[]).env("SOCKPROXY_DRAIN_TIMEOUT", "soon")).await;
    assert!(
        err.contains("--drain-timeout") && err.contains("SOCKPROXY_DRAIN_TIMEOUT"),
        "{err}"
    );
    let err = usage_error(&mut sockproxy(&["--upstream", "https://theia:3000"])).await;
    assert!(
        err.contains("--upstream") && err.contains("SOCKPROXY_UPSTREAM"),
        "{err}"
    );
    let err = usage_error(&mut sockproxy(&["--no-such-flag"])).await;
    assert!(err.contains("--no-such-flag"), "{err}");
}

#[tokio::test]
async fn env_vars_configure_the_run() {
    let engine = engine_upstream().await;
    let mut child = sockproxy(&[])
        .env("SOCKPROXY_LISTEN", "127.0.0.1:0")
        .env("SOCKPROXY_ADMIN", "off")
        .env("SOCKPROXY_UPSTREAM", engine.to_string())
        .env("SOCKPROXY_SIO_PATH", "/engine.io/")
        .env("SOCKPROXY_LOG_ALL", "true")
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let l = next_json(&mut lines).await;
    assert_eq!(l["upstream"], engine.to_string());
    assert_eq!(l["sio_path"], "/engine.io/");
    assert_eq!(l["log_all"], true);
    sigterm(&child);
    assert_eq!(within(child.wait()).await.unwrap().code(), Some(0));
}

#[tokio::test]
async fn address_in_use_is_one_error_record_and_exit_1() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = within(sockproxy(&["--listen", &addr, "--admin", "off"]).output())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<_> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let r = parse_line(&format!("{}\n", lines[0]));
    assert_eq!(r["severity"], "ERROR");
    assert_eq!(r["event"], "startup_failed");
    assert!(r["error"].as_str().unwrap().contains(&addr));
}

#[tokio::test]
async fn help_and_version() {
    let out = within(sockproxy(&["--help"]).output()).await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--upstream",
        "--admin",
        "--drain-timeout",
        "--log-all",
        "--sio-path",
        "--capture-header",
        "--pod-header",
        "--workers",
        "--gcp-project",
        "SOCKPROXY_LISTEN",
        "GOOGLE_CLOUD_PROJECT",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    let out = within(sockproxy(&["--version"]).output()).await.unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("sockproxy {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn demo_exits_0_and_prints_the_records_it_claims() {
    let out = within(sockproxy(&["demo"]).output()).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let recs: Vec<Value> = stdout
        .lines()
        .map(|l| parse_line(&format!("{l}\n")))
        .collect();
    let of = |event: &str| {
        recs.iter()
            .filter(|r| r["event"] == event)
            .collect::<Vec<_>>()
    };

    let handshake = of("request")
        .into_iter()
        .find(|r| r["sio"]["handshake"] == true)
        .expect("a handshake line");
    let sid = handshake["sio"]["sid"].as_str().unwrap();
    let upgrade = of("upgrade");
    assert_eq!(upgrade.len(), 1);
    assert_eq!(upgrade[0]["sio"]["sid"], sid);
    let closed = of("tunnel_closed");
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0]["id"], upgrade[0]["id"]);
    // The demo's websocket (src/demo.rs): 2probe, 5, two messages and a close up; 3probe,
    // the two echoes and the close reply down. Frames on the wire (RFC 6455 §5.2): 2
    // header bytes below 126 bytes of payload, plus a 4-byte mask from the client.
    let frame = |payload: &str, masked: bool| 2 + payload.len() + if masked { 4 } else { 0 };
    let messages = [r#"42["hello","from the demo client"]"#, r#"42["bye"]"#];
    let up: usize = ["2probe", "5", messages[0], messages[1], ""]
        .iter()
        .map(|p| frame(p, true))
        .sum();
    let down: usize = ["3probe", messages[0], messages[1], ""]
        .iter()
        .map(|p| frame(p, false))
        .sum();
    assert_eq!(closed[0]["bytes_client_to_upstream"], up);
    assert_eq!(closed[0]["bytes_upstream_to_client"], down);
    let flagged = |flag: &str| {
        of("request")
            .into_iter()
            .any(|r| r["flags"].as_array().unwrap().iter().any(|f| f == flag))
    };
    assert!(flagged("upgrade_header_missing"));
    assert!(flagged("sid_unknown") && flagged("sid_not_issued_here"));
    assert_eq!(recs.first().unwrap()["event"], "listening");
    assert_eq!(recs.last().unwrap()["event"], "stopped");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("upgrade_header_missing"),
        "the explanation names what to look for"
    );
}

#[tokio::test]
async fn sigterm_drains_a_live_websocket_then_exits_within_the_deadline() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    // The drain has to outlast the readiness check and one echo after `draining` (the
    // load side, hence the slack); the tunnel must not close before it.
    let deadline = slacken(std::time::Duration::from_secs(1));
    let engine = engine_upstream().await;
    let (mut child, mut lines, addr, admin) = start_with_admin(
        engine,
        &["--drain-timeout", &deadline.as_secs_f64().to_string()],
    )
    .await;

    let (mut ws, _) = ws_connect(addr, "/socket.io/?EIO=4&transport=websocket").await;
    within(ws.next()).await.unwrap().unwrap(); // open packet
    assert_eq!(next_json(&mut lines).await["event"], "upgrade");

    // Taken before the signal is sent, so before the proxy starts its deadline.
    let signalled = std::time::Instant::now();
    sigterm(&child);
    assert_eq!(next_json(&mut lines).await["event"], "draining");
    let mut c = send_raw(
        admin,
        b"GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(read_to_end(&mut c).await.starts_with(b"HTTP/1.1 503"));
    // The websocket keeps echoing during the drain.
    let mut echoes = 0;
    loop {
        if within(ws.send(Message::text(r#"42["tick"]"#)))
            .await
            .is_err()
        {
            break;
        }
        match within(ws.next()).await {
            Some(Ok(Message::Text(t))) if t.as_str() == r#"42["tick"]"# => echoes += 1,
            _ => break, // closed by the drain deadline
        }
    }
    let cut = signalled.elapsed();
    assert!(echoes > 0, "traffic flowed during the drain");
    assert!(cut >= deadline, "the tunnel closed {cut:?} after SIGTERM");
    let mut rest = Vec::new();
    while let Some(line) = within(lines.next_line()).await.unwrap() {
        rest.push(parse_line(&format!("{line}\n")));
    }
    let status = within(child.wait()).await.unwrap();
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(
        took < deadline + slacken(std::time::Duration::from_secs(1)),
        "exit within the deadline + 1 s (times the slack), took {took:?}"
    );
    let events: Vec<_> = rest.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["tunnel_closed", "stopped"]);
    assert_eq!(rest[0]["closed_by"], "shutdown");
    assert_eq!(rest[1]["drained"], false);
    assert_eq!(rest[1]["tunnels_closed_by_shutdown"], 1);
}

/// The current-thread runtime.
const WORKERS_1: &[&str] = &["--workers", "1"];

/// Starts the binary with an admin listener and `extra` flags; returns it, its stdout
/// lines, and the proxy and admin addresses from `listening`.
async fn start_with_admin(
    upstream: std::net::SocketAddr,
    extra: &[&str],
) -> (
    Child,
    tokio::io::Lines<BufReader<ChildStdout>>,
    std::net::SocketAddr,
    std::net::SocketAddr,
) {
    let upstream = upstream.to_string();
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
    ];
    args.extend_from_slice(extra);
    let mut child = sockproxy(&args).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = next_json(&mut lines).await;
    let addr = listening["listen"].as_str().unwrap().parse().unwrap();
    let admin = listening["admin"].as_str().unwrap().parse().unwrap();
    (child, lines, addr, admin)
}

/// One socket.io polling handshake through the proxy; the status line.
async fn handshake(addr: std::net::SocketAddr) -> String {
    let mut c = send_raw(
        addr,
        b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    let resp = read_to_end(&mut c).await;
    String::from_utf8_lossy(&resp)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn closed_stdout_loses_records_not_traffic() {
    let engine = engine_upstream().await;
    let (child, lines, addr, admin) = start_with_admin(engine, WORKERS_1).await;
    drop(lines); // the reader of stdout goes away: later writes fail (EPIPE)
    // "Later": a process that another test spawns at this moment holds a copy of the
    // read end until its exec closes it, and a write meanwhile succeeds. So traffic goes
    // on (every handshake answered) until 20 records are counted as not written; the
    // exact count is the sink's own test (tests/sink.rs). Each round adds a record, so
    // the counter catches up with the writer's few milliseconds of gathering without a
    // clock.
    let mut rounds = 0;
    while scrape(admin).await["sockproxy_records_not_written_total{}"] < 20.0 {
        rounds += 1;
        assert!(rounds <= 500, "records are written to a closed stdout");
        assert_eq!(handshake(addr).await, "HTTP/1.1 200 OK");
    }
    sigterm(&child);
    let out = within(child.wait_with_output()).await.unwrap();
    assert_eq!(out.status.code(), Some(0));
}

/// CPU seconds the process has used so far (utime + stime from /proc).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ is 100 on Linux
}

#[tokio::test]
async fn out_of_file_descriptors_backs_off_and_recovers() {
    let engine = engine_upstream().await;
    let (child, _lines, addr, admin) = start_with_admin(engine, WORKERS_1).await;
    let pid = child.id().unwrap();
    let limited = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--nofile=48:48"])
        .status()
        .unwrap();
    assert!(limited.success());
    // More idle connections than descriptors left: accept fails with EMFILE while
    // they are open (the rest wait in the backlog).
    let mut held = Vec::new();
    for _ in 0..80 {
        held.push(within(TcpStream::connect(addr)).await.unwrap());
    }
    let before = cpu_seconds(pid);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await; // a measuring window
    let spent = cpu_seconds(pid) - before;
    assert!(spent < 0.3, "accept loop spun: {spent:.2} s CPU in 1 s");
    drop(held);
    // Recovered: the pending connections drain, new ones are served.
    assert_eq!(handshake(addr).await, "HTTP/1.1 200 OK");
    let m = scrape(admin).await;
    assert!(
        m["sockproxy_accept_errors_total{}"] >= 1.0,
        "EMFILE was hit"
    );
}

/// Threads of a started proxy (after its `listening` record), and the proxy.
async fn threads_of(wrapper: &[&str], extra: &[&str]) -> (usize, Child) {
    let mut args = vec!["--listen", "127.0.0.1:0", "--admin", "off"];
    args.extend_from_slice(extra);
    let mut child = sockproxy_via(wrapper, &args).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(next_json(&mut lines).await["event"], "listening");
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id().unwrap())).unwrap();
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Threads: in /proc/PID/status");
    (threads, child)
}

/// Without `--workers`, a proxy that may use one CPU (here `taskset -c 0`; in a pod, a
/// CPU limit of 1) runs the single-threaded scheduler, as `--workers 1` does: one
/// thread for traffic plus the record writer, no idle worker threads.
#[tokio::test]
async fn one_usable_cpu_runs_the_single_threaded_scheduler() {
    let (one_cpu, _a) = threads_of(&["taskset", "-c", "0"], &[]).await;
    let (workers_1, _b) = threads_of(&[], WORKERS_1).await;
    let (workers_2, _c) = threads_of(&[], &["--workers", "2"]).await;
    assert_eq!(one_cpu, workers_1, "same threads as --workers 1");
    assert!(
        workers_2 > workers_1,
        "worker threads show in the count: {workers_2} vs {workers_1}"
    );
}
