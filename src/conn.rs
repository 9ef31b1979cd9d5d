//! A client connection: who it is, its place under `--max-connections`, and what its
//! exchanges tell the connection task (a status line to re-version, a socket to hand
//! to a tunnel after a 101).
//!
//! Lifetime: the accept loop takes a [`Slot`] and makes one [`ConnInfo`] per accepted
//! connection; every exchange on it shares the `Arc`, and a tunnel the connection
//! became keeps it until the tunnel's record is written. The slot is freed when the
//! last of those lets go.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use crate::memory::Bursts;

/// The client side of a connection as records name it.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The connection's number in this process (`conn`), from 1.
    pub conn: u64,
    /// `ip:port` of the peer (nginx), as text (`client`).
    pub client: String,
    /// The peer's IP as text: `httpRequest.remoteIp` without `X-Forwarded-For`.
    pub client_ip: String,
}

impl Peer {
    /// Connection `conn` from `client`, its texts made once for every record.
    pub fn new(conn: u64, client: SocketAddr) -> Self {
        let (client, client_ip) = addr_text(client);
        Peer {
            conn,
            client,
            client_ip,
        }
    }
}

/// `ip:port` and `ip` of a client address, as `Display` writes them; IPv4 (nginx on
/// loopback, every connection) without `core::fmt`, which costs ~3 k instructions per
/// connection.
fn addr_text(addr: SocketAddr) -> (String, String) {
    let SocketAddr::V4(v4) = addr else {
        return (addr.to_string(), addr.ip().to_string());
    };
    let mut digits = itoa::Buffer::new();
    let mut ip = String::with_capacity(15);
    for (i, octet) in v4.ip().octets().iter().enumerate() {
        if i > 0 {
            ip.push('.');
        }
        ip.push_str(digits.format(*octet));
    }
    let mut full = String::with_capacity(ip.len() + 6);
    full.push_str(&ip);
    full.push(':');
    full.push_str(digits.format(v4.port()));
    (full, ip)
}

/// One client connection, shared by its exchanges and any tunnel it became; holds its
/// `--max-connections` slot until all of them are gone.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub(crate) peer: Peer,
    requests: AtomicU64,
    /// Armed by an exchange whose response hyper would write with another version.
    pub(crate) status_line: StatusLineFix,
    /// Set by an exchange that answered 101: where the connection's socket goes once
    /// hyper has written the 101.
    handoff: Mutex<Option<oneshot::Sender<Handoff>>>,
    _slot: Slot,
}

/// A client socket handed over to a tunnel after the 101, with the bytes hyper had
/// already read past the request head.
#[derive(Debug)]
pub(crate) struct Handoff {
    pub(crate) stream: TcpStream,
    pub(crate) early: Bytes,
}

impl ConnInfo {
    pub(crate) fn new(conn: u64, addr: SocketAddr, slot: Slot) -> Self {
        ConnInfo {
            peer: Peer::new(conn, addr),
            requests: AtomicU64::new(0),
            status_line: StatusLineFix::default(),
            handoff: Mutex::new(None),
            _slot: slot,
        }
    }

    /// Called by the exchange that is about to answer 101: the connection's socket
    /// arrives on the receiver once hyper has written the answer, or the receiver
    /// fails if the connection ends first.
    pub(crate) fn expect_handoff(&self) -> oneshot::Receiver<Handoff> {
        let (tx, rx) = oneshot::channel();
        *self.lock_handoff() = Some(tx);
        rx
    }

    /// Gives the socket to the tunnel waiting for it; without one, gives it back.
    pub(crate) fn hand_off(&self, handoff: Handoff) -> Option<Handoff> {
        match self.lock_handoff().take() {
            Some(tx) => tx.send(handoff).err(),
            None => Some(handoff),
        }
    }

    /// The connection ended without a handoff: a waiting tunnel learns it now.
    pub(crate) fn cancel_handoff(&self) {
        self.lock_handoff().take();
    }

    fn lock_handoff(&self) -> std::sync::MutexGuard<'_, Option<oneshot::Sender<Handoff>>> {
        // Nothing panics while holding the lock; a poisoned slot is still a valid slot.
        self.handoff.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a request head received on this connection.
    pub(crate) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Request heads received on this connection so far.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// A client connection's place under `--max-connections`, held until the connection
/// and any tunnel it became are gone; counted in `sockproxy_connections_open`.
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    open: Gauge,
    bursts: Arc<Bursts>,
}

impl Slot {
    /// Takes the place `permit` gives, counting it in `open` (and in `bursts`, which
    /// gives memory back after many close).
    pub(crate) fn new(permit: OwnedSemaphorePermit, open: &Gauge, bursts: &Arc<Bursts>) -> Self {
        bursts.opened(open.inc() + 1);
        Slot {
            _permit: permit,
            open: open.clone(),
            bursts: bursts.clone(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.bursts.closed(self.open.dec() - 1);
    }
}

/// A request, from the exchange to the client socket ([`crate::client_io`]), to write
/// the status line of the next response (the one with this status) as `HTTP/1.1`.
#[derive(Debug, Default)]
pub(crate) struct StatusLineFix {
    /// The status of the response to fix; 0 when none is armed.
    status: AtomicU16,
}

impl StatusLineFix {
    /// The next response head, if it has `status`, goes out as `HTTP/1.1`.
    pub(crate) fn arm(&self, status: http::StatusCode) {
        self.status.store(status.as_u16(), Ordering::Relaxed);
    }

    /// The armed status, disarming it.
    pub(crate) fn take(&self) -> Option<u16> {
        if self.status.load(Ordering::Relaxed) == 0 {
            return None; // the path of every write: one load
        }
        Some(self.status.swap(0, Ordering::Relaxed)).filter(|s| *s != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_display_writes_them() {
        for addr in [
            "127.0.0.1:3000",
            "10.20.30.40:65535",
            "0.0.0.0:0",
            "[::1]:80",
            "[fe80::1]:9",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(addr_text(addr), (addr.to_string(), addr.ip().to_string()));
        }
    }

    #[test]
    fn a_fix_is_taken_once() {
        let fix = StatusLineFix::default();
        assert_eq!(fix.take(), None);
        fix.arm(http::StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(fix.take(), Some(101));
        assert_eq!(fix.take(), None);
    }
}
