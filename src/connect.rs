//! The upstream connector: a plain TCP connect to `--upstream` and nothing more.
//!
//! hyper-util's `HttpConnector` also asks the kernel for both socket addresses of every
//! new connection (`getpeername`, `getsockname`), switches the socket to non-blocking
//! with two `fcntl`s, and attaches those addresses to every response (an allocation
//! per request). sockproxy uses none of that: tokio's connect opens the socket
//! non-blocking, and the connection reports no extra information.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Connects to the authority of the request URI (always `--upstream`), with
/// `TCP_NODELAY` and a connect timeout.
#[derive(Clone, Debug)]
pub struct Connector {
    timeout: Duration,
}

impl Connector {
    pub fn new(timeout: Duration) -> Self {
        Connector { timeout }
    }
}

/// One upstream TCP connection, as hyper's client drives it.
#[derive(Debug)]
pub struct Upstream(TokioIo<TcpStream>);

impl Upstream {
    /// The TCP stream (for the tunnel, after an upgrade).
    pub fn into_tcp(self) -> TcpStream {
        self.0.into_inner()
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = Upstream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Upstream>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let timeout = self.timeout;
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no upstream host"))?;
            // `[::1]` in a URI is `::1` to the resolver.
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            let port = uri.port_u16().unwrap_or(80);
            let connect = TcpStream::connect((host, port));
            let stream = match tokio::time::timeout(timeout, connect).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
                }
            };
            stream.set_nodelay(true)?;
            Ok(Upstream(TokioIo::new(stream)))
        })
    }
}

impl Connection for Upstream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for Upstream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl Write for Upstream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}
