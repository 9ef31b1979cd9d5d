//! Accept loop on a listener it is given; one task per client connection; the drain.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use crate::client_io::ClientIo;
use crate::config::Config;
use crate::exchange::{ConnInfo, Handoff};
use crate::limits::{ACCEPT_BACKOFF, SHUTDOWN_GRACE};
use crate::proxy::Shared;
use crate::record::{
    ClientError, ConnectionLimit, Draining, Event, Listening, Record, Severity, Stopped,
};
use crate::sink::Sink;

/// hyper's default read buffer cap (`max_buf_size`): 8 KiB + 100 × 4 KiB.
const HYPER_DEFAULT_MAX_BUF: usize = 8192 + 4096 * 100;

/// At most one `connection_limit` record per this long while the limit holds.
const LIMIT_REPORT_EVERY: Duration = Duration::from_secs(60);

/// A client connection's place under `--max-connections`, held until the connection
/// and any tunnel it became are gone.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    open: prometheus_client::metrics::gauge::Gauge,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, shared: &Shared) -> Self {
        shared.metrics.connections_open.inc();
        Slot {
            _permit: permit,
            open: shared.metrics.connections_open.clone(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// A client connection that ended with an error of its own making: an unparsable or
/// too large head (hyper answered 400/431 and nothing was forwarded), or no head within
/// `--header-timeout`. Counted always; recorded unless it is an idle keep-alive
/// connection timing out after its requests (normal life, not an error).
fn client_error(shared: &Shared, info: &ConnInfo, e: &hyper::Error) {
    let (kind, status) = if e.is_parse_version_h2() {
        ("bad_request", 0) // hyper closes without an answer
    } else if e.is_parse_too_large() && e.to_string().contains("URI too long") {
        ("uri_too_long", 414)
    } else if e.is_parse_too_large() {
        ("head_too_large", 431)
    } else if e.is_parse() || e.is_parse_status() {
        ("bad_request", 400)
    } else if e.is_timeout() {
        ("header_timeout", 0)
    } else {
        tracing::debug!(error = %e, "client connection ended with an error");
        return;
    };
    if kind == "header_timeout" && info.requests() > 0 {
        tracing::debug!("idle keep-alive connection closed by --header-timeout");
        shared.metrics.client_error("idle_timeout");
        return;
    }
    shared.metrics.client_error(kind);
    let error = if kind == "header_timeout" {
        "no complete request head within --header-timeout".to_string()
    } else {
        e.to_string()
    };
    shared.sink.emit(Record {
        severity: Severity::Warning,
        message: format!(
            "client {} conn {}: {error}{}",
            info.client,
            info.conn,
            if status == 0 {
                String::new()
            } else {
                format!(" (answered {status}, nothing forwarded)")
            }
        ),
        event: Event::ClientError(ClientError {
            conn: info.conn,
            client: info.client_text.clone(),
            error_kind: kind,
            error,
            status,
        }),
    });
}

/// Tells a tunnel still waiting for this connection's socket that it will not come, on
/// every way out of the connection task (an abort at the drain deadline included).
struct CancelHandoff<'a>(&'a ConnInfo);

impl Drop for CancelHandoff<'_> {
    fn drop(&mut self) {
        self.0.cancel_handoff();
    }
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// True when every exchange and tunnel ended before the drain deadline.
    pub drained: bool,
    pub tunnels_closed_by_shutdown: u64,
}

/// Serves `listener` until the first message (or close) on `signals`, then drains:
/// stops accepting, lets in-flight exchanges and tunnels finish until
/// `cfg.drain_timeout`, closes what is left (`closed_by: shutdown`), writes `stopped`.
/// A second signal cuts the drain short.
pub async fn run(
    listener: TcpListener,
    admin: Option<TcpListener>,
    cfg: Config,
    sink: Sink,
    mut signals: mpsc::Receiver<()>,
) -> io::Result<Summary> {
    let local = listener.local_addr()?;
    let admin_addr = admin.as_ref().map(TcpListener::local_addr).transpose()?;
    let cfg = Arc::new(cfg);
    let shared = Shared::new(cfg.clone(), sink.clone());
    sink.emit(Record {
        severity: Severity::Info,
        message: format!(
            "sockproxy {} listening on {local}, upstream {}",
            env!("CARGO_PKG_VERSION"),
            cfg.upstream
        ),
        event: Event::Listening(Listening {
            listen: local.to_string(),
            admin: admin_addr.map(|a| a.to_string()),
            upstream: cfg.upstream.to_string(),
            version: env!("CARGO_PKG_VERSION"),
            sio_path: cfg.sio_path.clone(),
            log_all: cfg.log_all,
            drain_timeout_s: cfg.drain_timeout.as_secs_f64(),
        }),
    });

    let admin_task = admin.map(|l| tokio::spawn(crate::admin::serve(l, shared.clone())));
    let mut builder = http1::Builder::new();
    builder
        .preserve_header_case(true)
        .auto_date_header(false)
        .max_headers(cfg.max_headers)
        .max_header_size(cfg.max_header_bytes)
        // hyper also caps its read buffer (default 8 KiB + 400 KiB), which would cut a
        // larger --max-header-bytes short: raise the cap to match, never lower it.
        .max_buf_size(cfg.max_header_bytes.max(HYPER_DEFAULT_MAX_BUF))
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout);
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut conn_no: u64 = 0;
    let slots = Arc::new(Semaphore::new(cfg.max_connections));
    let mut limit_reported: Option<Instant> = None;
    let mut paused = false;

    loop {
        // A free connection slot first: at --max-connections, accepting pauses (the
        // kernel's backlog holds new connections) until a connection or tunnel closes.
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if !paused {
                    paused = true;
                    shared.metrics.accept_paused.inc();
                    if limit_reported.is_none_or(|t| t.elapsed() >= LIMIT_REPORT_EVERY) {
                        limit_reported = Some(Instant::now());
                        sink.emit(Record {
                            severity: Severity::Warning,
                            message: format!(
                                "{} connections open (--max-connections): accepting paused until one closes",
                                cfg.max_connections
                            ),
                            event: Event::ConnectionLimit(ConnectionLimit {
                                max_connections: cfg.max_connections,
                            }),
                        });
                    }
                }
                tokio::select! {
                    permit = slots.clone().acquire_owned() => {
                        permit.expect("the connection semaphore is never closed")
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                    _ = signals.recv() => break,
                }
            }
        };
        paused = false;
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, client)) => {
                    conn_no += 1;
                    let _ = stream.set_nodelay(true);
                    let info = Arc::new(ConnInfo::new(conn_no, client, Slot::new(permit, &shared)));
                    let shared = shared.clone();
                    let builder = builder.clone();
                    let mut drain_rx = drain_rx.clone();
                    let span = tracing::debug_span!("conn", conn = conn_no, client = %client);
                    conns.spawn(async move {
                        let _handoff = CancelHandoff(&info);
                        let svc = {
                            let (shared, info) = (shared.clone(), info.clone());
                            // Boxed: `poll_without_shutdown` wants an `Unpin` future.
                            service_fn(move |req| Box::pin(shared.clone().handle(info.clone(), req)))
                        };
                        let io = ClientIo::new(stream, info.clone());
                        let mut conn = builder.serve_connection(TokioIo::new(io), svc);
                        let drained = async { let _ = drain_rx.wait_for(|d| *d).await; };
                        tokio::pin!(drained);
                        let mut closing = false;
                        // Runs the connection without letting hyper close the socket at
                        // the end: after a 101 it goes to the tunnel (below).
                        let done = std::future::poll_fn(|cx| {
                            if !closing && drained.as_mut().poll(cx).is_ready() {
                                closing = true;
                                std::pin::Pin::new(&mut conn).graceful_shutdown();
                            }
                            conn.poll_without_shutdown(cx)
                        })
                        .await;
                        match done {
                            Ok(()) => {
                                let parts = conn.into_parts();
                                let handoff = Handoff {
                                    stream: parts.io.into_inner().into_stream(),
                                    early: parts.read_buf,
                                };
                                if let Some(Handoff { mut stream, .. }) = info.hand_off(handoff) {
                                    let _ = stream.shutdown().await;
                                }
                            }
                            Err(e) => client_error(&shared, &info, &e),
                        }
                    }.instrument(span));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning, then go on.
                    shared.metrics.accept_errors.inc();
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = signals.recv() => break,
        }
    }
    drop(listener);
    shared.drain.start_draining();

    let deadline = Instant::now() + cfg.drain_timeout;
    sink.emit(Record {
        severity: Severity::Info,
        message: format!(
            "draining: {} tunnels, {} requests open, deadline {:.0}s",
            shared.drain.open_tunnels(),
            shared.drain.open_requests(),
            cfg.drain_timeout.as_secs_f64()
        ),
        event: Event::Draining(Draining {
            open_tunnels: shared.drain.open_tunnels(),
            open_requests: shared.drain.open_requests(),
            deadline_s: cfg.drain_timeout.as_secs_f64(),
        }),
    });
    drain_tx.send_replace(true);

    let everything_done = async {
        while conns.join_next().await.is_some() {}
        shared.drain.tunnels_done().await;
    };
    let drained = tokio::select! {
        () = everything_done => true,
        () = tokio::time::sleep_until(deadline) => false,
        _ = signals.recv() => false,
    };
    if !drained {
        shared.drain.cut();
        conns.abort_all();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while conns.join_next().await.is_some() {}
            shared.drain.tunnels_done().await;
        })
        .await;
    }
    if let Some(task) = admin_task {
        task.abort();
    }
    let summary = Summary {
        drained,
        tunnels_closed_by_shutdown: shared.drain.closed_by_shutdown(),
    };
    sink.emit(Record {
        severity: if drained {
            Severity::Info
        } else {
            Severity::Warning
        },
        message: format!(
            "stopped ({}), {} tunnels closed by shutdown",
            if drained {
                "drained"
            } else {
                "drain cut short"
            },
            summary.tunnels_closed_by_shutdown
        ),
        event: Event::Stopped(Stopped {
            drained,
            tunnels_closed_by_shutdown: summary.tunnels_closed_by_shutdown,
            uptime_s: (shared.started.elapsed().as_millis() as f64) / 1000.0,
            records_dropped: sink.dropped(),
        }),
    });
    Ok(summary)
}
