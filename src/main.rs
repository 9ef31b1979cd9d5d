//! Reads argv, picks the subcommand, starts stderr diagnostics, runs the runtime, and
//! turns the outcome into an exit code. No logic.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use sockproxy::cli::{Cli, Command, env_of_flag};
use sockproxy::config::{Admin, Config};
use sockproxy::record::{Event, Record, Severity, StartupFailed};
use sockproxy::sink::Sink;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match cli.command {
        Some(Command::Demo) => sockproxy::demo::main(),
        Some(Command::Report(args)) => sockproxy::report::main(args),
        Some(Command::Probe(args)) => sockproxy::probe::main(args),
        Some(Command::Run(args)) => run(args.into_config()),
        None => run(cli.run.into_config()),
    }
}

/// Contract §1: one clear line naming the flag and its env var, exit 2.
fn usage_error(e: clap::Error) -> ExitCode {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == ErrorKind::MissingRequiredArgument
        && let Some(ContextValue::Strings(missing)) = e.get(ContextKind::InvalidArg)
    {
        eprintln!("sockproxy: missing {} (see --help)", missing.join(", "));
        return ExitCode::from(2);
    }
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let flag = arg
        .as_deref()
        .and_then(|a| a.split_whitespace().next())
        .map(str::to_string);
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let first_line = e
        .to_string()
        .lines()
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_string();
    let line = match (
        flag.as_deref(),
        flag.as_deref().and_then(env_of_flag),
        value,
    ) {
        (Some(flag), Some(env), Some(value)) => {
            let reason = e.source_reason().unwrap_or_else(|| first_line.clone());
            format!("sockproxy: invalid value '{value}' for {flag} (env {env}): {reason}")
        }
        _ => format!("sockproxy: {first_line} (see --help)"),
    };
    eprintln!("{line}");
    ExitCode::from(2)
}

trait SourceReason {
    fn source_reason(&self) -> Option<String>;
}

impl SourceReason for clap::Error {
    fn source_reason(&self) -> Option<String> {
        std::error::Error::source(self).map(|s| s.to_string())
    }
}

fn run(cfg: Config) -> ExitCode {
    let stdout = std::io::stdout();
    let out = match std::os::fd::AsFd::as_fd(&stdout).try_clone_to_owned() {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) => {
            eprintln!("sockproxy: cannot use stdout: {e}");
            return ExitCode::from(1);
        }
    };
    let (sink, writer) = Sink::writer(out, cfg.pod.clone(), cfg.pod_ip.clone());
    // One worker: the current-thread scheduler, without the work-stealing machinery a
    // single worker never uses (the sidecar's usual case on a small pod). Without
    // `--workers`, one worker per CPU sockproxy may use: its CPU affinity and cgroup
    // CPU quota count (a pod limited to one CPU, or `taskset -c 0`, gets one).
    let workers = cfg
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut rt = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    rt.enable_all();
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => return startup_failed(&sink, writer, format!("cannot start the runtime: {e}")),
    };
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| {
                format!(
                    "cannot listen on {} (--listen / SOCKPROXY_LISTEN): {e}",
                    cfg.listen
                )
            })?;
        let admin = match cfg.admin {
            Admin::Off => None,
            Admin::On(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                format!("cannot listen on {addr} (--admin / SOCKPROXY_ADMIN): {e}")
            })?),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(forward_signals(tx));
        sockproxy::server::run(listener, admin, cfg, sink.clone(), rx)
            .await
            .map_err(|e| format!("server failed: {e}"))
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(_) => {
            writer.close(Duration::from_secs(5));
            ExitCode::SUCCESS
        }
        Err(msg) => startup_failed(&sink, writer, msg),
    }
}

fn startup_failed(sink: &Sink, writer: sockproxy::sink::Writer, error: String) -> ExitCode {
    sink.emit(Record {
        severity: Severity::Error,
        message: error.clone(),
        event: Event::StartupFailed(StartupFailed {
            error: error.clone(),
        }),
    });
    writer.close(Duration::from_secs(5));
    eprintln!("sockproxy: {error}");
    ExitCode::from(1)
}

/// Sends one message per SIGTERM/SIGINT: the first starts the drain, the second cuts it.
async fn forward_signals(tx: tokio::sync::mpsc::Sender<()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if tx.send(()).await.is_err() {
            return;
        }
    }
}
