//! The client socket as hyper's server writes to it: a status line hyper re-versions goes
//! out with the version theia wrote.
//!
//! hyper's server writes `HTTP/1.0` on every response to an HTTP/1.0 request (it
//! speaks the client's version), and it writes a body without `Content-Length` or
//! `Transfer-Encoding` close-delimited only in an HTTP/1.0 response: otherwise it adds
//! `transfer-encoding: chunked`. sockproxy hands such responses to hyper as HTTP/1.0
//! and arms a [`StatusLineFix`] first: the next response head's first nine bytes,
//! `HTTP/1.0 `, go out as `HTTP/1.1 ` (the same length, so hyper's counts stay exact).
//! The fix applies only when the head starts the write that hyper makes next; in the
//! pipelining corner where the tail of an earlier response is still unsent in front
//! of it, it is dropped and the status line says `HTTP/1.0`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::conn::ConnInfo;

/// What hyper writes for an HTTP/1.0 response, and what goes out instead.
const FROM: &[u8; 9] = b"HTTP/1.0 ";
const TO: &[u8; 9] = b"HTTP/1.1 ";

/// The client's TCP stream with the status-line fix applied on the way out.
pub(crate) struct ClientIo {
    stream: TcpStream,
    /// Where exchanges arm the fix (`ConnInfo::status_line`).
    conn: Arc<ConnInfo>,
    /// While a fix is being written: how many bytes of [`TO`] are out.
    fixing: Option<usize>,
    /// The status of the last response head written since the client last sent
    /// bytes (0: none): after a request hyper refused, the answer it gave (400, 414,
    /// 431).
    last_status: u16,
}

impl ClientIo {
    /// Wraps the stream of client connection `conn`.
    pub(crate) fn new(stream: TcpStream, conn: Arc<ConnInfo>) -> Self {
        ClientIo {
            stream,
            conn,
            fixing: None,
            last_status: 0,
        }
    }

    /// The status of the last response head written to the client since it last
    /// sent bytes, if any.
    pub(crate) fn last_status(&self) -> Option<u16> {
        (self.last_status != 0).then_some(self.last_status)
    }

    /// Notes the status of a response head that `data`, the start of a write, begins.
    fn note_head(&mut self, data: &[u8]) {
        if let Some(status) = head_status(data) {
            self.last_status = status;
        }
    }

    /// The stream, to hand over to a tunnel or close.
    pub(crate) fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// The bytes of [`TO`] to write in place of the start of `data` (what hyper writes
    /// next), if a fix is due.
    fn due(&mut self, data: &[u8]) -> Option<&'static [u8]> {
        if self.fixing.is_none() {
            let status = self.conn.status_line.take()?;
            if !starts_head(data, status) {
                return None;
            }
            self.fixing = Some(0);
        }
        self.fixing.map(|at| &TO[at..])
    }

    /// `n` bytes of the fix went out.
    fn advance(&mut self, n: usize) {
        if let Some(at) = self.fixing.as_mut() {
            *at += n;
            if *at >= TO.len() {
                self.fixing = None;
            }
        }
    }

    fn poll_fix(
        &mut self,
        cx: &mut Context<'_>,
        fix: &'static [u8],
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let fix = &fix[..fix.len().min(len)];
        let n = ready!(Pin::new(&mut self.stream).poll_write(cx, fix))?;
        self.advance(n);
        Poll::Ready(Ok(n))
    }
}

/// The status of the response head `data` starts with (`HTTP/1.x NNN `).
fn head_status(data: &[u8]) -> Option<u16> {
    let head = data.get(..13)?;
    if !head.starts_with(b"HTTP/1.") || head[8] != b' ' || head[12] != b' ' {
        return None;
    }
    head[9..12].iter().try_fold(0u16, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + u16::from(d - b'0'))
    })
}

/// True when `data` starts with `HTTP/1.0 <status> `.
fn starts_head(data: &[u8], status: u16) -> bool {
    let mut want = [0u8; 13];
    want[..9].copy_from_slice(FROM);
    let digits = [
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ];
    want[9..12].copy_from_slice(&digits);
    want[12] = b' ';
    data.starts_with(&want)
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.note_head(buf);
        if let Some(fix) = this.due(buf) {
            return this.poll_fix(cx, fix, buf.len());
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // hyper writes a head as one slice.
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
        this.note_head(first);
        if let Some(fix) = this.due(first) {
            return this.poll_fix(cx, fix, first.len());
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.last_status = 0;
        }
        read
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_start_matches_status_and_version_only() {
        let cases: &[(&[u8], u16, bool)] = &[
            (b"HTTP/1.0 101 Switching Protocols\r\n", 101, true),
            (b"HTTP/1.0 400 Bad Request\r\n", 400, true),
            (b"HTTP/1.0 400 Bad Request\r\n", 404, false),
            (b"HTTP/1.1 400 Bad Request\r\n", 400, false),
            (b"ok\r\nHTTP/1.0 400 ", 400, false), // an earlier body's tail in front
            (b"HTTP/1.0 40", 400, false),
            (b"", 200, false),
        ];
        for (data, status, want) in cases {
            assert_eq!(
                starts_head(data, *status),
                *want,
                "{:?} {status}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn head_status_reads_a_status_line_only() {
        assert_eq!(head_status(b"HTTP/1.1 414 URI Too Long\r\n"), Some(414));
        assert_eq!(head_status(b"HTTP/1.0 431 Request"), Some(431));
        assert_eq!(head_status(b"HTTP/1.1 4x4 Nope\r\n"), None);
        assert_eq!(head_status(b"hello HTTP/1.1 400 "), None);
        assert_eq!(head_status(b"HTTP/1.1 400"), None);
    }
}
