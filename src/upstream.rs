//! The upstream side: HTTP/1.1 connections to `--upstream`, kept alive in one pool.
//!
//! Built on hyper's own client connection (`hyper::client::conn::http1`) rather than
//! hyper-util's general-purpose pooled client, which per request locks and hashes a
//! map of pools keyed by scheme and host, and spawns a task to put the connection back
//! once it is ready again. Here there is one upstream, so the pool is one stack of
//! idle connections behind a mutex, and a connection goes back onto it when its
//! response body has ended (the body wrapper holds its [`Lease`]).
//!
//! A request is never sent twice once any of it may have reached theia (engine.io
//! answers an overlapping poll or POST with 400 and closes the session). Before an idle
//! connection is reused, the kernel is asked whether the upstream has closed it (a
//! non-blocking peek): hyper's connection task may not have seen that end yet, and
//! would write the request into a socket theia has already closed. A request hyper
//! hands back unwritten (the connection closed before it left) is sent on another
//! connection, as hyper-util's client does. One that was written is not: when the
//! connection then closes without an answer, the exchange fails (502) even when theia
//! closed it before reading, since sockproxy cannot tell that from theia failing
//! after acting on it. Connections idle for [`UPSTREAM_POOL_IDLE`] are not reused
//! (Node's `keepAliveTimeout` is 5 s: staying below it avoids racing its close).

use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::limits::{UPSTREAM_MAX_HEADERS, UPSTREAM_POOL_IDLE};

/// Most idle connections kept (beyond it, the least recently used is closed).
const MAX_IDLE: usize = 1024;

/// Drops closed and expired connections from the old end (closing them), so an idle
/// pool does not keep upstream sockets open past [`UPSTREAM_POOL_IDLE`] once traffic
/// comes again.
fn prune<B>(idle: &mut VecDeque<Idle<B>>, now: Instant) {
    while idle
        .front()
        .is_some_and(|e| e.tx.is_closed() || now.duration_since(e.since) >= UPSTREAM_POOL_IDLE)
    {
        idle.pop_front();
    }
}

/// Why an upstream exchange failed before a response head arrived.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The TCP connect failed or timed out (`io::ErrorKind::TimedOut`).
    Connect(io::Error),
    /// Connected, but the exchange failed (HTTP handshake, write, or no response).
    Exchange(hyper::Error),
}

/// The pool of connections to the one upstream, sending request bodies of type `B`.
pub(crate) struct Upstream<B> {
    authority: Authority,
    connect_timeout: Duration,
    /// Oldest first: checkouts take from the back (most recently used), expired
    /// connections are dropped from the front.
    idle: Mutex<VecDeque<Idle<B>>>,
}

struct Idle<B> {
    tx: SendRequest<B>,
    socket: Probe,
    since: Instant,
}

/// A connection lent to one exchange. [`Lease::release`] puts it back once the
/// response has ended; dropped instead (the client left mid-body), the connection is
/// closed by hyper, as its response was not read to the end.
pub(crate) struct Lease<B> {
    tx: SendRequest<B>,
    socket: Probe,
    pool: Arc<Upstream<B>>,
}

impl<B> Lease<B> {
    /// The response ended: the connection may carry the next request.
    pub(crate) fn release(self) {
        if self.tx.is_closed() {
            return;
        }
        let mut idle = self.pool.lock();
        let now = Instant::now();
        prune(&mut idle, now);
        if idle.len() >= MAX_IDLE {
            idle.pop_front(); // the least recently used goes; the fresh one stays
        }
        idle.push_back(Idle {
            tx: self.tx,
            socket: self.socket,
            since: now,
        });
    }
}

impl<B> Upstream<B> {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle<B>>> {
        // Nothing panics while holding the lock; a poisoned pool is still a valid pool.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<B> Upstream<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub(crate) fn new(authority: Authority, connect_timeout: Duration) -> Arc<Self> {
        Arc::new(Upstream {
            authority,
            connect_timeout,
            idle: Mutex::new(VecDeque::new()),
        })
    }

    /// Sends `req` (origin-form target) on a pooled or new connection. The lease
    /// comes back with the response; for a `101` the connection belongs to the
    /// upgrade and the lease is simply dropped.
    pub(crate) async fn send(
        self: &Arc<Self>,
        mut req: Request<B>,
    ) -> Result<(Response<Incoming>, Lease<B>), Failure> {
        loop {
            let ((mut tx, socket), reused) = match self.checkout() {
                Some(conn) => (conn, true),
                None => (self.connect().await?, false),
            };
            // (A new connection takes its first request before its task has run.)
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let lease = Lease {
                        tx,
                        socket,
                        pool: self.clone(),
                    };
                    return Ok((resp, lease));
                }
                Err(mut e) => match e.take_message() {
                    // Never written: the connection closed first. Another one.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(Failure::Exchange(e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection that can take a request now and that
    /// the upstream has not closed. Closed and expired ones are dropped on the way
    /// (closing them).
    fn checkout(&self) -> Option<(SendRequest<B>, Probe)> {
        loop {
            let entry = self.ready_entry()?;
            // Outside the pool's lock: one system call.
            if entry.socket.is_open_and_quiet() {
                return Some((entry.tx, entry.socket));
            }
        }
    }

    /// Takes the most recently used idle connection that hyper considers ready.
    fn ready_entry(&self) -> Option<Idle<B>> {
        let mut idle = self.lock();
        let now = Instant::now();
        prune(&mut idle, now);
        let mut busy = Vec::new();
        let mut found = None;
        while let Some(entry) = idle.pop_back() {
            if entry.tx.is_closed() || now.duration_since(entry.since) >= UPSTREAM_POOL_IDLE {
                continue;
            }
            if entry.tx.is_ready() {
                found = Some(entry);
                break;
            }
            // Still finishing its last exchange (a request body going up after an
            // early answer): keep it for later.
            busy.push(entry);
        }
        idle.extend(busy.into_iter().rev());
        found
    }

    async fn connect(&self) -> Result<(SendRequest<B>, Probe), Failure> {
        let stream = crate::connect::tcp(&self.authority, self.connect_timeout)
            .await
            .map_err(Failure::Connect)?;
        let (io, socket) = UpstreamIo::new(stream);
        let (tx, conn) = http1::Builder::new()
            .preserve_header_case(true)
            .max_headers(UPSTREAM_MAX_HEADERS)
            .handshake(TokioIo::new(io))
            .await
            .map_err(Failure::Exchange)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok((tx, socket))
    }
}

/// An upstream connection's socket as hyper uses it: a TCP stream it owns, which the
/// pool can still look at through a [`Probe`].
pub(crate) struct UpstreamIo {
    stream: Arc<TcpStream>,
}

/// The pool's look at a connection's socket. It never keeps the socket open: once
/// hyper drops the connection, the socket closes and the probe finds nothing.
pub(crate) struct Probe(Weak<TcpStream>);

impl UpstreamIo {
    fn new(stream: TcpStream) -> (UpstreamIo, Probe) {
        let stream = Arc::new(stream);
        let probe = Probe(Arc::downgrade(&stream));
        (UpstreamIo { stream }, probe)
    }

    /// The TCP stream, once hyper has given the connection up (an upgrade); `Err`
    /// gives the wrapper back if a probe happens to be looking at it right then.
    pub(crate) fn into_stream(self) -> Result<TcpStream, UpstreamIo> {
        Arc::try_unwrap(self.stream).map_err(|stream| UpstreamIo { stream })
    }
}

impl Probe {
    /// True when the socket is open and nothing arrived on it: no end-of-stream or
    /// reset from the upstream (and no bytes nobody asked for). Asks the kernel
    /// directly: tokio's readiness, which hyper goes by, may not have caught up yet.
    fn is_open_and_quiet(&self) -> bool {
        let Some(stream) = self.0.upgrade() else {
            return false;
        };
        let mut byte = [MaybeUninit::uninit()];
        // The socket is non-blocking (tokio's): nothing to read is `WouldBlock`.
        match socket2::SockRef::from(&*stream).peek(&mut byte) {
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            Ok(_) => false, // 0: end-of-stream; more: unexpected bytes
        }
    }
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            // `try_read_buf` clears the readiness when the socket has nothing more.
            match self.stream.try_read_buf(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r.map(|_| ())),
            }
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            match self.stream.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            match self.stream.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(())) // TCP writes are not buffered here
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.stream).shutdown(std::net::Shutdown::Write))
    }
}
