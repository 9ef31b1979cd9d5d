//! The upstream side: HTTP/1.1 connections to `--upstream`, kept alive in one pool.
//!
//! Built on hyper's own client connection (`hyper::client::conn::http1`) rather than
//! hyper-util's general-purpose pooled client, which per request locks and hashes a
//! map of pools keyed by scheme and host, and spawns a task to put the connection back
//! once it is ready again. Here there is one upstream, so the pool is one stack of
//! idle connections behind a mutex, and a connection goes back onto it when its
//! response body has ended (the body wrapper holds its [`Lease`]).
//!
//! What it keeps from hyper-util's client: a request that a reused connection closed
//! before writing it (the upstream ended the keep-alive at that moment) is sent again
//! on another connection; connections idle for [`UPSTREAM_POOL_IDLE`] are not reused
//! (Node's `keepAliveTimeout` is 5 s: staying below it avoids racing its close).

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use crate::body::RequestBody;
use crate::config::{UPSTREAM_MAX_HEADERS, UPSTREAM_POOL_IDLE};

/// Most idle connections kept (beyond it, the least recently used is closed).
const MAX_IDLE: usize = 1024;

/// Drops closed and expired connections from the old end (closing them), so an idle
/// pool does not keep upstream sockets open past [`UPSTREAM_POOL_IDLE`] once traffic
/// comes again.
fn prune(idle: &mut VecDeque<Idle>, now: Instant) {
    while idle
        .front()
        .is_some_and(|e| e.tx.is_closed() || now.duration_since(e.since) >= UPSTREAM_POOL_IDLE)
    {
        idle.pop_front();
    }
}

/// Why an upstream exchange failed before a response head arrived.
#[derive(Debug)]
pub enum Failure {
    /// The TCP connect failed or timed out (`io::ErrorKind::TimedOut`).
    Connect(io::Error),
    /// Connected, but the exchange failed (HTTP handshake, write, or no response).
    Exchange(hyper::Error),
}

/// The pool of connections to the one upstream.
pub struct Upstream {
    authority: Authority,
    connect_timeout: Duration,
    /// Oldest first: checkouts take from the back (most recently used), expired
    /// connections are dropped from the front.
    idle: Mutex<VecDeque<Idle>>,
}

struct Idle {
    tx: SendRequest<RequestBody>,
    since: Instant,
}

/// A connection lent to one exchange. [`Lease::release`] puts it back once the
/// response has ended; dropped instead (the client left mid-body), the connection is
/// closed by hyper, as its response was not read to the end.
pub struct Lease {
    tx: SendRequest<RequestBody>,
    pool: Arc<Upstream>,
}

impl Lease {
    /// The response ended: the connection may carry the next request.
    pub fn release(self) {
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
            since: now,
        });
    }
}

impl Upstream {
    pub fn new(authority: Authority, connect_timeout: Duration) -> Arc<Self> {
        Arc::new(Upstream {
            authority,
            connect_timeout,
            idle: Mutex::new(VecDeque::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        // Nothing panics while holding the lock; a poisoned pool is still a valid pool.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `req` (origin-form target) on a pooled or new connection. The lease
    /// comes back with the response; for a `101` the connection belongs to the
    /// upgrade and the lease is simply dropped.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Lease), Failure> {
        loop {
            let (mut tx, reused) = match self.checkout() {
                Some(tx) => (tx, true),
                None => (self.connect().await?, false),
            };
            // (A new connection takes its first request before its task has run.)
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let lease = Lease {
                        tx,
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

    /// The most recently used idle connection that can take a request now. Closed
    /// and expired ones are dropped on the way (closing them).
    fn checkout(&self) -> Option<SendRequest<RequestBody>> {
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
                found = Some(entry.tx);
                break;
            }
            // Still finishing its last exchange (a request body going up after an
            // early answer): keep it for later.
            busy.push(entry);
        }
        idle.extend(busy.into_iter().rev());
        found
    }

    async fn connect(&self) -> Result<SendRequest<RequestBody>, Failure> {
        let stream = crate::connect::tcp(&self.authority, self.connect_timeout)
            .await
            .map_err(Failure::Connect)?;
        let (tx, conn) = http1::Builder::new()
            .preserve_header_case(true)
            .max_headers(UPSTREAM_MAX_HEADERS)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(Failure::Exchange)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(tx)
    }
}
