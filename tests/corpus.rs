//! `sockproxy report` against the field corpus (issue 14): every case's verdicts
//! against its ground truth, the generated records' field set against real records,
//! and the generator's determinism. The corpus: tests/corpus/README.md.

// Shared with examples/corpus.rs; each uses a part of it.
#[allow(dead_code, unused_imports)]
#[path = "corpus/mod.rs"]
mod corpus;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use corpus::{Case, IDS, Want};

/// The corpus, generated once for the tests that read it, and how long that took.
fn corpus() -> &'static (Vec<Case>, Duration) {
    static CORPUS: std::sync::OnceLock<(Vec<Case>, Duration)> = std::sync::OnceLock::new();
    CORPUS.get_or_init(|| {
        let started = Instant::now();
        let cases = corpus::all(corpus::SEED, 1.0);
        (cases, started.elapsed())
    })
}

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "sockproxy-corpus-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `sockproxy report --json FILES…`; the verdict per hypothesis and the time taken.
fn report(paths: &[PathBuf]) -> (BTreeMap<String, String>, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sockproxy"))
        .arg("report")
        .arg("--json")
        .args(paths)
        .output()
        .expect("running sockproxy report");
    let took = started.elapsed();
    // 0: nothing confirmed, 1: something confirmed; anything else is a failure to run.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "report failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("report --json prints JSON");
    let verdicts = v["hypotheses"]
        .as_array()
        .expect("hypotheses[]")
        .iter()
        .map(|h| {
            (
                h["id"].as_str().unwrap_or("?").to_string(),
                h["verdict"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    (verdicts, took)
}

fn letter(verdict: &str) -> char {
    match verdict {
        "confirmed" => 'C',
        "isolated" => 'I',
        "ruled_out" => 'R',
        "no_evidence" => 'E',
        _ => '?',
    }
}

#[derive(Default, Clone, Copy)]
struct Counts {
    tp: u32,
    fp: u32,
    fn_: u32,
    tn: u32,
}

fn ratio(a: u32, b: u32) -> String {
    if b == 0 {
        "  -  ".to_string()
    } else {
        format!("{:.3}", f64::from(a) / f64::from(b))
    }
}

#[test]
fn every_case_gets_its_verdicts() {
    let dir = TempDir::new("verdicts");
    let (cases, generated) = corpus();
    let generated = *generated;
    let mut counts = [Counts::default(); 6];
    let mut mismatches = Vec::new();
    let mut largest: Option<(usize, &str, Duration)> = None;
    println!(
        "\n{:<22} {:>4} {:>7} {:>6} {:>8}  expected  got     time",
        "case", "pods", "visits", "sids", "records"
    );
    // Two reports at a time; results in case order.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(case) = cases.get(k) else { break };
                    let paths = case.write_to(&dir.0).unwrap();
                    let r = report(&paths);
                    out.lock().unwrap().push((k, r));
                }
            });
        }
    });
    let mut results = out.into_inner().unwrap();
    results.sort_by_key(|(k, _)| *k);
    let results = results.into_iter().map(|(_, r)| r);
    for (case, (got, took)) in cases.iter().zip(results) {
        let mut got_letters = String::new();
        for (k, id) in IDS.iter().enumerate() {
            let want = case.expected[k];
            let v = got.get(*id).map_or("missing", String::as_str);
            got_letters.push(letter(v));
            let (truth, said) = (want.want == Want::Confirmed, v == "confirmed");
            let c = &mut counts[k];
            match (truth, said) {
                (true, true) => c.tp += 1,
                (false, true) => c.fp += 1,
                (true, false) => c.fn_ += 1,
                (false, false) => c.tn += 1,
            }
            if !want.want.accepts(v) {
                mismatches.push(format!(
                    "{:<22} {id}: want {:<13} got {:<11} — {}",
                    case.name,
                    want.want.key(),
                    v,
                    want.why
                ));
            }
        }
        let bytes: usize = case.files.iter().map(|f| f.bytes.len()).sum();
        if largest.is_none_or(|(b, ..)| bytes > b) {
            largest = Some((bytes, case.name, took));
        }
        println!(
            "{:<22} {:>4} {:>7} {:>6} {:>8}  {}    {}  {:>6.0}ms",
            case.name,
            case.pods,
            case.visits,
            case.sessions,
            case.records,
            case.letters(),
            got_letters,
            took.as_secs_f64() * 1000.0
        );
    }
    println!("\nconfirmed, per hypothesis, over {} cases:", cases.len());
    println!("      TP  FP  FN  TN  precision  recall");
    for (k, id) in IDS.iter().enumerate() {
        let c = counts[k];
        println!(
            "{id}   {:>3} {:>3} {:>3} {:>3}  {:>9}  {:>6}",
            c.tp,
            c.fp,
            c.fn_,
            c.tn,
            ratio(c.tp, c.tp + c.fp),
            ratio(c.tp, c.tp + c.fn_)
        );
    }
    if let Some((bytes, name, took)) = largest {
        println!(
            "largest log: {name} ({:.1} MB) read in {:.0} ms (debug build); corpus generated in {:.1} s",
            bytes as f64 / 1e6,
            took.as_secs_f64() * 1000.0,
            generated.as_secs_f64()
        );
    }
    if !mismatches.is_empty() {
        println!("\n{} mismatches:", mismatches.len());
        for m in &mismatches {
            println!("  {m}");
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} verdicts differ from the ground truth (listed above)",
        mismatches.len()
    );
}

/// The large case (10 pods, ~200k records): only the time to read it matters.
#[test]
#[ignore = "slow in debug builds; run with --ignored (or use examples/corpus.rs --large)"]
fn the_large_case_reads_in_reasonable_time() {
    let dir = TempDir::new("large");
    let case = corpus::large(corpus::SEED, 1.0);
    let paths = case.write_to(&dir.0).unwrap();
    let bytes: usize = case.files.iter().map(|f| f.bytes.len()).sum();
    let (got, took) = report(&paths);
    println!(
        "large: {} pods, {} records, {:.1} MB, read in {:.2} s; verdicts {got:?}",
        case.pods,
        case.records,
        bytes as f64 / 1e6,
        took.as_secs_f64()
    );
    for (k, id) in IDS.iter().enumerate() {
        let v = got.get(*id).map_or("missing", String::as_str);
        assert!(
            case.expected[k].want.accepts(v),
            "{id}: want {}, got {v}",
            case.expected[k].want.key()
        );
    }
}

/// Every key path of a JSON object (`a`, `a.b`); arrays are leaves. Header maps give
/// their names separately (they depend on what each request carried).
fn paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>, headers: &mut BTreeSet<String>) {
    if let Value::Object(m) = v {
        for (k, x) in m {
            let p = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            out.insert(p.clone());
            if p == "headers" || p == "resp_headers" {
                for name in x.as_object().into_iter().flat_map(|o| o.keys()) {
                    headers.insert(format!("{p}.{name}"));
                }
            } else {
                paths(x, &p, out, headers);
            }
        }
    }
}

type FieldSets = BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>;

fn field_sets<'a>(lines: impl Iterator<Item = &'a [u8]>) -> FieldSets {
    let mut by_event: FieldSets = BTreeMap::new();
    for line in lines {
        let Some(start) = line.iter().position(|b| *b == b'{') else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<Value>(&line[start..]) else {
            continue;
        };
        let Some(event) = v["event"].as_str() else {
            continue;
        };
        let e = by_event.entry(event.to_string()).or_default();
        paths(&v, "", &mut e.0, &mut e.1);
    }
    by_event
}

/// The records the real proxy wrote in the end-to-end runs (tests/fixtures/README.md).
fn fixture_lines() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut lines = Vec::new();
    for name in [
        "healthy.jsonl",
        "transparency.jsonl",
        "h1-upgrade-stripped.jsonl",
        "h2-no-affinity.log",
        "h3-health-check.jsonl",
        "h4-origin-host.jsonl",
        "h5-draining.jsonl",
        "h6-timeouts.log",
        "h6-timeouts-busy.jsonl",
    ] {
        let text = std::fs::read(dir.join(name)).unwrap();
        lines.extend(text.split(|b| *b == b'\n').map(<[u8]>::to_vec));
    }
    lines
}

/// The generated lines worth parsing (parsing every record in a debug build takes
/// long): the short ones (listening, draining, stopped), each case's first 300 (a pod's
/// start: sockproxy's own 502s, first errors), and 1 in 25 of the rest.
fn sample(cases: &[Case]) -> Vec<&[u8]> {
    cases
        .iter()
        .flat_map(|c| {
            c.plain
                .iter()
                .enumerate()
                .filter(|(k, l)| l.len() < 700 || *k < 300 || k % 25 == 0)
                .map(|(_, l)| l.as_slice())
        })
        .collect()
}

#[test]
fn generated_records_have_the_fields_the_proxy_writes() {
    let cases = &corpus().0;
    let lines = sample(cases);
    let generated = field_sets(lines.iter().copied());
    let fixtures = fixture_lines();
    let real = field_sets(fixtures.iter().map(Vec::as_slice));
    // Keys the contract defines for situations the e2e runs never produced: sockproxy's
    // own answers (502) and the Cloud Logging trace keys (--gcp-project).
    let situational: BTreeSet<&str> = [
        "upstream_error",
        "logging.googleapis.com/trace",
        "logging.googleapis.com/spanId",
    ]
    .into_iter()
    .collect();
    let always: BTreeSet<String> = sockproxy::capture::REQUEST_ALWAYS
        .iter()
        .map(|h| format!("headers.{h}"))
        .collect();
    let allowed_headers: BTreeSet<String> = sockproxy::capture::REQUEST_ALWAYS
        .iter()
        .chain(&sockproxy::capture::REQUEST_WHEN_SENT)
        .map(|h| format!("headers.{h}"))
        .chain(
            sockproxy::capture::RESPONSE_WHEN_SENT
                .iter()
                .map(|h| format!("resp_headers.{h}")),
        )
        .collect();
    let mut problems = Vec::new();
    for event in [
        "listening",
        "request",
        "upgrade",
        "tunnel_closed",
        "draining",
        "stopped",
    ] {
        let (Some((gen_keys, gen_headers)), Some((real_keys, _))) =
            (generated.get(event), real.get(event))
        else {
            problems.push(format!("{event}: missing in the corpus or in the fixtures"));
            continue;
        };
        for k in gen_keys.difference(real_keys) {
            if !situational.contains(k.as_str()) {
                problems.push(format!(
                    "{event}: `{k}` is generated but the proxy never wrote it"
                ));
            }
        }
        for k in real_keys.difference(gen_keys) {
            problems.push(format!(
                "{event}: `{k}` is written by the proxy but never generated"
            ));
        }
        for h in gen_headers.difference(&allowed_headers) {
            problems.push(format!(
                "{event}: header `{h}` is not one the proxy captures"
            ));
        }
        if matches!(event, "request" | "upgrade") {
            for h in always.difference(gen_headers) {
                problems.push(format!("{event}: always-present header `{h}` missing"));
            }
        }
    }
    // Per record too: each request's headers carry the six always-present names.
    for line in &lines {
        let v: Value = serde_json::from_slice(line).unwrap();
        if matches!(v["event"].as_str(), Some("request" | "upgrade")) {
            let h = v["headers"].as_object().unwrap();
            for name in sockproxy::capture::REQUEST_ALWAYS.iter() {
                let text = String::from_utf8_lossy(line);
                assert!(h.contains_key(name.as_str()), "{name} missing: {text}");
            }
        }
    }
    assert!(problems.is_empty(), "field drift:\n{}", problems.join("\n"));
}

fn digest(cases: &[Case]) -> BTreeMap<String, u64> {
    use std::hash::{Hash, Hasher};
    cases
        .iter()
        .flat_map(|c| {
            c.files.iter().map(move |f| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                f.bytes.hash(&mut h);
                c.expected_json().to_string().hash(&mut h);
                (format!("{}/{}", c.name, f.name), h.finish())
            })
        })
        .collect()
}

#[test]
fn the_generator_is_deterministic() {
    // Cases rebuilt one by one give the bytes of the corpus built in parallel.
    let names = [
        "start-stop",
        "scanner-websocket",
        "h6-four-of-fifty",
        "h3-hc-root-404",
    ];
    let again: Vec<Case> = names
        .iter()
        .map(|n| corpus::by_name(corpus::SEED, 1.0, n).unwrap())
        .collect();
    let first: Vec<Case> = corpus()
        .0
        .iter()
        .filter(|c| names.contains(&c.name))
        .cloned()
        .collect();
    let (a, b) = (digest(&first), digest(&again));
    assert_eq!(a, b, "the same seed must give the same bytes");
    let other: Vec<Case> = names
        .iter()
        .map(|n| corpus::by_name(corpus::SEED + 1, 1.0, n).unwrap())
        .collect();
    let c = digest(&other);
    assert_ne!(a, c, "another seed must give other logs");
}

/// The records of case `name` whose text contains `needle`, parsed.
fn records_with(cases: &[Case], name: &str, needle: &str) -> Vec<Value> {
    let case = cases.iter().find(|c| c.name == name).unwrap();
    case.plain
        .iter()
        .filter(|l| l.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

fn secs_of(v: &Value) -> f64 {
    v["duration_ms"].as_f64().unwrap() / 1000.0
}

/// What each case's story says is in its records (so the ground truth stays true when
/// the generator changes).
#[test]
fn each_case_holds_what_its_story_says() {
    let cases = &corpus().0;
    let ws = "transport=websocket";

    // (a): one early 502, ten sessions each with a 101 and a client-closed tunnel, a
    // drain with nothing open that finishes.
    let own = records_with(cases, "start-stop", "upstream_unreachable");
    assert_eq!(own.len(), 1, "one early 502");
    let tunnels = records_with(cases, "start-stop", "\"event\":\"tunnel_closed\"");
    assert_eq!(tunnels.len(), 10);
    assert!(
        tunnels
            .iter()
            .all(|t| t["closed_by"] == "client" && secs_of(t) < 30.0)
    );
    let draining = records_with(cases, "start-stop", "\"event\":\"draining\"");
    assert_eq!(
        (
            draining[0]["open_tunnels"].as_u64(),
            draining[0]["open_requests"].as_u64()
        ),
        (Some(0), Some(0))
    );
    let stopped = records_with(cases, "start-stop", "\"event\":\"stopped\"");
    assert_eq!(stopped[0]["drained"], true);

    // (b): one websocket request without Upgrade: the scanner's, keyless, sid-less.
    let no_upgrade: Vec<Value> = records_with(cases, "scanner-websocket", ws)
        .into_iter()
        .filter(|r| r["event"] == "request" && r["headers"]["upgrade"].is_null())
        .collect();
    assert_eq!(no_upgrade.len(), 1);
    let h = &no_upgrade[0]["headers"];
    assert!(h.get("sec-websocket-key").is_none() && no_upgrade[0]["sio"]["sid"].is_null());
    assert_eq!(
        records_with(cases, "scanner-websocket", "\"event\":\"upgrade\"").len(),
        20
    );

    // H1: no websocket opens when nginx drops Upgrade; every browser attempt has a key.
    assert!(records_with(cases, "h1-nginx-no-upgrade", "\"event\":\"upgrade\"").is_empty());
    let attempts: Vec<Value> = records_with(cases, "h1-nginx-no-upgrade", "sec-websocket-key");
    assert!(attempts.len() > 50);
    assert!(
        attempts
            .iter()
            .all(|r| r["headers"]["upgrade"].is_null() && r["sio_error"]["code"] == 3)
    );
    // Behind corporate proxies: only clients whose Via names their proxy, a few percent.
    let stripped: Vec<Value> = records_with(cases, "h1-corporate-proxy", "sec-websocket-key")
        .into_iter()
        .filter(|r| r["headers"]["upgrade"].is_null())
        .collect();
    let upgrades = records_with(cases, "h1-corporate-proxy", "\"event\":\"upgrade\"").len();
    assert!(!stripped.is_empty() && stripped.len() * 20 < upgrades);
    assert!(
        stripped
            .iter()
            .all(|r| r["headers"]["via"].as_str().unwrap().contains("squid"))
    );

    // H2: refusals of other pods' sids on every pod, all the time; none with affinity
    // except right after a drain.
    let refused = records_with(cases, "h2-no-affinity", "sid_not_issued_here");
    let pods: BTreeSet<&str> = refused.iter().map(|r| r["pod"].as_str().unwrap()).collect();
    assert!(refused.len() > 500 && pods.len() == 3);
    let drains = records_with(cases, "h2-rollout-affinity", "\"event\":\"draining\"");
    let drain_times: Vec<i64> = drains
        .iter()
        .map(|d| millis(d["time"].as_str().unwrap()))
        .collect();
    for r in records_with(cases, "h2-rollout-affinity", "sid_not_issued_here") {
        let t = millis(r["time"].as_str().unwrap());
        assert!(
            drain_times.iter().any(|d| (t - d).abs() < 20_000),
            "a refusal away from any drain: {r}"
        );
    }

    // H3: after the change, every GoogleHC check gets 404.
    let hc = records_with(cases, "h3-hc-health-404", "GoogleHC");
    let late: Vec<&Value> = hc.iter().filter(|r| r["path"] == "/health").collect();
    assert!(late.len() > 500 && late.iter().all(|r| r["status"] == 404));
    let root = records_with(cases, "h3-hc-root-404", "GoogleHC");
    assert!(root.len() > 500 && root.iter().all(|r| r["status"] == 404));

    // H4: Host is localhost:3000 everywhere, and code 4 refuses most handshakes.
    let forbidden = records_with(cases, "h4-host-localhost", "\"forbidden\"");
    assert!(forbidden.len() > 1000);
    assert!(
        forbidden
            .iter()
            .all(|r| r["headers"]["host"] == "localhost:3000")
    );
    let mismatched = records_with(cases, "h4-noise", "origin_host_mismatch");
    assert!(
        mismatched
            .iter()
            .all(|r| r["headers"]["origin"] == "https://evil.example")
    );

    // H5: every drain cut short, or every drain finished.
    let cut = records_with(cases, "h5-short-drain", "\"event\":\"stopped\"");
    assert!(cut.len() == 9 && cut.iter().all(|s| s["drained"] == false));
    let fine = records_with(cases, "h5-normal-rollouts", "\"event\":\"stopped\"");
    assert!(fine.len() == 16 && fine.iter().all(|s| s["drained"] == true));

    // H6: tunnels that live past their first second end at the timeout.
    for (name, lo, hi) in [
        ("h6-lb-timeout-30", 29.9, 30.05),
        ("h6-lb-timeout-60", 59.9, 60.05),
        ("multi-h2-h6", 29.9, 30.05),
        ("multi-h4-h6", 29.9, 30.05),
    ] {
        let t = records_with(cases, name, "\"event\":\"tunnel_closed\"");
        let lived: Vec<f64> = t.iter().map(secs_of).filter(|s| *s > 1.0).collect();
        let at = lived.iter().filter(|s| (lo..=hi).contains(*s)).count();
        assert!(
            at * 10 >= lived.len() * 9,
            "{name}: {at} of {}",
            lived.len()
        );
    }
    let t: Vec<f64> = records_with(cases, "h6-four-of-fifty", "\"event\":\"tunnel_closed\"")
        .iter()
        .map(secs_of)
        .collect();
    assert_eq!(t.iter().filter(|s| (59.8..=60.05).contains(*s)).count(), 4);
    assert!(t.iter().filter(|s| **s > 3600.0).count() >= 40);
    let t: Vec<f64> = records_with(cases, "h6-tab-closes", "\"event\":\"tunnel_closed\"")
        .iter()
        .map(secs_of)
        .collect();
    assert!(t.iter().filter(|s| **s > 3600.0).count() >= 10);
    assert!(t.iter().filter(|s| (29.9..=30.05).contains(*s)).count() * 20 < t.len());
    // A long-poll the LB cut kills the session: later requests get code 1 on that pod.
    let same_pod = records_with(cases, "h6-lb-timeout-30", "sid_unknown")
        .into_iter()
        .filter(|r| {
            !r["flags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == "sid_not_issued_here")
        })
        .count();
    assert!(same_pod > 0);
}

/// Milliseconds of an RFC 3339 time (for distances between records).
fn millis(t: &str) -> i64 {
    humantime::parse_rfc3339(t)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
