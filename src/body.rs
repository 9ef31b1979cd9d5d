//! Wraps the bodies: counts bytes, and fires the exchange's record at end or on drop.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::drain::Token;
use crate::exchange::Guard;
use crate::record::Outcome;
use crate::upstream::Lease;

/// How far the client got with its request body.
#[derive(Debug, Default)]
pub struct RequestProgress {
    bytes: AtomicU64,
    failed: AtomicBool,
}

impl RequestProgress {
    /// Body bytes received from the client so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// True when reading the body from the client failed (the client went away
    /// mid-body): a failed exchange is then the client's doing, not the upstream's.
    pub fn client_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
}

/// The request body on its way to the upstream, counted into `bytes_in`.
pub struct RequestBody {
    inner: Incoming,
    progress: Arc<RequestProgress>,
}

impl RequestBody {
    /// Reports into `progress` as the body streams.
    pub fn new(inner: Incoming, progress: Arc<RequestProgress>) -> Self {
        RequestBody { inner, progress }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    self.progress
                        .bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            Some(Err(_)) => self.progress.failed.store(true, Ordering::Relaxed),
            None => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The body sent to the client: the upstream's, or one sockproxy wrote itself.
pub struct ResponseBody {
    kind: Kind,
    /// Counts the exchange as in flight (for `draining`) until the body is done.
    token: Option<Token>,
}

enum Kind {
    Proxied {
        inner: Incoming,
        guard: Option<Guard>,
        /// The upstream connection, back to the pool when the body has ended.
        lease: Option<Lease>,
    },
    Own(Option<Bytes>),
}

impl ResponseBody {
    /// The upstream's body; `guard` (if the exchange is recorded) is finished when the
    /// body ends, or dropped with it when the client goes away first.
    pub fn proxied(inner: Incoming, guard: Option<Guard>, token: Token, lease: Lease) -> Self {
        let mut body = ResponseBody {
            kind: Kind::Proxied {
                inner,
                guard,
                lease: Some(lease),
            },
            token: Some(token),
        };
        body.finish_if_ended();
        body
    }

    /// A body sockproxy wrote itself (a 502 page), or none.
    pub fn own(bytes: Option<Bytes>) -> Self {
        ResponseBody {
            kind: Kind::Own(bytes.filter(|b| !b.is_empty())),
            token: None,
        }
    }

    /// hyper stops polling once `is_end_stream` says so: write the record then.
    fn finish_if_ended(&mut self) {
        if let Kind::Proxied {
            inner,
            guard,
            lease,
        } = &mut self.kind
            && inner.is_end_stream()
        {
            ended(lease, guard);
        }
        if self.is_end_stream() {
            self.token = None;
        }
    }
}

/// The upstream body ended: its connection may carry the next request, and the
/// exchange's record is written as complete.
fn ended(lease: &mut Option<Lease>, guard: &mut Option<Guard>) {
    if let Some(l) = lease.take() {
        l.release();
    }
    if let Some(g) = guard.take() {
        g.finish(Outcome::Complete);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        match &mut this.kind {
            Kind::Own(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Proxied {
                inner,
                guard,
                lease,
            } => {
                let frame = ready!(Pin::new(inner).poll_frame(cx));
                match &frame {
                    // Trailers end the body; hyper polls no further after them.
                    Some(Ok(f)) if f.is_trailers() => ended(lease, guard),
                    Some(Ok(f)) => {
                        if let (Some(data), Some(g)) = (f.data_ref(), guard.as_mut()) {
                            g.on_body(data);
                        }
                    }
                    Some(Err(e)) => {
                        if let Some(mut g) = guard.take() {
                            g.draft().upstream_error = Some(format!("upstream body: {e}"));
                            g.finish(Outcome::UpstreamError);
                        }
                    }
                    None => ended(lease, guard),
                }
                this.finish_if_ended();
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Own(bytes) => bytes.is_none(),
            Kind::Proxied { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Own(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Proxied { inner, .. } => inner.size_hint(),
        }
    }
}
