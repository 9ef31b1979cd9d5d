//! The stdout writer: records never hold up traffic; what cannot be written is counted
//! and reported once stdout works again.

mod support;

use std::io::{self, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use sockproxy::record::{Draining, Event, Record, Severity};
use sockproxy::sink::Sink;
use support::{WAIT, parse_line, slacken};

fn record(n: u64) -> Record {
    Record {
        severity: Severity::Info,
        message: format!("r{n}"),
        event: Event::Draining(Draining {
            open_tunnels: n,
            open_requests: 0,
            deadline_s: 1.0,
        }),
    }
}

/// A stdout that blocks until released, then records what it got.
#[derive(Clone)]
struct Gate {
    release: Arc<Mutex<Option<mpsc::Receiver<()>>>>,
    entered: mpsc::SyncSender<()>,
    got: Arc<Mutex<Vec<u8>>>,
}

impl Write for Gate {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(rx) = self.release.lock().unwrap().take() {
            let _ = self.entered.try_send(());
            rx.recv().unwrap();
        }
        self.got.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn blocked_stdout_never_blocks_emit_and_drops_are_reported() {
    let (release_tx, release_rx) = mpsc::channel();
    let (entered_tx, entered_rx) = mpsc::sync_channel(1);
    let gate = Gate {
        release: Arc::new(Mutex::new(Some(release_rx))),
        entered: entered_tx,
        got: Arc::default(),
    };
    let got = gate.got.clone();
    let (sink, writer) = Sink::writer(gate, Some("p".into()), None);

    sink.emit(record(0));
    entered_rx
        .recv_timeout(slacken(WAIT))
        .expect("the writer is stuck in write");
    // stdout is now blocked: the queue fills, then records are counted, and emit returns.
    let total = sockproxy::limits::SINK_QUEUE_RECORDS as u64 + 500;
    for n in 1..=total {
        sink.emit(record(n));
    }
    assert_eq!(
        sink.dropped(),
        500,
        "exactly the records beyond the queue are lost"
    );

    release_tx.send(()).unwrap();
    writer.close(slacken(WAIT));
    let text = String::from_utf8(got.lock().unwrap().clone()).unwrap();
    let lines: Vec<_> = text
        .lines()
        .map(|l| parse_line(&format!("{l}\n")))
        .collect();
    let written = lines.iter().filter(|r| r["event"] == "draining").count() as u64;
    assert_eq!(written, total + 1 - 500);
    let report = lines
        .iter()
        .find(|r| r["event"] == "records_dropped")
        .expect("a records_dropped line");
    assert_eq!(report["severity"], "WARNING");
    assert_eq!(report["count"], 500);
    assert_eq!(report["total"], 500);
}

struct Closed;

impl Write for Closed {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Err(io::ErrorKind::BrokenPipe.into())
    }
}

#[test]
fn closed_stdout_counts_every_record() {
    let (sink, writer) = Sink::writer(Closed, None, None);
    for n in 0..10 {
        sink.emit(record(n));
    }
    writer.close(slacken(WAIT));
    assert!(sink.dropped() >= 10, "{}", sink.dropped());
}
