//! Keeps count of open tunnels and requests, and tells tunnels when to close at shutdown.
//!
//! hyper-util's graceful watcher stops tracking a connection once it upgrades, so the
//! tunnels are counted here: each holds a [`Token`] whose drop makes the count exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{Notify, watch};

/// Shared drain state.
pub(crate) struct Drain {
    tunnels: AtomicU64,
    requests: AtomicU64,
    tunnels_idle: Notify,
    close_tunnels: watch::Sender<bool>,
    closed_by_shutdown: AtomicU64,
    cut: AtomicBool,
    draining: AtomicBool,
}

/// Held while a tunnel (or a request) is open.
pub(crate) struct Token {
    drain: Arc<Drain>,
    tunnel: bool,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            tunnels: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            tunnels_idle: Notify::new(),
            close_tunnels: watch::channel(false).0,
            closed_by_shutdown: AtomicU64::new(0),
            cut: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }
    }
}

impl Drain {
    /// Counts a tunnel until the token drops.
    pub(crate) fn tunnel(self: &Arc<Self>) -> Token {
        self.tunnels.fetch_add(1, Ordering::SeqCst);
        Token {
            drain: self.clone(),
            tunnel: true,
        }
    }

    /// Counts an in-flight request until the token drops.
    pub(crate) fn request(self: &Arc<Self>) -> Token {
        self.requests.fetch_add(1, Ordering::SeqCst);
        Token {
            drain: self.clone(),
            tunnel: false,
        }
    }

    pub(crate) fn open_tunnels(&self) -> u64 {
        self.tunnels.load(Ordering::SeqCst)
    }

    pub(crate) fn open_requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Resolves once no tunnel is open.
    pub(crate) async fn tunnels_done(&self) {
        loop {
            let notified = self.tunnels_idle.notified();
            if self.open_tunnels() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// The drain began: `/readyz` answers 503 from now on.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// True once the drain began.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The drain deadline passed: tunnels close now (`closed_by: shutdown`), and
    /// exchanges abandoned from here on were cut by sockproxy, not by their client.
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.close_tunnels.send_replace(true);
    }

    /// True once [`Drain::cut`] was called.
    pub(crate) fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }

    /// Resolves when tunnels are told to close.
    pub(crate) fn closing(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.close_tunnels.subscribe();
        async move {
            let _ = rx.wait_for(|closing| *closing).await;
        }
    }

    /// Notes one tunnel ended by shutdown.
    pub(crate) fn count_closed_by_shutdown(&self) {
        self.closed_by_shutdown.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn closed_by_shutdown(&self) -> u64 {
        self.closed_by_shutdown.load(Ordering::SeqCst)
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if !self.tunnel {
            self.drain.requests.fetch_sub(1, Ordering::SeqCst);
        } else if self.drain.tunnels.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.drain.tunnels_idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_and_wakes_when_last_token_drops() {
        let d = Arc::new(Drain::default());
        let a = d.tunnel();
        let b = d.tunnel();
        let r = d.request();
        assert_eq!((d.open_tunnels(), d.open_requests()), (2, 1));
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.tunnels_done().await }
        });
        drop(a);
        assert!(!waiter.is_finished());
        drop(b);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        drop(r);
        assert_eq!((d.open_tunnels(), d.open_requests()), (0, 0));
    }

    #[tokio::test]
    async fn closing_resolves_after_close_tunnels() {
        let d = Arc::new(Drain::default());
        let closing = d.closing();
        let late = tokio::spawn(d.closing());
        d.cut();
        closing.await;
        late.await.unwrap();
        d.closing().await; // subscribed after the fact: resolves at once
    }
}
