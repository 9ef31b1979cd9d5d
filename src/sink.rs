//! Writes one JSON object per line to stdout (time, severity, pod added here).
//!
//! Callers never wait for stdout: [`Sink::emit`] serialises the record and hands the
//! line to one writer thread through a bounded queue. The writer writes in batches and
//! flushes when the queue is empty. When the queue is full (stdout blocked) or stdout is
//! gone, the record is counted as dropped and traffic goes on; the writer reports the
//! count in a `records_dropped` WARNING as soon as it can write again.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

use crate::config::SINK_QUEUE_RECORDS;
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
    Writer(SyncSender<Msg>),
    Memory(tokio::sync::mpsc::UnboundedSender<String>),
}

enum Msg {
    Line(Vec<u8>),
    Close(mpsc::Sender<()>),
}

/// Owns the stdout writer thread; [`Writer::close`] flushes what is queued.
pub struct Writer {
    tx: SyncSender<Msg>,
}

impl Sink {
    /// A sink writing to `out` (stdout in the binary) from its own thread.
    pub fn writer<W: Write + Send + 'static>(
        out: W,
        pod: Option<String>,
        pod_ip: Option<String>,
    ) -> (Sink, Writer) {
        let (tx, rx) = mpsc::sync_channel(SINK_QUEUE_RECORDS);
        let sink = Sink {
            inner: Arc::new(Inner {
                tx: Tx::Writer(tx.clone()),
                meta: Meta { pod, pod_ip },
                dropped: AtomicU64::new(0),
            }),
        };
        let for_thread = sink.clone();
        std::thread::Builder::new()
            .name("sockproxy-records".into())
            .spawn(move || write_loop(out, rx, for_thread))
            .expect("spawning the record writer thread at startup");
        (sink, Writer { tx })
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

    /// Writes one record, now-stamped. Never blocks; a record that cannot be queued is
    /// counted in [`Sink::dropped`].
    pub fn emit(&self, record: Record) {
        let line = format_line(&self.inner.meta, &record, SystemTime::now());
        match &self.inner.tx {
            Tx::Writer(tx) => match tx.try_send(Msg::Line(line)) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                }
            },
            Tx::Memory(tx) => {
                let text = String::from_utf8(line).expect("serde_json writes UTF-8");
                if tx.send(text).is_err() {
                    self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
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
        let (ack_tx, ack_rx) = mpsc::channel();
        let tx = self.tx;
        // `send` blocks while the queue is full, so it runs on a thread of its own and
        // the deadline below still holds.
        std::thread::spawn(move || tx.send(Msg::Close(ack_tx)));
        match ack_rx.recv_timeout(deadline) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {}
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!("stdout still blocked at exit; queued records are lost");
            }
        }
    }
}

fn write_loop<W: Write>(mut out: W, rx: Receiver<Msg>, sink: Sink) {
    const BATCH_BYTES: usize = 64 * 1024;
    let mut batch = Batch::default();
    let mut reported = 0u64;
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Line(line) => {
                    batch.push(&line);
                    if batch.bytes.len() >= BATCH_BYTES {
                        batch.write_to(&mut out, &sink);
                    }
                }
                Msg::Close(ack) => {
                    batch.write_to(&mut out, &sink);
                    let _ = ack.send(());
                    return;
                }
            }
            next = rx.try_recv().ok();
        }
        if batch.write_to(&mut out, &sink) {
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
                batch.push(&format_line(&sink.inner.meta, &rec, SystemTime::now()));
                if batch.write_to(&mut out, &sink) {
                    reported = total;
                }
            }
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
    fn push(&mut self, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.lines += 1;
    }

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

fn format_line(meta: &Meta, rec: &Record, now: SystemTime) -> Vec<u8> {
    let mut line = Vec::with_capacity(1024);
    line.extend_from_slice(b"{\"time\":\"");
    line.extend_from_slice(humantime::format_rfc3339_micros(now).to_string().as_bytes());
    line.extend_from_slice(b"\",\"severity\":\"");
    line.extend_from_slice(rec.severity.as_str().as_bytes());
    line.extend_from_slice(b"\",\"message\":");
    serde_json::to_writer(&mut line, &rec.message).expect("a string always serialises");
    line.extend_from_slice(b",\"event\":\"");
    line.extend_from_slice(rec.event.name().as_bytes());
    line.push(b'"');
    for (key, value) in [("pod", &meta.pod), ("pod_ip", &meta.pod_ip)] {
        if let Some(v) = value {
            line.extend_from_slice(format!(",\"{key}\":").as_bytes());
            serde_json::to_writer(&mut line, v).expect("a string always serialises");
        }
    }
    let start = line.len();
    if rec.event.fields_json(&mut line).is_err() {
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
    line
}
