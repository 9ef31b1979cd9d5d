//! Splices the two upgraded streams byte for byte, with counters; decides `closed_by`.
//!
//! Each direction copies until end-of-stream from its source, then shuts down the write
//! half of the other side (half-close travels through), and the tunnel ends when both
//! directions are done, when either side fails, or when shutdown says so. Counts are
//! taken after every write, so they stay exact when a side errors (unlike
//! `tokio::io::copy_bidirectional`, which loses them). An idle tunnel holds no copy
//! buffer: on plain TCP a direction waits for readiness first and takes a buffer only
//! while data is flowing.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tokio::io::Interest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::limits::{FRAME_PEEK_BYTES, TUNNEL_BUFFER_BYTES};
use crate::record::ClosedBy;
use crate::sio;
use crate::upstream::UpstreamIo;

/// What a finished splice reports.
#[derive(Debug)]
pub struct Spliced {
    pub client_to_upstream: u64,
    pub upstream_to_client: u64,
    pub closed_by: ClosedBy,
    pub error: Option<String>,
    /// The sid of the open packet in the first upstream frame (websocket-only handshake).
    pub sid: Option<String>,
    pub ended: Instant,
}

impl Spliced {
    /// A tunnel that never ran: one of its sockets did not arrive.
    pub(crate) fn failed(error: String) -> Self {
        Spliced {
            client_to_upstream: 0,
            upstream_to_client: 0,
            closed_by: ClosedBy::Error,
            error: Some(error),
            sid: None,
            ended: Instant::now(),
        }
    }
}

/// Splices `client` and `upstream` until both are done, one fails, `shutdown` resolves,
/// or (with `idle`) no byte moved either way for that long (`closed_by: idle_timeout`).
///
/// With `want_sid`, the first upstream→client frame is looked at (never changed) for an
/// engine.io open packet; `on_sid` is called as soon as one is found.
pub(crate) async fn splice(
    client: Side,
    upstream: Side,
    totals: [Counter; 2],
    want_sid: bool,
    on_sid: impl Fn(&str) + Send + Sync,
    shutdown: impl Future<Output = ()> + Send,
    idle: Option<Duration>,
) -> Spliced {
    let activity = Activity {
        opened: tokio::time::Instant::now(),
        last_ms: AtomicU64::new(0),
        tracked: idle.is_some(),
    };
    let (mut client_rd, mut client_wr, client_prefix) = open(client);
    let (mut upstream_rd, mut upstream_wr, upstream_prefix) = open(upstream);
    let counts = totals.map(|total| Count {
        own: AtomicU64::new(0),
        total,
    });
    let mut peek = want_sid.then(Peek::default);
    let ends = {
        let c2u = pump(
            &mut client_rd,
            &mut upstream_wr,
            ClosedBy::Client,
            ClosedBy::Upstream,
            Meter {
                count: &counts[0],
                activity: &activity,
            },
            client_prefix,
            None,
        );
        let u2c = pump(
            &mut upstream_rd,
            &mut client_wr,
            ClosedBy::Upstream,
            ClosedBy::Client,
            Meter {
                count: &counts[1],
                activity: &activity,
            },
            upstream_prefix,
            peek.as_mut().map(|p| (p, &on_sid as &OnSid<'_>)),
        );
        let idle_watch = activity.idle_for(idle);
        // Pinned here and lent to `race`: moved into it by value, they would be stored
        // twice in this future's state (measured: +1.4 KiB per idle tunnel).
        tokio::pin!(c2u, u2c, shutdown, idle_watch);
        race(c2u, u2c, shutdown, idle_watch).await
    };
    let (first, failed) = (ends.first, ends.failed);
    // A side that aborted (RST) is aborted on the other side too, as the direct path
    // would show it; any other end closes normally (FIN) when the halves drop.
    if let Some((side, kind)) = failed
        && is_abort(kind)
    {
        match side {
            ClosedBy::Client => abort(upstream_rd, upstream_wr),
            _ => abort(client_rd, client_wr),
        }
    }
    let (closed_by, error) =
        first.unwrap_or((ClosedBy::Error, Some("tunnel ended without cause".into())));
    Spliced {
        client_to_upstream: counts[0].own.load(Ordering::Relaxed),
        upstream_to_client: counts[1].own.load(Ordering::Relaxed),
        closed_by,
        error,
        sid: peek.and_then(|p| p.sid),
        ended: Instant::now(),
    }
}

/// How a tunnel's two directions ended.
#[derive(Default)]
struct Ends {
    /// The first end: who (or what) ended the tunnel, with the error if one did.
    first: Option<(ClosedBy, Option<String>)>,
    /// The side whose failure ended the tunnel, and how.
    failed: Option<(ClosedBy, io::ErrorKind)>,
}

/// Runs both directions until both are done, one fails, `shutdown` resolves or the
/// tunnel has been idle too long (`idle_watch`).
async fn race(
    mut c2u: Pin<&mut impl Future<Output = End>>,
    mut u2c: Pin<&mut impl Future<Output = End>>,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
    mut idle_watch: Pin<&mut impl Future<Output = ()>>,
) -> Ends {
    let mut ends = Ends::default();
    let (mut c2u_done, mut u2c_done) = (false, false);
    while !(c2u_done && u2c_done) {
        let ended = tokio::select! {
            r = &mut c2u, if !c2u_done => { c2u_done = true; r }
            r = &mut u2c, if !u2c_done => { u2c_done = true; r }
            () = &mut shutdown => {
                ends.first.get_or_insert((ClosedBy::Shutdown, None));
                break;
            }
            () = &mut idle_watch => {
                ends.first.get_or_insert((ClosedBy::IdleTimeout, None));
                break;
            }
        };
        match ended {
            End::Eof(side) => {
                ends.first.get_or_insert((side, None));
            }
            End::Failed(side, e) => {
                ends.failed = Some((side, e.kind()));
                ends.first.get_or_insert((side, Some(e.to_string())));
                break;
            }
        }
    }
    ends
}

/// True for the errors that mean the peer aborted the connection (it sent an RST):
/// a reset on read, or on a write the reset broke.
fn is_abort(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Closes a side with an RST (`SO_LINGER` 0, and no FIN first): whatever is still
/// unsent to it is discarded, as the reset that came from the other side discarded it
/// there. Only a TCP side can be reset; another is dropped (closed normally).
fn abort(rd: Reader, wr: Writer) {
    if let (Reader::Tcp(rd), Writer::Tcp(wr)) = (rd, wr)
        && let Ok(stream) = rd.reunite(wr)
        && let Err(e) = stream.set_zero_linger()
    {
        tracing::debug!(error = %e, "could not set SO_LINGER 0: closing with FIN");
    }
}

/// Called with the sid of the open packet once it is found.
type OnSid<'a> = dyn Fn(&str) + Send + Sync + 'a;

enum End {
    /// End-of-stream from this side; the other side's write half was shut down.
    Eof(ClosedBy),
    /// This side failed (reset, broken pipe …); the tunnel ends.
    Failed(ClosedBy, io::Error),
}

/// Copies one direction. `from` names the reading side, `to` the writing side.
async fn pump(
    rd: &mut Reader,
    wr: &mut Writer,
    from: ClosedBy,
    to: ClosedBy,
    meter: Meter<'_>,
    prefix: Bytes,
    mut peek: Option<(&mut Peek, &OnSid<'_>)>,
) -> End {
    if !prefix.is_empty() {
        if let Some((p, on_sid)) = peek.as_mut() {
            p.look(&prefix, *on_sid);
        }
        meter.activity.touch();
        if let Err(e) = write_counted(wr, &prefix, meter).await {
            return End::Failed(to, e);
        }
    }
    let mut buf: Vec<u8> = Vec::new();
    loop {
        match rd.read(&mut buf).await {
            Ok(0) => {
                // Half-close: pass the end-of-stream on; the other direction goes on.
                let _ = wr.shutdown().await;
                return End::Eof(from);
            }
            Ok(_) => {}
            Err(e) => return End::Failed(from, e),
        }
        if let Some((p, on_sid)) = peek.as_mut() {
            p.look(&buf, *on_sid);
            if p.done {
                peek = None;
            }
        }
        meter.activity.touch();
        if let Err(e) = write_counted(wr, &buf, meter).await {
            return End::Failed(to, e);
        }
        buf.clear();
    }
}

/// What one direction updates as bytes move.
#[derive(Clone, Copy)]
struct Meter<'a> {
    count: &'a Count,
    activity: &'a Activity,
}

/// When a byte last moved either way, for `--tunnel-idle-timeout` (the clock is read
/// only when the timeout is on).
struct Activity {
    opened: tokio::time::Instant,
    /// Milliseconds from `opened` to the last read that carried data.
    last_ms: AtomicU64,
    tracked: bool,
}

impl Activity {
    fn touch(&self) {
        if self.tracked {
            let ms = self.opened.elapsed().as_millis() as u64;
            self.last_ms.store(ms, Ordering::Relaxed);
        }
    }

    /// Resolves once nothing moved for `idle`; never without one.
    async fn idle_for(&self, idle: Option<Duration>) {
        let Some(idle) = idle else {
            return std::future::pending().await;
        };
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let due = self.opened + last + idle;
            if tokio::time::Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// One direction's bytes: this tunnel's, and the process total for `/metrics`.
struct Count {
    own: AtomicU64,
    total: Counter,
}

/// Writes all of `data`, counting each write; a write that makes progress is activity
/// too (a slow peer draining a large read is not an idle tunnel).
async fn write_counted(wr: &mut Writer, mut data: &[u8], meter: Meter<'_>) -> io::Result<()> {
    while !data.is_empty() {
        let n = wr.write(data).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        meter.count.own.fetch_add(n as u64, Ordering::Relaxed);
        meter.count.total.inc_by(n as u64);
        meter.activity.touch();
        data = &data[n..];
    }
    Ok(())
}

/// Collects the start of the upstream stream until the open packet is found or ruled out.
#[derive(Default)]
struct Peek {
    bytes: Vec<u8>,
    sid: Option<String>,
    done: bool,
}

impl Peek {
    fn look(&mut self, data: &[u8], on_sid: &OnSid<'_>) {
        if self.done {
            return;
        }
        let room = FRAME_PEEK_BYTES.saturating_sub(self.bytes.len());
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
        match sio::first_frame_sid(&self.bytes) {
            Ok(Some(sid)) => {
                on_sid(&sid);
                self.sid = Some(sid);
                self.done = true;
            }
            Ok(None) if self.bytes.len() < FRAME_PEEK_BYTES => {}
            _ => self.done = true,
        }
        if self.done {
            self.bytes = Vec::new();
        }
    }
}

/// A stream that is not a plain TCP one (kept for completeness: both sides are TCP).
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

enum Reader {
    Tcp(OwnedReadHalf),
    Other(ReadHalf<Box<dyn Stream>>),
}

enum Writer {
    Tcp(OwnedWriteHalf),
    Other(WriteHalf<Box<dyn Stream>>),
}

/// One side of a tunnel, as it comes from hyper.
pub(crate) enum Side {
    /// The client's socket, taken from its server connection after the 101, with the
    /// bytes hyper had already read past the request head.
    Tcp { stream: TcpStream, early: Bytes },
    /// An upgraded hyper connection (the upstream's).
    Upgraded(Upgraded),
}

/// Takes a side apart: the plain TCP stream when it is one (the client's always, the
/// upstream's when hyper's upgrade is over TCP), plus the bytes hyper had already read
/// past the HTTP head.
fn open(side: Side) -> (Reader, Writer, Bytes) {
    let (tcp, read_buf) = match side {
        Side::Tcp { stream, early } => (stream, early),
        Side::Upgraded(up) => match up.downcast::<TokioIo<UpstreamIo>>() {
            Ok(parts) => match parts.io.into_inner().into_stream() {
                Ok(tcp) => (tcp, parts.read_buf),
                Err(io) => {
                    let (rd, wr) = tokio::io::split(Box::new(io) as Box<dyn Stream>);
                    let early = Bytes::copy_from_slice(&parts.read_buf);
                    return (Reader::Other(rd), Writer::Other(wr), early);
                }
            },
            Err(up) => {
                // (The upgraded stream gives the bytes read past the head first.)
                let (rd, wr) = tokio::io::split(Box::new(TokioIo::new(up)) as Box<dyn Stream>);
                return (Reader::Other(rd), Writer::Other(wr), Bytes::new());
            }
        },
    };
    let (rd, wr) = tcp.into_split();
    // `read_buf` is a view into hyper's read buffer (8 KiB or more): copy the few early
    // bytes out so that buffer is freed now, not when the tunnel ends.
    let early = Bytes::copy_from_slice(&read_buf);
    (Reader::Tcp(rd), Writer::Tcp(wr), early)
}

impl Reader {
    /// Reads into `buf` (empty on entry); `Ok(0)` is end-of-stream.
    async fn read(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Reader::Tcp(rd) => loop {
                if buf.capacity() == 0 {
                    rd.readable().await?;
                    buf.reserve_exact(TUNNEL_BUFFER_BYTES);
                }
                // A read that leaves room in the buffer has drained the socket: say so
                // to tokio (a `WouldBlock` answer inside `try_io` clears the readiness),
                // so the next read waits for new data instead of spending a system call
                // to find nothing, as nginx does. Data arriving meanwhile sets the
                // readiness again (tokio compares event ticks, so none is lost).
                let mut drained = None;
                let read = rd.as_ref().try_io(Interest::READABLE, || {
                    let room = buf.capacity() - buf.len();
                    match rd.try_read_buf(buf)? {
                        n if n > 0 && n < room => {
                            drained = Some(n);
                            Err(io::ErrorKind::WouldBlock.into())
                        }
                        n => Ok(n),
                    }
                });
                match (read, drained) {
                    (_, Some(n)) => return Ok(n),
                    (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Idle: give the buffer back until data arrives again.
                        *buf = Vec::new();
                    }
                    (other, None) => return other,
                }
            },
            Reader::Other(rd) => {
                if buf.capacity() == 0 {
                    buf.reserve_exact(TUNNEL_BUFFER_BYTES);
                }
                rd.read_buf(buf).await
            }
        }
    }
}

impl Writer {
    async fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Writer::Tcp(wr) => wr.write(data).await,
            Writer::Other(wr) => wr.write(data).await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Writer::Tcp(wr) => wr.shutdown().await,
            Writer::Other(wr) => wr.shutdown().await,
        }
    }
}
