//! `sockproxy report` throughput: records per second through the whole report (read,
//! parse, join, verdicts) against a baseline that only splits lines and checks the JSON,
//! on realistic records made from a real end-to-end run.
//!
//! ```sh
//! cargo bench --bench report                                  # 200 000 records in memory
//! REPORT_BENCH_RECORDS=1000000 cargo bench --bench report
//! REPORT_BENCH_OUT=/tmp/records-1m.jsonl REPORT_BENCH_RECORDS=1000000 cargo bench --bench report
//!     # writes the file instead, for `/usr/bin/time -v target/release/sockproxy report FILE`
//! ```

use std::io::Write;
use std::time::Instant;

use serde_json::Value;
use sockproxy::report::Report;
use sockproxy::report::input::Source;

const TEMPLATE: &str = include_str!("../tests/fixtures/healthy.jsonl");

/// A small deterministic generator (no dependency needed for this).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn time(us: i64) -> String {
    sockproxy::report::parse::format_time(us)
}

/// `n` records: sessions of handshake, POST, upgrade, long-poll and close on three pods,
/// with lifetimes spread from 1 s to 10 min, a refusal on another pod now and then, and
/// health checks.
fn records(n: usize, mut out: impl Write) -> std::io::Result<()> {
    let t: Vec<Value> = TEMPLATE
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by = |ev: &str, pick: &dyn Fn(&Value) -> bool| {
        t.iter()
            .find(|r| r["event"] == ev && pick(r))
            .unwrap()
            .clone()
    };
    let handshake = by("request", &|r| r["sio"]["handshake"] == true);
    let post = by("request", &|r| r["method"] == "POST");
    let poll = by("request", &|r| {
        r["method"] == "GET" && r["sio"]["handshake"] == false && r["sio"]["sid"].is_string()
    });
    let upgrade = by("upgrade", &|_| true);
    let closed = by("tunnel_closed", &|_| true);
    let mut refused = poll.clone();
    refused["status"] = 400.into();
    refused["flags"] = serde_json::json!(["sid_unknown", "sid_not_issued_here"]);
    refused["sio_error"] = serde_json::json!({"code": 1, "message": "Session ID unknown"});
    let mut health = poll.clone();
    health["path"] = "/health".into();
    health["sio"] = Value::Null;
    health["status"] = 200.into();
    health["flags"] = serde_json::json!(["health_check"]);
    health["headers"]["user-agent"] = "GoogleHC/1.0".into();

    let pods = [
        "theia-7d9f8b6c5-x2x4z",
        "theia-7d9f8b6c5-kq8wd",
        "theia-7d9f8b6c5-p5n2m",
    ];
    let mut rng = Lcg(42);
    let mut now: i64 = 1_795_000_000_000_000;
    let mut written = 0;
    let mut session = 0u64;
    let mut emit = |r: &mut Value, at: i64, pod: &str, id: &str| -> std::io::Result<()> {
        r["time"] = time(at).into();
        r["pod"] = pod.into();
        if r.get("id").is_some() {
            r["id"] = id.into();
        }
        serde_json::to_writer(&mut out, r)?;
        out.write_all(b"\n")
    };
    while written < n {
        session += 1;
        let p = (rng.next() % 3) as usize;
        let pod = pods[p];
        let sid = format!("{:020x}", rng.next() << 16 | session)[..20].to_string();
        let life_us = 1_000_000 + (rng.next() % 600_000_000) as i64;
        let id = |k: u64| format!("{p}{:05x}-{}", session % 0xfffff, k);
        now += 2_000 + (rng.next() % 10_000) as i64;
        let mut steps: Vec<(Value, i64, &str, String)> = Vec::with_capacity(6);
        for (tmpl, dt, k) in [
            (&handshake, 0, 1),
            (&post, 20_000, 2),
            (&upgrade, 30_000, 3),
            (&poll, 40_000, 4),
        ] {
            let mut r = tmpl.clone();
            r["sio"]["sid"] = sid.clone().into();
            steps.push((r, now + dt, pod, id(k)));
        }
        let mut c = closed.clone();
        c["sio"]["sid"] = sid.clone().into();
        c["duration_ms"] = (life_us as f64 / 1000.0).into();
        c["closed_by"] = (if rng.next().is_multiple_of(2) {
            "client"
        } else {
            "upstream"
        })
        .into();
        steps.push((c, now + 30_000 + life_us, pod, id(3)));
        if session.is_multiple_of(20) {
            let mut r = refused.clone();
            r["sio"]["sid"] = sid.clone().into();
            steps.push((r, now + 25_000, pods[(p + 1) % 3], id(5)));
        }
        if session.is_multiple_of(50) {
            steps.push((health.clone(), now, pod, id(6)));
        }
        for (mut r, at, pod, id) in steps {
            if written == n {
                break;
            }
            emit(&mut r, at, pod, &id)?;
            written += 1;
        }
    }
    Ok(())
}

fn main() {
    let n: usize = std::env::var("REPORT_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    if let Ok(path) = std::env::var("REPORT_BENCH_OUT") {
        let f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        records(n, f).unwrap();
        eprintln!("wrote {n} records to {path}");
        return;
    }
    let mut data = Vec::new();
    records(n, &mut data).unwrap();
    let data: &'static [u8] = Box::leak(data.into_boxed_slice());
    let mb = data.len() as f64 / 1e6;
    println!("{n} records, {mb:.0} MB");

    // Baseline: split lines and check each is JSON, nothing else.
    let start = Instant::now();
    let mut ok = 0usize;
    for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok() {
            ok += 1;
        }
    }
    let base = start.elapsed().as_secs_f64();
    assert_eq!(ok, n);
    let line = |what: &str, secs: f64| {
        println!(
            "{what:<40} {secs:6.2} s {:>9.0} records/s {:>5.0} MB/s  {:4.2} × baseline",
            n as f64 / secs,
            mb / secs,
            secs / base
        );
    };
    line("baseline: split lines + JSON check", base);

    let source = || Source::from_reader("bench".into(), Box::new(data), false).unwrap();
    let check = |report: &Report| {
        assert_eq!(report.analyzer.input.records as usize, n);
        report
            .findings()
            .iter()
            .map(|f| format!("{} {}", f.id, f.verdict.key()))
            .collect::<Vec<_>>()
            .join(", ")
    };

    let start = Instant::now();
    let mut report = Report::new();
    source()
        .run(false, &mut |item, _| report.feed(item, "bench"))
        .unwrap();
    let verdicts = check(&report);
    line(
        "report: read, parse, join, verdicts",
        start.elapsed().as_secs_f64(),
    );
    println!("verdicts: {verdicts}");
}
