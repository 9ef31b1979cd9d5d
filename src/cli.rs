//! The command line: flags, their `SOCKPROXY_*` variables and defaults (clap), parsed
//! into [`Config`] for `run`, or into the arguments of `demo`, `report` and `probe`.
//!
//! This is the only module that reads the process environment (clap reads the
//! `SOCKPROXY_*` variables, [`RunArgs::into_config`] reads `POD_NAME` / `POD_IP`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use http::uri::Authority;

use crate::config::{Admin, Config, NameList};

/// Query parameters whose values are `<redacted>` in records by default (`--redact-query`).
pub const DEFAULT_REDACTED_QUERY: &str = "token,access_token,id_token,refresh_token,auth,authorization,api_key,apikey,password,secret,signature,sig";

/// Command line of the `sockproxy` binary (contract §1).
#[derive(Debug, Parser)]
#[command(
    name = "sockproxy",
    version,
    about = "Transparent HTTP/1.1 + WebSocket sidecar that records what a Socket.IO server really receives",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// The subcommands; `run` is the default.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar (the default when no subcommand is given).
    Run(RunArgs),
    /// Self-contained demonstration: a small engine.io upstream, the proxy and a
    /// browser-like client on loopback; prints the records of that traffic.
    Demo,
    /// Reads records (files or stdin) and names the hypothesis they confirm.
    Report(crate::report::Args),
    /// Acts like a browser's socket.io client against URL, step by step.
    Probe(crate::probe::Args),
}

/// Flags of `run`: flag, then environment variable, then default.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Where nginx connects (port 0 picks a free port; see the `listening` record).
    #[arg(
        long,
        env = "SOCKPROXY_LISTEN",
        default_value = "127.0.0.1:3000",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// Theia: `host:port` or `http://host:port`. The only place sockproxy connects to.
    #[arg(long, env = "SOCKPROXY_UPSTREAM", default_value = "127.0.0.1:3001", value_name = "ADDR", value_parser = parse_upstream)]
    pub upstream: Authority,
    /// Admin listener for /healthz, /readyz, /metrics; `off` disables it.
    #[arg(long, env = "SOCKPROXY_ADMIN", default_value = "0.0.0.0:9901", value_name = "ADDR", value_parser = parse_admin)]
    pub admin: Admin,
    /// After SIGTERM, how long open tunnels and in-flight requests may live.
    #[arg(long, env = "SOCKPROXY_DRAIN_TIMEOUT", default_value = "25", value_name = "SECS", value_parser = parse_secs)]
    pub drain_timeout: Duration,
    /// Record every exchange, not only socket.io paths and upgrades.
    #[arg(long, env = "SOCKPROXY_LOG_ALL", default_value_t = false, value_parser = clap::builder::BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub log_all: bool,
    /// What makes a path a socket.io path (matched anywhere in the path).
    #[arg(long, env = "SOCKPROXY_SIO_PATH", default_value = "/socket.io/", value_name = "PATH", value_parser = parse_sio_path)]
    pub sio_path: String,
    /// Extra header to record (repeatable; the env variable takes a comma list).
    #[arg(long = "capture-header", env = "SOCKPROXY_CAPTURE_HEADERS", value_name = "NAME", value_delimiter = ',', value_parser = parse_header_name)]
    pub capture_headers: Vec<http::HeaderName>,
    /// Add `X-Pod-Name: $POD_NAME` to responses (the seed's Q3 affinity test).
    #[arg(long, env = "SOCKPROXY_POD_HEADER", default_value_t = false, value_parser = clap::builder::BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub pod_header: bool,
    /// Runtime worker threads (default: the CPUs sockproxy may use, affinity and cgroup quota counted; 1 runs the single-threaded scheduler).
    #[arg(long, env = "SOCKPROXY_WORKERS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    /// GCP project id: records carry `logging.googleapis.com/trace`.
    #[arg(long, env = "GOOGLE_CLOUD_PROJECT", value_name = "ID", value_parser = parse_project)]
    pub gcp_project: Option<String>,
    /// How long a request head may take, counted from when sockproxy starts waiting
    /// for it: a new connection, or the end of the previous response on a kept-alive
    /// one (so this is also the idle keep-alive timeout; above nginx's upstream
    /// `keepalive_timeout` of 60 s so nginx closes idle connections first). 0 disables.
    #[arg(long, env = "SOCKPROXY_HEADER_TIMEOUT", default_value = "75", value_name = "SECS", value_parser = parse_secs)]
    pub header_timeout: Duration,
    /// Largest request head (request line + headers) accepted; larger gets 431.
    #[arg(long, env = "SOCKPROXY_MAX_HEADER_BYTES", default_value = "65536", value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1024..=16_777_216))]
    pub max_header_bytes: u32,
    /// Most header lines one request may carry; more gets 431. The default is Node's
    /// (theia's) `maxHeadersCount`, so sockproxy never refuses what theia would take.
    #[arg(long, env = "SOCKPROXY_MAX_HEADERS", default_value = "2000", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_headers: u32,
    /// How long a TCP connect to the upstream may take before sockproxy answers 504.
    #[arg(long, env = "SOCKPROXY_CONNECT_TIMEOUT", default_value = "10", value_name = "SECS", value_parser = parse_secs)]
    pub connect_timeout: Duration,
    /// Most client connections (tunnels included) open at once; at the limit sockproxy
    /// stops accepting (the kernel's backlog holds new ones) until one closes.
    #[arg(long, env = "SOCKPROXY_MAX_CONNECTIONS", default_value = "10000", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub max_connections: u32,
    /// Close a tunnel after this long without a byte either way (`closed_by:
    /// idle_timeout`). 0, the default, leaves idle tunnels to the load balancer.
    #[arg(long, env = "SOCKPROXY_TUNNEL_IDLE_TIMEOUT", default_value = "0", value_name = "SECS", value_parser = parse_secs)]
    pub tunnel_idle_timeout: Duration,
    /// Query parameters whose values are written `<redacted>` in `query` and
    /// `httpRequest.requestUrl` (comma list, case-insensitive; `none` for no redaction).
    #[arg(long, env = "SOCKPROXY_REDACT_QUERY", default_value = DEFAULT_REDACTED_QUERY, value_name = "NAMES", value_parser = parse_name_list)]
    pub redact_query: NameList,
}

impl RunArgs {
    /// The checked config of these flags plus the downward-API variables `POD_NAME`
    /// and `POD_IP`.
    pub fn into_config(self) -> Config {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        self.with_pod(env("POD_NAME"), env("POD_IP"))
    }

    /// The checked config of these flags and an explicit pod identity (for tests and
    /// the demo).
    pub fn with_pod(self, pod: Option<String>, pod_ip: Option<String>) -> Config {
        Config {
            listen: self.listen,
            upstream: self.upstream,
            admin: self.admin,
            drain_timeout: self.drain_timeout,
            log_all: self.log_all,
            sio_path: self.sio_path,
            capture_headers: self.capture_headers,
            pod_header: self.pod_header,
            workers: self.workers.map(usize::from),
            gcp_project: self.gcp_project,
            header_timeout: nonzero(self.header_timeout),
            max_header_bytes: self.max_header_bytes as usize,
            max_headers: self.max_headers as usize,
            connect_timeout: self.connect_timeout,
            max_connections: self.max_connections as usize,
            tunnel_idle_timeout: nonzero(self.tunnel_idle_timeout),
            redact_query: self.redact_query.0,
            pod,
            pod_ip,
        }
    }
    /// Parses `run` flags from an explicit argument list (argv[0] first).
    ///
    /// # Errors
    /// clap's error for a bad flag or value.
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        RunOnly::try_parse_from(args).map(|o| o.run)
    }
}

fn parse_upstream(s: &str) -> Result<Authority, String> {
    let rest = match s.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "scheme `{scheme}` is not supported: sockproxy speaks plain HTTP/1.1 to the upstream"
            ));
        }
        None => s,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('?') || rest.contains('@') {
        return Err("expected host:port (no path, query or user info)".into());
    }
    let authority: Authority = rest
        .parse()
        .map_err(|e| format!("expected host:port: {e}"))?;
    if authority.port_u16().is_none() {
        return Err("a port is required, e.g. 127.0.0.1:3001".into());
    }
    if authority.host().is_empty() {
        return Err("a host is required, e.g. 127.0.0.1:3001".into());
    }
    Ok(authority)
}

fn parse_admin(s: &str) -> Result<Admin, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Admin::Off);
    }
    s.parse()
        .map(Admin::On)
        .map_err(|_| "expected ADDR:PORT or `off`".to_string())
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| "expected a number of seconds".to_string())?;
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err("expected seconds between 0 and 86400".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

fn parse_name_list(s: &str) -> Result<NameList, String> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(NameList::default());
    }
    let names: Vec<String> = s
        .split(',')
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Err("expected a comma list of query parameter names, or `none`".into());
    }
    Ok(NameList(names))
}

fn parse_sio_path(s: &str) -> Result<String, String> {
    if s.is_empty() || !s.starts_with('/') {
        return Err("expected a path starting with `/`, e.g. /socket.io/".into());
    }
    Ok(s.to_string())
}

fn parse_header_name(s: &str) -> Result<http::HeaderName, String> {
    http::HeaderName::from_bytes(s.trim().as_bytes())
        .map_err(|_| format!("`{s}` is not a valid header name"))
}

fn parse_project(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b':');
    if ok {
        Ok(s.to_string())
    } else {
        Err("expected a GCP project id (letters, digits, `-`)".into())
    }
}

/// A config for in-process use (tests, the demo): the given upstream, every other
/// setting at its default.
pub fn config_for_upstream(upstream: SocketAddr) -> Config {
    let args = RunArgs::try_parse_from(["sockproxy", "--upstream", &upstream.to_string()])
        .expect("the default flags and a socket address always parse");
    args.with_pod(None, None)
}

/// The environment variable behind a `run` flag (`--listen` → `SOCKPROXY_LISTEN`), as
/// clap knows it, for error messages that name both.
pub fn env_of_flag(flag: &str) -> Option<String> {
    let long = flag.strip_prefix("--")?;
    let cmd = RunOnly::command();
    let arg = cmd.get_arguments().find(|a| a.get_long() == Some(long))?;
    arg.get_env()?.to_str().map(str::to_string)
}

/// `run`'s flags alone, for [`RunArgs::try_parse_from`] and [`env_of_flag`].
#[derive(Parser)]
struct RunOnly {
    #[command(flatten)]
    run: RunArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
        RunArgs::try_parse_from(std::iter::once("sockproxy").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_the_contract() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.listen, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(a.upstream.as_str(), "127.0.0.1:3001");
        assert_eq!(a.admin, Admin::On("0.0.0.0:9901".parse().unwrap()));
        assert_eq!(a.drain_timeout, Duration::from_secs(25));
        assert!(!a.log_all);
        assert_eq!(a.sio_path, "/socket.io/");
        assert!(a.capture_headers.is_empty());
        assert!(!a.pod_header);
        assert_eq!(a.workers, None);
        let c = a.with_pod(None, None);
        assert_eq!(c.header_timeout, Some(Duration::from_secs(75)));
        assert_eq!((c.max_header_bytes, c.max_headers), (65536, 2000));
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.max_connections, 10_000);
        assert_eq!(c.tunnel_idle_timeout, None);
        assert!(c.redact_query.iter().any(|n| n == "access_token"));
    }

    #[test]
    fn limits_and_redaction_lists() {
        let c = RunArgs::with_pod(
            parse(&[
                "--header-timeout",
                "0",
                "--tunnel-idle-timeout",
                "300",
                "--redact-query",
                " Token , ,X-Key",
            ])
            .unwrap(),
            None,
            None,
        );
        assert_eq!(c.header_timeout, None);
        assert_eq!(c.tunnel_idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(c.redact_query, ["token", "x-key"]);
        let none = parse(&["--redact-query", "none"]).unwrap();
        assert!(none.redact_query.0.is_empty());
        for args in [
            &["--max-header-bytes", "100"][..],
            &["--max-connections", "0"],
            &["--max-headers", "0"],
            &["--redact-query", ","],
            &["--connect-timeout", "forever"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn upstream_forms() {
        for (input, want) in [
            ("127.0.0.1:3001", Some("127.0.0.1:3001")),
            ("http://127.0.0.1:3001", Some("127.0.0.1:3001")),
            ("http://theia:3000/", Some("theia:3000")),
            ("[::1]:3001", Some("[::1]:3001")),
            ("localhost", None),
            ("https://theia:3000", None),
            ("theia:3000/path", None),
            ("theia:notaport", None),
            ("", None),
        ] {
            let got = parse_upstream(input).ok().map(|a| a.to_string());
            assert_eq!(got.as_deref(), want, "{input}");
        }
    }

    #[test]
    fn admin_off_and_addr() {
        assert_eq!(parse(&["--admin", "off"]).unwrap().admin, Admin::Off);
        assert_eq!(parse(&["--admin", "OFF"]).unwrap().admin, Admin::Off);
        assert!(parse(&["--admin", "nowhere"]).is_err());
    }

    #[test]
    fn bad_values_are_rejected() {
        for args in [
            &["--listen", "3000"][..],
            &["--drain-timeout", "-1"],
            &["--drain-timeout", "soon"],
            &["--workers", "0"],
            &["--sio-path", "socket.io"],
            &["--capture-header", "bad header"],
            &["--gcp-project", "a b"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn switches_and_lists() {
        let a = parse(&[
            "--log-all",
            "--pod-header",
            "--capture-header",
            "X-Request-Start",
            "--capture-header",
            "b,c",
        ])
        .unwrap();
        assert!(a.log_all && a.pod_header);
        let names: Vec<_> = a.capture_headers.iter().map(|h| h.as_str()).collect();
        assert_eq!(names, ["x-request-start", "b", "c"]);
        assert!(!parse(&["--log-all=false"]).unwrap().log_all);
    }

    #[test]
    fn every_flag_names_its_env() {
        let cmd = RunOnly::command();
        let longs: Vec<&str> = cmd.get_arguments().filter_map(|a| a.get_long()).collect();
        assert!(longs.len() >= 17, "{longs:?}");
        for long in longs {
            let env = env_of_flag(&format!("--{long}")).unwrap_or_default();
            assert!(
                env.starts_with("SOCKPROXY_") || env == "GOOGLE_CLOUD_PROJECT",
                "--{long}: {env:?}"
            );
        }
        assert_eq!(env_of_flag("--listen").as_deref(), Some("SOCKPROXY_LISTEN"));
        assert_eq!(env_of_flag("--nope"), None);
    }
}
