//! The `probe` subcommand: a browser-like socket.io client that runs each step against a
//! URL, reports what it saw, and names the hypothesis the first failing step points at.
//!
//! - `target`: the URL and the request targets (pure).
//! - `packets`: engine.io payloads and open packets (pure).
//! - `diagnose`: a failed step → H1..H6 (pure).
//! - `affinity`: `--count` sessions → how many stayed on one pod (pure).
//! - `net`: TCP, TLS (rustls, system roots) and one HTTP/1.1 exchange per connection.
//! - `session`: the steps of one session, in order.
//! - `steps`: what each step found (the records of `--json`).
//! - `websocket`: text frames of engine.io packets, `--hold`.
//! - `render`: the human report and the JSON document.

mod affinity;
mod diagnose;
mod net;
mod packets;
mod render;
mod session;
mod steps;
mod target;
mod websocket;

use std::process::ExitCode;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde::Serialize;

pub use diagnose::{Hypothesis, StepName};
pub use target::{Eio, Target};

/// `sockproxy probe URL`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The socket.io endpoint, e.g. `https://ide.example.com/theia/socket.io/`
    /// (http or https; a bare host means `/socket.io/`).
    #[arg(value_name = "URL", value_parser = target::parse_url)]
    pub url: Target,
    /// Run N sessions one after the other and report how many stayed on one pod
    /// (by X-Pod-Name, else by "Session ID unknown" refusals).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub count: u32,
    /// Never send cookies back (by default Set-Cookie values such as GCLB are returned
    /// the way a browser would, across sessions).
    #[arg(long)]
    pub no_cookies: bool,
    /// Origin header (default: the URL's scheme://host[:port], as a page on that host
    /// would send; an empty value sends none).
    #[arg(long, value_name = "ORIGIN", value_parser = target::parse_origin)]
    pub origin: Option<String>,
    /// Extra request header on every request, repeatable; replaces a default header of
    /// the same name (Cookie values are added to the cookies sent back).
    #[arg(long = "header", short = 'H', value_name = "NAME:VALUE", value_parser = target::parse_header)]
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Bound on each step, in seconds.
    #[arg(long, default_value = "10", value_name = "SECS", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Keep the websocket open SECS seconds before closing, answering pings: a load
    /// balancer timeout that cuts it shows as H6.
    #[arg(long, default_value = "0", value_name = "SECS", value_parser = parse_hold)]
    pub hold: Duration,
    /// Print one JSON document with every step instead of the report.
    #[arg(long)]
    pub json: bool,
    /// engine.io protocol revision: 4 (socket.io 3/4) or 3 (socket.io 2).
    #[arg(long, default_value = "4", value_name = "3|4", value_parser = target::parse_eio)]
    pub eio: Eio,
    /// Accept any TLS certificate (self-signed test hosts); by default the system's
    /// roots verify it.
    #[arg(long)]
    pub insecure: bool,
}

fn parse_secs(s: &str, min: f64, max: f64) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .trim_end_matches('s')
        .parse()
        .map_err(|_| "expected a number of seconds".to_string())?;
    if !(min..=max).contains(&secs) {
        return Err(format!("must be between {min} and {max} seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    parse_secs(s, 0.001, 3600.0)
}

fn parse_hold(s: &str) -> Result<Duration, String> {
    parse_secs(s, 0.0, 86_400.0)
}

/// Everything one probe run found: the JSON document of `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub url: String,
    pub eio: u8,
    pub origin: Option<String>,
    pub ok: bool,
    /// The first failing session's first failing step, and its hypothesis.
    pub failure: Option<FirstFailure>,
    pub affinity: affinity::Affinity,
    pub sessions: Vec<steps::Session>,
}

/// [`steps::FailureReport`] with the session it happened in.
#[derive(Debug, Serialize)]
pub struct FirstFailure {
    pub session: usize,
    #[serde(flatten)]
    pub report: steps::FailureReport,
}

/// Runs the probe; exit 0 when every step passed, 1 when a step failed, 2 on usage errors.
pub fn main(args: Args) -> ExitCode {
    let connector = match net::Connector::new(&args.url, args.insecure) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sockproxy probe: {e}");
            return ExitCode::from(2);
        }
    };
    let origin = match args.origin {
        None => Some(args.url.origin()),
        Some(o) if o.is_empty() => None,
        Some(o) => Some(o),
    };
    let opts = session::Options {
        target: args.url,
        eio: args.eio,
        origin,
        headers: args.headers,
        timeout: args.timeout,
        cookies: !args.no_cookies,
        hold: args.hold,
        connector,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sockproxy probe: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let report = rt.block_on(run(&opts, args.count as usize));
    let out = if args.json {
        render::json(&report)
    } else {
        render::human(&report)
    };
    // A closed stdout (`| head`) must not turn a finished probe into a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes());
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn run(opts: &session::Options, count: usize) -> Report {
    let mut jar = session::Jar::default();
    let mut sessions = Vec::with_capacity(count);
    for i in 1..=count {
        sessions.push(session::run(opts, &mut jar, i).await);
    }
    let failure = sessions.iter().find_map(|s| {
        s.failure.clone().map(|report| FirstFailure {
            session: s.session,
            report,
        })
    });
    Report {
        url: opts.target.to_string(),
        eio: opts.eio.number(),
        origin: opts.origin.clone(),
        ok: failure.is_none(),
        failure,
        affinity: affinity::summarize(&sessions, opts.cookies),
        sessions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        probe: Args,
    }

    fn parse(args: &[&str]) -> Result<Args, String> {
        let mut argv = vec!["probe"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .map(|c| c.probe)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn flags() {
        let a = parse(&["https://h/theia/socket.io/"]).unwrap();
        assert_eq!(
            (a.count, a.no_cookies, a.json, a.insecure, a.eio),
            (1, false, false, false, Eio::V4)
        );
        assert_eq!(
            (a.timeout, a.hold),
            (Duration::from_secs(10), Duration::ZERO)
        );
        let a = parse(&[
            "http://h:81/",
            "--count",
            "5",
            "--no-cookies",
            "--origin",
            "",
            "-H",
            "X-A: 1",
            "--header",
            "Cookie:theia-connection-token=t",
            "--timeout",
            "2.5",
            "--hold",
            "40",
            "--json",
            "--eio",
            "3",
            "--insecure",
        ])
        .unwrap();
        assert_eq!(
            (a.count, a.no_cookies, a.json, a.insecure),
            (5, true, true, true)
        );
        assert_eq!(a.origin.as_deref(), Some(""));
        assert_eq!(a.headers.len(), 2);
        assert_eq!(a.timeout, Duration::from_millis(2500));
        assert_eq!(a.hold, Duration::from_secs(40));
        assert_eq!(a.eio, Eio::V3);
        for bad in [
            &["ftp://h/"][..],
            &[],
            &["http://h/", "--count", "0"],
            &["http://h/", "--eio", "5"],
            &["http://h/", "--timeout", "0"],
            &["http://h/", "--timeout", "x"],
            &["http://h/", "--header", "nocolon"],
            &["http://h/", "--hold", "-1"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
