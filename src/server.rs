//! The process's life on its listener, in phases: announce, accept (one task per client
//! connection, each served by hyper until it ends or becomes a tunnel), drain, stop.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use crate::answer::{ClientRefusal, hyper_answer};
use crate::client_io::ClientIo;
use crate::config::Config;
use crate::conn::{ConnInfo, Handoff, Slot};
use crate::limits::{ACCEPT_BACKOFF, SHUTDOWN_GRACE};
use crate::proxy::Proxy;
use crate::record::{
    ClientError, ConnectionLimit, Draining, Event, Listening, Record, Severity, Stopped,
};
use crate::recorder::Recorder;
use crate::sink::Sink;

/// hyper's default read buffer cap (`max_buf_size`): 8 KiB + 100 × 4 KiB.
const HYPER_DEFAULT_MAX_BUF: usize = 8192 + 4096 * 100;

/// At most one `connection_limit` record per this long while the limit holds.
const LIMIT_REPORT_EVERY: Duration = Duration::from_secs(60);

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
    let started = Instant::now();
    let admin_addr = admin.as_ref().map(TcpListener::local_addr).transpose()?;
    let cfg = Arc::new(cfg);
    let recorder = Recorder::new(cfg.clone(), sink.clone());
    sink.emit(listening(&cfg, listener.local_addr()?, admin_addr));
    let admin_task = admin.map(|l| tokio::spawn(crate::admin::serve(l, recorder.clone())));
    let trim_task = tokio::spawn(crate::memory::give_back_after_bursts(
        recorder.bursts.clone(),
    ));

    let mut acceptor = Acceptor::new(&cfg, Proxy::new(cfg.clone(), recorder.clone()));
    acceptor.accept_until(&listener, &mut signals).await;
    drop(listener);
    let drained = drain(&recorder, &mut acceptor, &cfg, &mut signals).await;

    if let Some(task) = admin_task {
        task.abort();
    }
    trim_task.abort();
    let summary = Summary {
        drained,
        tunnels_closed_by_shutdown: recorder.drain.closed_by_shutdown(),
    };
    sink.emit(stopped(&summary, started.elapsed(), sink.dropped()));
    Ok(summary)
}

/// Accepts client connections, each served on its own task, within
/// `--max-connections`.
struct Acceptor {
    proxy: Arc<Proxy>,
    builder: http1::Builder,
    slots: Arc<Semaphore>,
    max_connections: usize,
    /// Tells connection tasks to finish their exchange and close (the drain).
    drain_tx: watch::Sender<bool>,
    conns: JoinSet<()>,
    conn_no: u64,
    limit_reported: Option<Instant>,
    paused: bool,
}

impl Acceptor {
    fn new(cfg: &Config, proxy: Arc<Proxy>) -> Self {
        let mut builder = http1::Builder::new();
        builder
            .preserve_header_case(true)
            .auto_date_header(false)
            .max_headers(cfg.max_headers)
            .max_header_size(cfg.max_header_bytes)
            // hyper also caps its read buffer (default 8 KiB + 400 KiB), which would cut
            // a larger --max-header-bytes short: raise the cap to match, never lower it.
            .max_buf_size(cfg.max_header_bytes.max(HYPER_DEFAULT_MAX_BUF))
            .timer(TokioTimer::new())
            .header_read_timeout(cfg.header_timeout);
        Acceptor {
            proxy,
            builder,
            slots: Arc::new(Semaphore::new(cfg.max_connections)),
            max_connections: cfg.max_connections,
            drain_tx: watch::channel(false).0,
            conns: JoinSet::new(),
            conn_no: 0,
            limit_reported: None,
            paused: false,
        }
    }

    /// Accepts until a signal arrives.
    async fn accept_until(&mut self, listener: &TcpListener, signals: &mut mpsc::Receiver<()>) {
        loop {
            let Some(permit) = self.free_slot(signals).await else {
                return;
            };
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, client)) => self.serve(stream, client, permit),
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning, then go on.
                        self.proxy.recorder().metrics.accept_errors.inc();
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                Some(_) = self.conns.join_next(), if !self.conns.is_empty() => {}
                _ = signals.recv() => return,
            }
        }
    }

    /// A free connection slot; at --max-connections, accepting pauses (the kernel's
    /// backlog holds new connections) until a connection or tunnel closes. `None`
    /// when a signal came first.
    async fn free_slot(
        &mut self,
        signals: &mut mpsc::Receiver<()>,
    ) -> Option<OwnedSemaphorePermit> {
        loop {
            if let Ok(permit) = self.slots.clone().try_acquire_owned() {
                self.paused = false;
                return Some(permit);
            }
            self.note_limit();
            tokio::select! {
                permit = self.slots.clone().acquire_owned() => {
                    self.paused = false;
                    return Some(permit.expect("the connection semaphore is never closed"));
                }
                Some(_) = self.conns.join_next(), if !self.conns.is_empty() => {}
                _ = signals.recv() => return None,
            }
        }
    }

    /// Counts a pause at the limit, and records it at most once per
    /// [`LIMIT_REPORT_EVERY`].
    fn note_limit(&mut self) {
        if self.paused {
            return;
        }
        self.paused = true;
        self.proxy.recorder().metrics.accept_paused.inc();
        if self
            .limit_reported
            .is_some_and(|t| t.elapsed() < LIMIT_REPORT_EVERY)
        {
            return;
        }
        self.limit_reported = Some(Instant::now());
        self.proxy.recorder().sink.emit(Record {
            severity: Severity::Warning,
            message: format!(
                "{} connections open (--max-connections): accepting paused until one closes",
                self.max_connections
            ),
            event: Event::ConnectionLimit(ConnectionLimit {
                max_connections: self.max_connections,
            }),
        });
    }

    /// Serves an accepted connection on its own task.
    fn serve(&mut self, stream: TcpStream, client: SocketAddr, permit: OwnedSemaphorePermit) {
        self.conn_no += 1;
        let _ = stream.set_nodelay(true);
        let r = self.proxy.recorder();
        let slot = Slot::new(permit, &r.metrics.connections_open, &r.bursts);
        let info = Arc::new(ConnInfo::new(self.conn_no, client, slot));
        let span = tracing::debug_span!("conn", conn = self.conn_no, client = %client);
        let task = serve_connection(
            self.proxy.clone(),
            info,
            stream,
            self.builder.clone(),
            self.drain_tx.subscribe(),
        );
        self.conns.spawn(task.instrument(span));
    }
}

/// Runs hyper on one client connection until it ends, closing it gracefully when the
/// drain starts. After a 101 the socket goes to the tunnel waiting for it instead of
/// being closed.
async fn serve_connection(
    proxy: Arc<Proxy>,
    info: Arc<ConnInfo>,
    stream: TcpStream,
    builder: http1::Builder,
    mut drain_rx: watch::Receiver<bool>,
) {
    let _handoff = CancelHandoff(&info);
    let svc = {
        let (proxy, info) = (proxy.clone(), info.clone());
        // Boxed: `poll_without_shutdown` wants an `Unpin` future.
        service_fn(move |req| Box::pin(proxy.clone().handle(info.clone(), req)))
    };
    let io = ClientIo::new(stream, info.clone());
    let mut conn = builder.serve_connection(TokioIo::new(io), svc);
    let drained = async {
        let _ = drain_rx.wait_for(|d| *d).await;
    };
    tokio::pin!(drained);
    let mut closing = false;
    // Runs the connection without letting hyper close the socket at the end: after a
    // 101 it goes to the tunnel (below).
    let done = std::future::poll_fn(|cx| {
        if !closing && drained.as_mut().poll(cx).is_ready() {
            closing = true;
            std::pin::Pin::new(&mut conn).graceful_shutdown();
        }
        conn.poll_without_shutdown(cx)
    })
    .await;
    let parts = conn.into_parts();
    let io = parts.io.into_inner();
    match done {
        Ok(()) => {
            let handoff = Handoff {
                stream: io.into_stream(),
                early: parts.read_buf,
            };
            // No tunnel took the socket: dropping it closes it (the same FIN a
            // `shutdown` would send, one system call fewer).
            drop(info.hand_off(handoff));
        }
        Err(e) => client_error(proxy.recorder(), &info, &e, io.last_status()),
    }
}

/// Tells a tunnel still waiting for this connection's socket that it will not come, on
/// every way out of the connection task (an abort at the drain deadline included).
struct CancelHandoff<'a>(&'a ConnInfo);

impl Drop for CancelHandoff<'_> {
    fn drop(&mut self) {
        self.0.cancel_handoff();
    }
}

/// A client connection that ended with an error of its own making (see
/// [`ClientRefusal`]): counted always; recorded unless it is an idle keep-alive
/// connection timing out after its requests (normal life, not an error). `answered`
/// is the status hyper wrote to the client after the request it refused.
fn client_error(recorder: &Recorder, info: &ConnInfo, e: &hyper::Error, answered: Option<u16>) {
    let Some(refusal) = ClientRefusal::of(e, answered, info.requests()) else {
        tracing::debug!(error = %e, "client connection ended with an error");
        return;
    };
    recorder.metrics.client_error(refusal.kind());
    if refusal == ClientRefusal::IdleTimeout {
        tracing::debug!("idle keep-alive connection closed by --header-timeout");
        return;
    }
    let error = if refusal == ClientRefusal::HeaderTimeout {
        "no complete request head within --header-timeout".to_string()
    } else {
        e.to_string()
    };
    let status = hyper_answer(e, answered);
    let answer = if status == 0 {
        String::new()
    } else {
        format!(" (answered {status}, nothing forwarded)")
    };
    recorder.sink.emit(Record {
        severity: Severity::Warning,
        message: format!(
            "client {} conn {}: {error}{answer}",
            info.peer.client, info.peer.conn
        ),
        event: Event::ClientError(ClientError {
            conn: info.peer.conn,
            client: info.peer.client.clone(),
            error_kind: refusal.kind(),
            error,
            status,
        }),
    });
}

/// Stops the accepted connections: lets them and the tunnels finish until
/// `--drain-timeout` (or a second signal), then cuts what is left. True when all
/// ended in time.
async fn drain(
    recorder: &Recorder,
    acceptor: &mut Acceptor,
    cfg: &Config,
    signals: &mut mpsc::Receiver<()>,
) -> bool {
    let drain = &recorder.drain;
    drain.start_draining();
    let deadline = Instant::now() + cfg.drain_timeout;
    recorder.sink.emit(Record {
        severity: Severity::Info,
        message: format!(
            "draining: {} tunnels, {} requests open, deadline {:.0}s",
            drain.open_tunnels(),
            drain.open_requests(),
            cfg.drain_timeout.as_secs_f64()
        ),
        event: Event::Draining(Draining {
            open_tunnels: drain.open_tunnels(),
            open_requests: drain.open_requests(),
            deadline_s: cfg.drain_timeout.as_secs_f64(),
        }),
    });
    acceptor.drain_tx.send_replace(true);
    let conns = &mut acceptor.conns;
    let drained = tokio::select! {
        () = async {
            while conns.join_next().await.is_some() {}
            drain.tunnels_done().await;
        } => true,
        () = tokio::time::sleep_until(deadline) => false,
        _ = signals.recv() => false,
    };
    if !drained {
        drain.cut();
        conns.abort_all();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while conns.join_next().await.is_some() {}
            drain.tunnels_done().await;
        })
        .await;
    }
    drained
}

/// The `listening` record.
fn listening(cfg: &Config, local: SocketAddr, admin: Option<SocketAddr>) -> Record {
    Record {
        severity: Severity::Info,
        message: format!(
            "sockproxy {} listening on {local}, upstream {}",
            env!("CARGO_PKG_VERSION"),
            cfg.upstream
        ),
        event: Event::Listening(Listening {
            listen: local.to_string(),
            admin: admin.map(|a| a.to_string()),
            upstream: cfg.upstream.to_string(),
            version: env!("CARGO_PKG_VERSION"),
            sio_path: cfg.sio_path.clone(),
            log_all: cfg.log_all,
            drain_timeout_s: cfg.drain_timeout.as_secs_f64(),
        }),
    }
}

/// The `stopped` record.
fn stopped(summary: &Summary, uptime: Duration, records_dropped: u64) -> Record {
    let drained = summary.drained;
    Record {
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
            uptime_s: (uptime.as_millis() as f64) / 1000.0,
            records_dropped,
        }),
    }
}
