//! The upstream TCP connect: to `--upstream` and nothing more.
//!
//! tokio opens the socket non-blocking in one call; nothing asks the kernel for the
//! connection's addresses (hyper-util's `HttpConnector` does, twice per connection,
//! and switches the socket to non-blocking with two more calls).

use std::io;
use std::time::Duration;

use http::uri::Authority;
use tokio::net::TcpStream;

/// Connects to `authority` with `TCP_NODELAY`, giving up after `timeout` with
/// `io::ErrorKind::TimedOut`. A host name is resolved on each connect.
pub(crate) async fn tcp(authority: &Authority, timeout: Duration) -> io::Result<TcpStream> {
    let host = authority.host();
    // `[::1]` in an authority is `::1` to the resolver.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = authority.port_u16().unwrap_or(80);
    let stream = match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
        }
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}
