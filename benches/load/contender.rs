//! The proxies under test: their configs, starting them pinned to one core, their CPU time
//! and RSS from /proc, stopping them, and counting the log lines they wrote.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A contender: no proxy at all, or one of the proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Direct,
    Nginx,
    Haproxy,
    Sockproxy,
    /// A second sockproxy build (`LOAD_BENCH_SOCKPROXY_B`), for an A/B in the same run.
    SockproxyB,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
            Kind::Sockproxy => "sockproxy",
            Kind::SockproxyB => "sockproxy-b",
        }
    }

    /// The program this contender needs on PATH (`None`: nothing, or our own binary).
    pub fn program(self) -> Option<&'static str> {
        match self {
            Kind::Nginx => Some("nginx"),
            Kind::Haproxy => Some("haproxy"),
            Kind::Direct | Kind::Sockproxy | Kind::SockproxyB => None,
        }
    }
}

/// What every contender is started with.
pub struct Setup<'a> {
    pub backend: SocketAddr,
    pub dir: &'a Path,
    pub sockproxy: &'a Path,
    pub sockproxy_b: Option<&'a Path>,
    /// `taskset -c CPU` for the proxy, or no pinning.
    pub proxy_cpu: Option<&'a str>,
    /// Enough file descriptors / connections for the idle-tunnel workload.
    pub max_conns: usize,
    /// The open-file limit every process here has (a container may cap the hard limit).
    pub fd_limit: usize,
}

/// A started contender.
pub struct Running {
    pub kind: Kind,
    /// Where the load generator connects.
    pub addr: SocketAddr,
    child: Option<Child>,
    /// The proxy's processes (nginx: master and worker).
    pub pids: Vec<u32>,
    /// The access log / record file.
    pub log: Option<PathBuf>,
}

/// True when `program` runs (`program -v` or `-V` exits).
pub fn available(program: &str) -> bool {
    Command::new(program)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free loopback port")
        .port()
}

pub fn start(kind: Kind, s: &Setup<'_>, round: usize) -> Result<Running, String> {
    if kind == Kind::Direct {
        return Ok(Running {
            kind,
            addr: s.backend,
            child: None,
            pids: Vec::new(),
            log: None,
        });
    }
    let dir = s.dir.join(format!("{}-r{round}", kind.name()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("tmp")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let (program, args, log, stdout_to_log): (String, Vec<String>, PathBuf, bool) = match kind {
        Kind::Nginx => {
            let conf = dir.join("nginx.conf");
            fs::write(&conf, nginx_conf(&dir, port, s)).map_err(|e| e.to_string())?;
            let args = ["-p", path(&dir), "-c", path(&conf), "-e", "stderr"]
                .into_iter()
                .map(String::from)
                .chain(["-g".into(), "daemon off;".into()])
                .collect();
            ("nginx".into(), args, dir.join("access.log"), false)
        }
        Kind::Haproxy => {
            let conf = dir.join("haproxy.cfg");
            fs::write(&conf, haproxy_conf(port, s)).map_err(|e| e.to_string())?;
            let args = vec!["-db".into(), "-f".into(), path(&conf).into()];
            ("haproxy".into(), args, dir.join("access.log"), true)
        }
        Kind::Sockproxy | Kind::SockproxyB => {
            let args = [
                "run",
                "--listen",
                &addr.to_string(),
                "--upstream",
                &s.backend.to_string(),
                "--admin",
                "off",
                "--workers",
                "1",
                "--drain-timeout",
                "2",
            ]
            .into_iter()
            .map(String::from)
            .collect();
            let bin = match (kind, s.sockproxy_b) {
                (Kind::SockproxyB, Some(b)) => b,
                _ => s.sockproxy,
            };
            (path(bin).into(), args, dir.join("records.jsonl"), true)
        }
        Kind::Direct => unreachable!(),
    };
    let mut cmd = match s.proxy_cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpu, &program]);
            c
        }
        None => Command::new(&program),
    };
    cmd.args(&args)
        .stdin(Stdio::null())
        .stderr(file(&dir.join("stderr.log"))?)
        .stdout(if stdout_to_log {
            Stdio::from(file(&log)?)
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().map_err(|e| format!("{program}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let err = fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
            return Err(format!("{program} exited ({status}): {err}"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("{program} did not listen on {addr} within 5 s"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut pids = vec![child.id()];
    if kind == Kind::Nginx {
        // The worker is forked after the listener opens; wait for it.
        let deadline = Instant::now() + Duration::from_secs(2);
        while pids.len() == 1 && Instant::now() < deadline {
            pids.extend(children(child.id()));
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(Running {
        kind,
        addr,
        child: Some(child),
        pids,
        log: Some(log),
    })
}

fn path(p: &Path) -> &str {
    p.to_str().expect("bench paths are UTF-8")
}

fn file(p: &Path) -> Result<fs::File, String> {
    fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Direct children of `pid`, from /proc/*/stat.
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            stat_fields(*p).is_some_and(|f| f.get(1).map(String::as_str) == Some(&pid.to_string()))
        })
        .collect()
}

/// Fields of /proc/PID/stat after the command name: [state, ppid, pgrp, ...].
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(String::from).collect())
}

impl Running {
    /// utime + stime of the proxy's processes, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        self.pids
            .iter()
            .filter_map(|p| stat_fields(*p))
            // stat fields 14 and 15 (1-based, counting pid and comm) are utime and stime.
            .map(|f| f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0))
            .sum()
    }

    /// VmRSS of the proxy's processes, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.pids
            .iter()
            .filter_map(|p| fs::read_to_string(format!("/proc/{p}/status")).ok())
            .filter_map(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .sum()
    }

    /// Open file descriptors of the proxy's processes.
    pub fn open_fds(&self) -> usize {
        self.pids
            .iter()
            .filter_map(|p| fs::read_dir(format!("/proc/{p}/fd")).ok())
            .map(|d| d.count())
            .sum()
    }

    pub fn is_proxy(&self) -> bool {
        self.child.is_some()
    }

    /// Stops gracefully (each proxy's own graceful signal), waits at most 10 s, then
    /// reads its log.
    pub fn stop(mut self) -> Option<LogCount> {
        let mut child = self.child.take()?;
        let signal = match self.kind {
            Kind::Nginx => "QUIT",
            Kind::Haproxy => "USR1",
            _ => "TERM",
        };
        let _ = Command::new("kill")
            .args(["-s", signal, &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                eprintln!("{} did not stop within 10 s; killing it", self.kind.name());
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let text = fs::read_to_string(self.log.as_ref()?).ok()?;
        Some(LogCount::of(self.kind, &text))
    }
}

/// What a proxy's log holds after a run.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogCount {
    /// Lines for requests and upgrades (nginx and haproxy log one per request, upgrades
    /// included; sockproxy its `request` and `upgrade` records).
    pub lines: u64,
    /// sockproxy's `tunnel_closed` records (0 for the others).
    pub closed: u64,
    /// Polling GETs' lines and their bytes, newline included.
    pub poll_lines: u64,
    pub poll_bytes: u64,
}

impl LogCount {
    fn of(kind: Kind, text: &str) -> LogCount {
        let mut n = LogCount::default();
        let sockproxy = matches!(kind, Kind::Sockproxy | Kind::SockproxyB);
        for l in text.lines() {
            let request = if sockproxy {
                if l.contains(r#""event":"tunnel_closed""#) {
                    n.closed += 1;
                }
                l.contains(r#""event":"request""#) || l.contains(r#""event":"upgrade""#)
            } else {
                l.starts_with('{')
            };
            if !request {
                continue;
            }
            n.lines += 1;
            if l.contains("transport=polling") {
                n.poll_lines += 1;
                n.poll_bytes += l.len() as u64 + 1;
            }
        }
        n
    }

    /// Mean bytes of a polling GET's log line.
    pub fn poll_bytes_mean(&self) -> Option<f64> {
        (self.poll_lines > 0).then(|| self.poll_bytes as f64 / self.poll_lines as f64)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The seed's websocket proxying (Upgrade passed, `Connection` from the usual map so that
/// plain requests keep the upstream connection alive), upstream keep-alive, one worker,
/// and a JSON access log of the headers sockproxy records, buffered like a production log.
/// The seed's websocket proxying, used by both nginx locations.
const NGINX_PROXY: &str = "\
      proxy_pass http://theia;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_read_timeout 3600s;
";

fn nginx_conf(dir: &Path, port: u16, s: &Setup<'_>) -> String {
    let d = path(dir);
    let backend = s.backend;
    let temps: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .iter()
        .map(|m| format!("  {m}_temp_path {d}/tmp/{m};\n"))
        .collect();
    format!(
        r#"# generated by benches/load/contender.rs
user root;
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {d}/nginx.pid;
error_log stderr warn;
events {{ worker_connections {conns}; }}
http {{
{temps}  log_format sio escape=json '{{"time":"$time_iso8601","client":"$remote_addr:$remote_port",'
    '"method":"$request_method","uri":"$request_uri","status":$status,'
    '"request_time":$request_time,"bytes_in":$request_length,"bytes_out":$bytes_sent,'
    '"upgrade":"$http_upgrade","connection":"$http_connection","host":"$http_host",'
    '"origin":"$http_origin","x_forwarded_for":"$http_x_forwarded_for",'
    '"x_forwarded_proto":"$http_x_forwarded_proto","cookie":"$http_cookie",'
    '"user_agent":"$http_user_agent","sec_websocket_key":"$http_sec_websocket_key",'
    '"upstream_status":"$upstream_status","upstream_time":"$upstream_response_time"}}';
  access_log {d}/access.log sio buffer=64k flush=1s;
  keepalive_requests 1000000;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
  upstream theia {{
    server {backend};
    keepalive 64;
    keepalive_requests 1000000;
  }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location ~ ^/theia/socket\.io/ {{
      rewrite ^/theia/socket\.io/(.*)$ /socket.io/$1 break;
{proxy}    }}
    location / {{
{proxy}    }}
  }}
}}
"#,
        nofile = (s.max_conns * 2 + 1024).min(s.fd_limit),
        conns = (s.max_conns * 2 + 512).min(s.fd_limit.saturating_sub(64)),
        proxy = NGINX_PROXY,
    )
}

/// One thread, HTTP mode with keep-alive on both sides and server connection reuse,
/// websockets as tunnels, and a JSON log line per request with the same headers,
/// written to stdout (which the bench sends to a file).
fn haproxy_conf(port: u16, s: &Setup<'_>) -> String {
    let backend = s.backend;
    let captures: String = [
        ("upgrade", 32),
        ("connection", 64),
        ("host", 128),
        ("origin", 128),
        ("x-forwarded-for", 128),
        ("x-forwarded-proto", 16),
        ("cookie", 512),
        ("user-agent", 256),
        ("sec-websocket-key", 64),
    ]
    .iter()
    .map(|(h, len)| format!("  http-request capture req.fhdr({h}) len {len}\n"))
    .collect();
    let fields: String = [
        "upgrade",
        "connection",
        "host",
        "origin",
        "x_forwarded_for",
        "x_forwarded_proto",
        "cookie",
        "user_agent",
        "sec_websocket_key",
    ]
    .iter()
    .enumerate()
    .map(|(i, name)| format!(r#","{name}":"%[capture.req.hdr({i}),json(utf8s)]""#))
    .collect();
    format!(
        r#"# generated by benches/load/contender.rs
global
  nbthread 1
  maxconn {maxconn}
  log stdout format raw local0
defaults
  mode http
  log global
  option dontlognull
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 3600s
  timeout server 3600s
  timeout tunnel 3600s
  timeout http-keep-alive 75s
frontend sio
  bind 127.0.0.1:{port}
  maxconn {maxconn}
{captures}  log-format '{{"time":"%t","client":"%ci:%cp","method":"%HM","uri":"%[capture.req.uri,json(utf8s)]","status":%ST,"request_time_ms":%Ta,"bytes_in":%U,"bytes_out":%B{fields}}}'
  option forwardfor
  default_backend theia
backend theia
  server theia {backend} maxconn {maxconn}
"#,
        // HAProxy refuses to start when maxconn needs more descriptors than it may
        // open (two per proxied connection, and some of its own).
        maxconn = (s.max_conns * 2 + 512).min(s.fd_limit.saturating_sub(256) / 2),
    )
}
