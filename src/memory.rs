//! Gives freed heap back to the system after a burst of connections has closed.
//!
//! glibc's `free` returns memory to the system only from the top of the heap; after
//! thousands of tunnels close, the freed chunks sit below a few that are still live, and
//! the process keeps its peak RSS (measured: 56 MiB after 9,000 tunnels closed, 6 MiB
//! after a `malloc_trim`). `malloc_trim(0)` also releases free pages in the middle of the
//! heap. It walks the free lists, so it runs only after a burst: when the open
//! connections have fallen [`BURST`] or more below their peak since the last trim. The
//! connections' slots tell [`Bursts`] as they open and close (no timer); the trim runs
//! on a blocking thread, off the request path.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::Notify;

/// How far below its peak the open-connection count must fall before a trim.
const BURST: i64 = 1000;

/// The peak of open connections since the last trim, and the signal that a burst ended.
#[derive(Debug, Default)]
pub(crate) struct Bursts {
    peak: AtomicI64,
    ended: Notify,
}

impl Bursts {
    /// A connection opened: `open` are open now.
    pub(crate) fn opened(&self, open: i64) {
        self.peak.fetch_max(open, Ordering::Relaxed);
    }

    /// A connection closed: `open` are open now. Signals the trimmer once the count is
    /// [`BURST`] below the peak (the peak restarts from here).
    pub(crate) fn closed(&self, open: i64) {
        let peak = self.peak.load(Ordering::Relaxed);
        if peak - open >= BURST
            && self
                .peak
                .compare_exchange(peak, open, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.ended.notify_one();
        }
    }
}

/// Trims the heap after each burst; runs until dropped (aborted at the end of the run).
pub(crate) async fn give_back_after_bursts(bursts: Arc<Bursts>) {
    loop {
        bursts.ended.notified().await;
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}

/// Returns the heap's free pages to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: malloc_trim has no preconditions; it takes the allocator's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators return memory on their own terms: nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_burst_is_signalled_once_it_has_fallen_far_enough() {
        let b = Bursts::default();
        for open in 1..=1500 {
            b.opened(open);
        }
        // `timeout` polls the future once before it looks at the (zero) deadline.
        let signalled = || tokio::time::timeout(Duration::ZERO, b.ended.notified());
        b.closed(1000); // 500 below the peak: no burst yet
        assert!(signalled().await.is_err());
        b.closed(500); // 1000 below: a burst (a permit is stored for the trimmer)
        assert!(signalled().await.is_ok(), "the trimmer is woken");
        b.closed(400); // the peak restarted at 500: not another burst
        assert!(signalled().await.is_err());
    }
}
