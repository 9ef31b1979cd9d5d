//! `sockproxy report` as a user runs it: the built binary on the record files of real
//! end-to-end runs (one per hypothesis, a healthy one, the transparency suite) and on
//! hand-written edge cases; verdicts, exit codes, `--json`, stdin, `--follow`.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sockproxy");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn report(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("report")
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("COLUMNS")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run(args: &[&str]) -> Output {
    report(args).output().expect("sockproxy runs")
}

fn run_json(args: &[&str]) -> (Value, i32) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = run(&all);
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (v, out.status.code().expect("exit code"))
}

/// Record files of real runs of the end-to-end chain (tests/e2e), and hand-written cases:
/// the expected hypothesis is confirmed, the others are not.
const FIXTURES: &[(&str, &str)] = &[
    // file                        H1..H6
    ("healthy.jsonl", "R--RR-"),
    ("transparency.jsonl", "R--RR-"),
    ("h1-upgrade-stripped.jsonl", "C---R-"),
    ("h1-upgrade-stripped.jsonl.gz", "C---R-"),
    ("h2-no-affinity.log", "-C--R-"),
    ("cloud-logging-h2.json", "-C--R-"),
    ("h3-health-check.jsonl", "--C-R-"),
    ("h4-origin-host.jsonl", "R--CR-"),
    ("cloud-logging-h4.jsonl", "R--CR-"),
    ("h5-draining.jsonl", "R---C-"),
    ("h6-timeouts.log", "RR--RC"),
    ("h6-timeouts-busy.jsonl", "RR--RC"),
    // One session moved (edge-a → edge-b): below H2's minimum of two, so isolated.
    ("edge-cases.log", "RI-RR-"),
];

#[test]
fn each_fixture_gets_its_verdicts_and_exit_code() {
    for (file, want) in FIXTURES {
        let path = fixture(file);
        let (v, code) = run_json(&[path.to_str().unwrap()]);
        assert_eq!(support::verdicts(&v), *want, "{file}");
        let confirmed: Vec<String> = want
            .chars()
            .enumerate()
            .filter(|(_, c)| *c == 'C')
            .map(|(i, _)| format!("H{}", i + 1))
            .collect();
        assert_eq!(v["confirmed"], serde_json::json!(confirmed), "{file}");
        assert_eq!(code, i32::from(!confirmed.is_empty()), "{file}: exit code");
        let skipped = v["input"]["skipped"]["total"].as_u64().unwrap();
        assert_eq!(
            skipped > 0,
            *file == "edge-cases.log",
            "{file}: {}",
            v["input"]
        );
    }
}

#[test]
fn the_human_report_matches_the_json_verdicts() {
    for (file, want) in FIXTURES {
        let out = run(&[fixture(file).to_str().unwrap()]);
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.starts_with("sockproxy report: "),
            "{file}: summary first\n{text}"
        );
        assert!(
            !text.contains('\x1b'),
            "{file}: no colour when stdout is not a terminal"
        );
        for (i, v) in want.chars().enumerate() {
            let row = text
                .lines()
                .find(|l| l.starts_with(&format!("  H{} ", i + 1)))
                .unwrap_or_else(|| panic!("{file}: a row for H{}\n{text}", i + 1));
            let words = match v {
                'C' => "CONFIRMED",
                'I' => "isolated",
                'R' => "ruled out",
                _ => "no evidence",
            };
            assert!(
                row.contains(words),
                "{file}: H{} should be {words}: {row}",
                i + 1
            );
        }
        for (i, v) in want.chars().enumerate() {
            if v == 'C' {
                assert!(
                    text.contains(&format!("\nH{} CONFIRMED · ", i + 1)),
                    "{file}: detail block"
                );
            }
        }
        assert!(
            text.contains("\n  fix: ") == want.contains('C'),
            "{file}: a fix when confirmed"
        );
        assert!(text.contains("\nPicture\n"), "{file}");
        for line in text.lines() {
            assert!(
                line.chars().count() <= 100,
                "{file}: line fits a terminal: {line}"
            );
        }
    }
}

#[test]
fn evidence_names_records_pods_and_times() {
    // H2: the refusal on pod-b of a sid pod-a issued (prefix form, pod-b's lines first).
    let (v, _) = run_json(&[fixture("h2-no-affinity.log").to_str().unwrap()]);
    let h2 = &v["hypotheses"][1];
    assert_eq!(h2["id"], "H2");
    let first = &h2["examples"][0];
    assert_eq!(first["pod"], "pod-b");
    assert_eq!(first["id"], "86a86a-1");
    assert_eq!(first["time"], "2026-11-25T12:55:47.645096Z");
    let text = first["text"].as_str().unwrap();
    assert!(
        text.contains("bN3M3o6GpfraB4nbAAAA") && text.contains("issued on pod-a"),
        "{text}"
    );
    assert_eq!(h2["counts"]["sids_crossed"], 2);
    assert_eq!(h2["counts"]["sid_unknown_refusals"], 3);
    assert!(
        h2["summary"]
            .as_str()
            .unwrap()
            .contains("3 requests refused"),
        "{}",
        h2["summary"]
    );

    // H6: three quiet tunnels and a long-poll cut at the front's 3 s, then the session gone.
    let (v, _) = run_json(&[fixture("h6-timeouts.log").to_str().unwrap()]);
    let h6 = &v["hypotheses"][5];
    let summary = h6["summary"].as_str().unwrap();
    assert!(
        summary.contains("4 of 4 lifetimes") && summary.contains("≈3.000 s"),
        "{summary}"
    );
    assert_eq!(h6["counts"]["sessions_refused_after_cut_poll"], 1);
    assert!(
        h6["examples"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["pod"] == "pod-b")
    );
    let h2 = &v["hypotheses"][1];
    assert_eq!(
        h2["verdict"], "ruled_out",
        "the sid refused after the cut was issued on the same pod"
    );

    // H4: both rewrites and Theia's exact port check.
    let (v, _) = run_json(&[fixture("h4-origin-host.jsonl").to_str().unwrap()]);
    let c = &v["hypotheses"][3]["counts"];
    assert_eq!(
        (
            c["refused_origin_host_mismatch"].as_u64(),
            c["refused_port_only"].as_u64()
        ),
        (Some(4), Some(2))
    );

    // H3 and H5 name what the health checks got and what the drain cut.
    let (v, _) = run_json(&[fixture("h3-health-check.jsonl").to_str().unwrap()]);
    let s = v["hypotheses"][2]["summary"].as_str().unwrap().to_string();
    assert!(
        s.contains("GoogleHC/1.0 /health → 404") && s.contains("kube-probe/1.32"),
        "{s}"
    );
    let (v, _) = run_json(&[fixture("h5-draining.jsonl").to_str().unwrap()]);
    let h5 = &v["hypotheses"][4];
    assert_eq!(h5["counts"]["tunnels_closed_by_shutdown"], 1);
    assert!(
        h5["examples"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == "92f588-3")
    );
}

#[test]
fn json_shape() {
    let (v, _) = run_json(&[fixture("h6-timeouts.log").to_str().unwrap()]);
    for key in ["confirmed", "hypotheses", "picture", "input"] {
        assert!(v.get(key).is_some(), "{key}");
    }
    let hs = v["hypotheses"].as_array().unwrap();
    assert_eq!(hs.len(), 6);
    for (i, h) in hs.iter().enumerate() {
        assert_eq!(h["id"], format!("H{}", i + 1));
        for key in ["title", "summary", "fix"] {
            assert!(
                h[key].as_str().is_some_and(|s| !s.is_empty()),
                "H{} {key}",
                i + 1
            );
        }
        assert!(h["details"].is_array() && h["counts"].is_object() && h["examples"].is_array());
        for e in h["examples"].as_array().unwrap() {
            assert!(
                e["time"].is_string() && e["pod"].is_string() && e["text"].is_string(),
                "{e}"
            );
        }
    }
    let p = &v["picture"];
    assert_eq!(p["first"], "2026-11-25T12:55:48.703802Z");
    assert_eq!(p["last"], "2026-11-25T12:56:09.253582Z");
    assert_eq!(p["handshakes"]["polling"], 2);
    assert_eq!(p["handshakes"]["websocket_only"], 3);
    assert_eq!(p["upgrades"]["websocket_requests"], 4);
    assert_eq!(p["upgrades"]["succeeded"], 4);
    assert_eq!(p["upgrades"]["rate"], 1.0);
    assert_eq!(p["tunnels"]["closed_by"]["client"], 3);
    assert_eq!(p["tunnels"]["closed_by"]["upstream"], 1);
    assert_eq!(p["tunnels"]["open_at_end"], 0);
    assert_eq!(p["refusals_by_code"]["1"], 1);
    assert_eq!(p["long_polls_cut"], 1);
    let pods: Vec<&str> = p["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(pods, ["pod-a", "pod-b"]);
    assert_eq!(v["input"]["records"], 23);
    assert_eq!(v["input"]["by_event"]["tunnel_closed"], 4);
}

#[test]
fn edge_cases_are_counted_and_skipped_never_fatal() {
    let (v, code) = run_json(&[fixture("edge-cases.log").to_str().unwrap()]);
    assert_eq!(
        code, 0,
        "nothing confirmed: the one moved session is isolated"
    );
    let i = &v["input"];
    assert_eq!(i["records"], 10);
    let s = &i["skipped"];
    assert_eq!(
        [
            &s["not_json"],
            &s["invalid_json"],
            &s["truncated"],
            &s["not_a_record"],
            &s["total"]
        ],
        [1, 2, 1, 2, 6],
        "{s}"
    );
    // The pod comes from the record, else from the kubectl prefix, else from the Cloud
    // Logging resource; the refusal (a Cloud Logging entry) joins the handshake (plain line).
    let pods: Vec<&str> = v["picture"]["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(pods, ["edge-a", "edge-b"]);
    assert_eq!(v["hypotheses"][1]["examples"][0]["id"], "eb-1");
    // The upgrade came as a Cloud Logging textPayload; its close behind a prefix and a timestamp.
    assert_eq!(v["picture"]["tunnels"]["closed_by"]["client"], 1);
    assert_eq!(v["picture"]["tunnels"]["open_at_end"], 0);
    assert_eq!(v["picture"]["records_dropped"], 3);
    assert_eq!(v["picture"]["startup_failed"], 1);
}

#[test]
fn stdin_without_args_or_with_dash() {
    for args in [&[][..], &["-"][..]] {
        for file in ["h1-upgrade-stripped.jsonl", "h1-upgrade-stripped.jsonl.gz"] {
            let mut c = report(&[&["--json"][..], args].concat());
            c.stdin(std::fs::File::open(fixture(file)).unwrap());
            let out = c.output().unwrap();
            assert_eq!(out.status.code(), Some(1), "{file} {args:?}");
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(support::verdicts(&v), "C---R-", "{file} {args:?}");
            assert_eq!(v["input"]["sources"], serde_json::json!(["stdin"]));
        }
    }
}

#[test]
fn several_files_are_joined_across_pods() {
    // One file per pod, records without a pod field: the file names stand in for the pods,
    // and the handshake in one file joins the refusals in the other.
    let dir = support::temp_dir("report");
    let text = std::fs::read_to_string(fixture("h2-no-affinity.log")).unwrap();
    for pod in ["pod-a", "pod-b"] {
        let prefix = format!("[pod/{pod}/sockproxy] ");
        let lines: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|l| {
                let mut r: Value = serde_json::from_str(l).unwrap();
                r.as_object_mut().unwrap().remove("pod");
                r.to_string()
            })
            .collect();
        std::fs::write(dir.join(format!("{pod}.log")), lines.join("\n") + "\n").unwrap();
    }
    let (a, b) = (dir.join("pod-a.log"), dir.join("pod-b.log"));
    let (v, code) = run_json(&[b.to_str().unwrap(), a.to_str().unwrap()]);
    assert_eq!((support::verdicts(&v).as_str(), code), ("-C--R-", 1));
    let first = &v["hypotheses"][1]["examples"][0];
    assert_eq!(first["pod"], "pod-b.log");
    assert!(
        first["text"]
            .as_str()
            .unwrap()
            .contains("issued on pod-a.log")
    );

    // Two scenarios at once: both confirmed.
    let (v, code) = run_json(&[
        fixture("h1-upgrade-stripped.jsonl").to_str().unwrap(),
        fixture("h4-origin-host.jsonl").to_str().unwrap(),
    ]);
    assert_eq!(
        (v["confirmed"].clone(), code),
        (serde_json::json!(["H1", "H4"]), 1)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_cut_download_still_reports() {
    // A Cloud Logging export cut in the middle of an entry.
    let dir = support::temp_dir("report");
    let full = std::fs::read(fixture("cloud-logging-h2.json")).unwrap();
    let cut = dir.join("cut.json");
    std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
    let (v, code) = run_json(&[cut.to_str().unwrap()]);
    // The newest half holds one session's move (the other's handshake is cut off): one
    // move is below H2's minimum of two, so isolated, and nothing is confirmed.
    assert_eq!(
        (code, &v["confirmed"], &v["hypotheses"][1]["verdict"]),
        (0, &serde_json::json!([]), &serde_json::json!("isolated")),
        "half the H2 export"
    );
    assert_eq!(v["input"]["skipped"]["truncated"], 1);
    let records = v["input"]["records"].as_u64().unwrap();
    assert!(records > 0 && records < 13, "{records}");
    // An empty file: nothing to say, exit 0.
    let empty = dir.join("empty.log");
    std::fs::write(&empty, "").unwrap();
    let (v, code) = run_json(&[empty.to_str().unwrap()]);
    assert_eq!((support::verdicts(&v).as_str(), code), ("------", 0));
    let out = run(&[empty.to_str().unwrap()]);
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .starts_with("sockproxy report: no records")
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let missing = fixture("no-such-file.jsonl");
    let healthy = fixture("healthy.jsonl");
    let dir = support::temp_dir("report");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![missing.to_str().unwrap()], "no-such-file.jsonl"),
        (
            vec![healthy.to_str().unwrap(), missing.to_str().unwrap()],
            "no-such-file.jsonl",
        ),
        (vec![dir.to_str().unwrap()], "directory"),
        (vec!["-", "-"], "stdin"),
        (vec!["--follow", healthy.to_str().unwrap(), "-"], "--follow"),
        (vec!["--color", "sometimes"], "sometimes"),
        (vec!["--no-such-flag"], "--no-such-flag"),
    ];
    for (args, mentions) in cases {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.contains(mentions), "{args:?}: {err}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let f = fixture("h5-draining.jsonl");
    let plain = run(&[f.to_str().unwrap()]);
    assert!(!String::from_utf8(plain.stdout).unwrap().contains('\x1b'));
    let always = run(&["--color", "always", f.to_str().unwrap()]);
    let text = String::from_utf8(always.stdout).unwrap();
    assert!(text.contains("\x1b[1;31mCONFIRMED"), "{text}");
    let mut c = report(&["--color", "auto", f.to_str().unwrap()]);
    let out = c.env("NO_COLOR", "1").output().unwrap();
    assert!(!String::from_utf8(out.stdout).unwrap().contains('\x1b'));
}

/// Spawns `report --follow` on a pipe; returns the child, its stdin, and its stdout lines.
fn follow(
    args: &[&str],
) -> (
    std::process::Child,
    std::process::ChildStdin,
    mpsc::Receiver<String>,
) {
    let mut child = report(args).stdin(Stdio::piped()).spawn().unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    (child, stdin, rx)
}

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn follow_prints_a_line_as_soon_as_a_verdict_changes() {
    let text = std::fs::read_to_string(fixture("h1-upgrade-stripped.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let first_h1 = lines
        .iter()
        .position(|l| l.contains("upgrade_header_missing"))
        .unwrap();
    let (mut child, mut stdin, rx) = follow(&["--follow"]);
    for l in &lines[..=first_h1] {
        writeln!(stdin, "{l}").unwrap();
    }
    stdin.flush().unwrap();
    // The input is still open: the notice comes from the record just written.
    let notice = rx
        .recv_timeout(WAIT)
        .expect("a notice while the input is still open");
    // One stripped attempt is below H1's minimum of two: seen, not yet acted on.
    assert!(notice.contains("H1 no evidence → isolated"), "{notice}");
    assert!(
        notice.starts_with("12:55:47.580"),
        "the time of the record: {notice}"
    );
    for l in &lines[first_h1 + 1..] {
        writeln!(stdin, "{l}").unwrap();
    }
    drop(stdin);
    let rest: Vec<String> = rx.iter().collect();
    assert!(rest[0].contains("H1 isolated → CONFIRMED"), "{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("H5 no evidence → ruled out")),
        "{rest:?}"
    );
    assert!(
        rest.iter()
            .any(|l| l.starts_with("sockproxy report: 15 records")),
        "{rest:?}"
    );
    assert_eq!(child.wait().unwrap().code(), Some(1));
}

#[test]
fn follow_json_prints_json_lines() {
    let text = std::fs::read_to_string(fixture("h6-timeouts.log")).unwrap();
    let (mut child, mut stdin, rx) = follow(&["--follow", "--json"]);
    stdin.write_all(text.as_bytes()).unwrap();
    drop(stdin);
    let lines: Vec<Value> = rx
        .iter()
        .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let (last, changes) = lines.split_last().unwrap();
    assert_eq!(last["event"], "report");
    assert_eq!(last["confirmed"], serde_json::json!(["H6"]));
    for c in changes {
        assert_eq!(c["event"], "verdict_changed", "{c}");
        assert!(c["from"].is_string() && c["to"].is_string() && c["hypothesis"].is_string());
    }
    assert!(
        changes
            .iter()
            .any(|c| c["hypothesis"] == "H6" && c["to"] == "confirmed")
    );
    assert_eq!(child.wait().unwrap().code(), Some(1));
}

#[test]
fn follow_prints_the_report_so_far_on_ctrl_c() {
    let text = std::fs::read_to_string(fixture("h5-draining.jsonl")).unwrap();
    let (mut child, mut stdin, rx) = follow(&["--follow"]);
    stdin.write_all(text.as_bytes()).unwrap();
    stdin.flush().unwrap();
    // The input stays open, as with `kubectl logs -f`.
    let notice = (0..10)
        .map_while(|_| rx.recv_timeout(WAIT).ok())
        .find(|l| l.contains("H5 no evidence → CONFIRMED"))
        .expect("the H5 notice");
    assert!(notice.contains("1 tunnel closed by shutdown"), "{notice}");
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let rest: Vec<String> = rx.iter().collect();
    assert!(
        rest.iter()
            .any(|l| l.starts_with("sockproxy report: 9 records")),
        "{rest:?}"
    );
    assert_eq!(child.wait().unwrap().code(), Some(1));
    drop(stdin);
}

#[test]
fn sockproxy_own_refusals_and_limits_are_counted() {
    let (v, _) = run_json(&[fixture("limits.jsonl").to_str().unwrap()]);
    let p = &v["picture"];
    assert_eq!(p["client_errors"], 1);
    assert_eq!(p["connection_limits"], 1);
    assert_eq!(p["tunnels"]["closed_by"]["idle_timeout"], 1);
    assert_eq!(p["tunnels"]["closed_by"]["unknown"], 0);
    let text = String::from_utf8(run(&[fixture("limits.jsonl").to_str().unwrap()]).stdout).unwrap();
    assert!(text.contains("refused by sockproxy itself"), "{text}");
}
