//! The bodies on their way: the request's counted into its record, the response's
//! ending its record (and returning its upstream connection) when it ends.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::drain::Token;
use crate::record::Outcome;
use crate::recorder::{Recording, RequestProgress};
use crate::upstream::Lease;

/// The request body on its way to the upstream, counted into `bytes_in`.
pub(crate) struct RequestBody {
    inner: Incoming,
    progress: Arc<RequestProgress>,
}

impl RequestBody {
    /// Reports into `progress` as the body streams.
    pub(crate) fn new(inner: Incoming, progress: Arc<RequestProgress>) -> Self {
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
                    self.progress.add(data.len());
                }
            }
            Some(Err(_)) => self.progress.fail(),
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
pub(crate) struct ResponseBody {
    kind: Kind,
    /// Counts the exchange as in flight (for `draining`) until the body is done.
    token: Option<Token>,
}

enum Kind {
    Proxied {
        inner: Incoming,
        recording: Option<Recording>,
        /// The upstream connection, back to the pool when the body has ended.
        lease: Option<Lease<RequestBody>>,
    },
    Own(Option<Bytes>),
}

impl ResponseBody {
    /// The upstream's body; `recording` is finished when the body ends, or dropped with
    /// it when the client goes away first.
    pub(crate) fn proxied(
        inner: Incoming,
        recording: Recording,
        token: Token,
        lease: Lease<RequestBody>,
    ) -> Self {
        let mut body = ResponseBody {
            kind: Kind::Proxied {
                inner,
                recording: Some(recording),
                lease: Some(lease),
            },
            token: Some(token),
        };
        body.finish_if_ended();
        body
    }

    /// A body sockproxy wrote itself (a 502 page), or none.
    pub(crate) fn own(bytes: Option<Bytes>) -> Self {
        ResponseBody {
            kind: Kind::Own(bytes.filter(|b| !b.is_empty())),
            token: None,
        }
    }

    /// hyper stops polling once `is_end_stream` says so: write the record then.
    fn finish_if_ended(&mut self) {
        if let Kind::Proxied {
            inner,
            recording,
            lease,
        } = &mut self.kind
            && inner.is_end_stream()
        {
            ended(lease, recording);
        }
        if self.is_end_stream() {
            self.token = None;
        }
    }
}

/// The upstream body ended: its connection may carry the next request, and the
/// exchange's record is written as complete.
fn ended(lease: &mut Option<Lease<RequestBody>>, recording: &mut Option<Recording>) {
    if let Some(l) = lease.take() {
        l.release();
    }
    if let Some(r) = recording.take() {
        r.finish(Outcome::Complete);
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
                recording,
                lease,
            } => {
                let frame = ready!(Pin::new(inner).poll_frame(cx));
                match &frame {
                    // Trailers end the body; hyper polls no further after them.
                    Some(Ok(f)) if f.is_trailers() => ended(lease, recording),
                    Some(Ok(f)) => {
                        if let (Some(data), Some(r)) = (f.data_ref(), recording.as_mut()) {
                            r.on_body(data);
                        }
                    }
                    Some(Err(e)) => {
                        if let Some(r) = recording.take() {
                            r.body_failed(e);
                        }
                    }
                    None => ended(lease, recording),
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
