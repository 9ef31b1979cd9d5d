//! Gives freed heap back to the system after a burst of connections has closed.
//!
//! glibc's `free` returns memory to the system only from the top of the heap; after
//! thousands of tunnels close, the freed chunks sit below a few that are still live, and
//! the process keeps its peak RSS (measured: 56 MiB after 9,000 tunnels closed, 6 MiB
//! after a `malloc_trim`). `malloc_trim(0)` also releases free pages in the middle of the
//! heap. It walks the free lists, so it runs only after a burst: when the open
//! connections have fallen by [`BURST`] or more below their peak since the last trim,
//! checked once per [`CHECK_EVERY`], on a blocking thread, off the request path.

use std::sync::Arc;
use std::time::Duration;

use crate::recorder::Recorder;

/// How far below its peak the open-connection count must fall before a trim.
const BURST: i64 = 1000;
/// How often the count is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Watches the open connections and trims the heap after each burst; runs until
/// dropped (aborted at the end of the run).
pub(crate) async fn give_back_after_bursts(recorder: Arc<Recorder>) {
    let open = recorder.metrics.connections_open.clone();
    let mut peak = open.get();
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = open.get();
        peak = peak.max(now);
        if peak - now >= BURST {
            peak = now;
            let _ = tokio::task::spawn_blocking(trim).await;
        }
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
