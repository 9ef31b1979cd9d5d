//! Writes one JSON object per line to stdout (time, severity, pod added here).
//!
//! Callers never wait for stdout: [`Sink::emit`] serialises the record (into a reused
//! per-thread buffer) and appends the line to one bounded queue. One writer thread
//! wakes when the queue turns non-empty, lets lines gather for [`SINK_GATHER`] (or until
//! a 64 KiB batch is ready), then writes them all at once: one wake-up and one `write`
//! per batch, not per record. When the queue is full (stdout blocked) or stdout is
//! gone, the record is counted as dropped and traffic goes on; the writer reports the
//! count in a `records_dropped` WARNING as soon as it can write again.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::{Duration, SystemTime};

use crate::limits::{SINK_GATHER, SINK_QUEUE_BYTES, SINK_QUEUE_RECORDS};
use crate::record::{Event, Record, RecordsDropped, Severity};

/// Where records go. Cheap to clone.
#[derive(Clone)]
pub struct Sink {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Tx,
    meta: Meta,
    dropped: AtomicU64,
}

#[derive(Clone)]
struct Meta {
    pod: Option<String>,
    pod_ip: Option<String>,
}

enum Tx {
    Writer(Arc<Queue>),
    Memory(tokio::sync::mpsc::UnboundedSender<String>),
}

/// Lines waiting for the writer thread. Emitters append under the lock (a memcpy); the
/// writer swaps the whole buffer out and writes it with the lock released.
struct Queue {
    pending: Mutex<Pending>,
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    lines: u64,
    closing: Option<mpsc::Sender<()>>,
}

/// Owns the stdout writer thread; [`Writer::close`] flushes what is queued.
pub struct Writer {
    queue: Arc<Queue>,
    thread: std::thread::JoinHandle<()>,
}

thread_local! {
    /// Each thread's reused buffer for formatting a line before it is queued.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(4096));
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock cannot leave `Pending` inconsistent.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Sink {
    /// A sink writing to `out` (stdout in the binary) from its own thread.
    pub fn writer<W: Write + Send + 'static>(
        out: W,
        pod: Option<String>,
        pod_ip: Option<String>,
    ) -> (Sink, Writer) {
        let queue = Arc::new(Queue {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
        });
        let sink = Sink {
            inner: Arc::new(Inner {
                tx: Tx::Writer(queue.clone()),
                meta: Meta { pod, pod_ip },
                dropped: AtomicU64::new(0),
            }),
        };
        let for_thread = (sink.clone(), queue.clone());
        let thread = std::thread::Builder::new()
            .name("sockproxy-records".into())
            .spawn(move || write_loop(out, &for_thread.1, &for_thread.0))
            .expect("spawning the record writer thread at startup");
        (sink, Writer { queue, thread })
    }

    /// A sink that hands each line to a channel (tests, the demo).
    pub fn memory(
        pod: Option<String>,
        pod_ip: Option<String>,
    ) -> (Sink, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = Sink {
            inner: Arc::new(Inner {
                tx: Tx::Memory(tx),
                meta: Meta { pod, pod_ip },
                dropped: AtomicU64::new(0),
            }),
        };
        (sink, rx)
    }

    /// Writes one record, now-stamped. Never blocks on stdout; a record that cannot be
    /// queued (queue full: stdout blocked or gone) is counted in [`Sink::dropped`].
    pub fn emit(&self, record: Record) {
        SCRATCH.with_borrow_mut(|line| {
            line.clear();
            format_line(line, &self.inner.meta, &record, SystemTime::now());
            match &self.inner.tx {
                Tx::Writer(queue) => self.enqueue(queue, line),
                Tx::Memory(tx) => {
                    let text = String::from_utf8(line.clone()).expect("serde_json writes UTF-8");
                    if tx.send(text).is_err() {
                        self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }

    fn enqueue(&self, queue: &Queue, line: &[u8]) {
        let mut p = queue.lock();
        if p.lines >= SINK_QUEUE_RECORDS as u64 || p.bytes.len() >= SINK_QUEUE_BYTES {
            drop(p);
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let before = p.bytes.len();
        p.bytes.extend_from_slice(line);
        p.lines += 1;
        let after = p.bytes.len();
        drop(p);
        // Wake the writer when there is something new to gather, or a full batch; not
        // once per record (that would cost a context switch per request).
        if before == 0 || (before < BATCH_BYTES && after >= BATCH_BYTES) {
            queue.wake.notify_one();
        }
    }

    /// Records lost so far (queue full, stdout closed).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

impl Writer {
    /// Flushes every queued record, waiting at most `deadline` (stdout may be blocked).
    pub fn close(self, deadline: Duration) {
        if self.thread.is_finished() {
            return; // the writer is gone (it panicked): nobody to wait for
        }
        let (ack_tx, ack_rx) = mpsc::channel();
        self.queue.lock().closing = Some(ack_tx);
        self.queue.wake.notify_one();
        match ack_rx.recv_timeout(deadline) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!("stdout still blocked at exit; queued records are lost");
            }
        }
    }
}

/// A batch this large is written at once, without waiting out [`SINK_GATHER`].
const BATCH_BYTES: usize = 64 * 1024;

fn write_loop<W: Write>(mut out: W, queue: &Queue, sink: &Sink) {
    let mut batch = Batch::default();
    let mut reported = 0u64;
    loop {
        let closing = {
            let mut p = queue.lock();
            while p.bytes.is_empty() && p.closing.is_none() {
                p = queue.wake.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            // Let records gather for a moment: one write (and one wake-up) per batch.
            if p.closing.is_none() && p.bytes.len() < BATCH_BYTES {
                p = queue
                    .wake
                    .wait_timeout(p, SINK_GATHER)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            std::mem::swap(&mut p.bytes, &mut batch.bytes);
            batch.lines = std::mem::take(&mut p.lines);
            p.closing.take()
        };
        let written = batch.write_to(&mut out, sink);
        if batch.bytes.capacity() > 4 * BATCH_BYTES {
            // After a burst (stdout was slow), give the large buffer back.
            batch.bytes = Vec::with_capacity(BATCH_BYTES);
        }
        if written {
            let total = sink.dropped();
            if total > reported {
                let rec = Record {
                    severity: Severity::Warning,
                    message: format!(
                        "{} records could not be written (stdout blocked or closed)",
                        total - reported
                    ),
                    event: Event::RecordsDropped(RecordsDropped {
                        count: total - reported,
                        total,
                    }),
                };
                format_line(&mut batch.bytes, &sink.inner.meta, &rec, SystemTime::now());
                batch.lines = 1;
                if batch.write_to(&mut out, sink) {
                    reported = total;
                }
            }
        }
        if let Some(ack) = closing {
            let _ = ack.send(());
            return;
        }
    }
}

/// Lines waiting to be written together.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    lines: u64,
}

impl Batch {
    /// Writes and flushes the batch; on failure its lines count as dropped. True on success.
    fn write_to<W: Write>(&mut self, out: &mut W, sink: &Sink) -> bool {
        let ok =
            self.bytes.is_empty() || (out.write_all(&self.bytes).is_ok() && out.flush().is_ok());
        if !ok {
            sink.inner.dropped.fetch_add(self.lines, Ordering::Relaxed);
        }
        self.bytes.clear();
        self.lines = 0;
        ok
    }
}

/// One record as the JSON line the sink would write for pod `pod` at time `at` (for
/// tools that write records of their own, such as the report's field corpus).
pub fn line_at(rec: &Record, pod: Option<&str>, pod_ip: Option<&str>, at: SystemTime) -> Vec<u8> {
    let meta = Meta {
        pod: pod.map(str::to_string),
        pod_ip: pod_ip.map(str::to_string),
    };
    let mut line = Vec::with_capacity(1024);
    format_line(&mut line, &meta, rec, at);
    line
}

/// Appends one record as a JSON line to `line`.
fn format_line(line: &mut Vec<u8>, meta: &Meta, rec: &Record, now: SystemTime) {
    line.extend_from_slice(b"{\"time\":\"");
    let _ = write!(line, "{}", humantime::format_rfc3339_micros(now));
    line.extend_from_slice(b"\",\"severity\":\"");
    line.extend_from_slice(rec.severity.as_str().as_bytes());
    line.extend_from_slice(b"\",\"message\":");
    crate::json::string(line, &rec.message);
    line.extend_from_slice(b",\"event\":\"");
    line.extend_from_slice(rec.event.name().as_bytes());
    line.push(b'"');
    for (key, value) in [
        (&b",\"pod\":"[..], &meta.pod),
        (b",\"pod_ip\":", &meta.pod_ip),
    ] {
        if let Some(v) = value {
            line.extend_from_slice(key);
            crate::json::string(line, v);
        }
    }
    let start = line.len();
    if crate::json::event_fields(line, &rec.event).is_err() {
        line.truncate(start);
        line.extend_from_slice(b"{\"error\":\"record could not be serialised\"}");
    }
    // The fields object's `{` becomes the separator after the common keys.
    if line.get(start..start + 2) == Some(b"{}") {
        line.truncate(start);
        line.push(b'}');
    } else {
        line[start] = b',';
    }
    line.push(b'\n');
}
