//! `sockproxy report --html FILE` as a user runs it: the built binary on the record files of
//! real end-to-end runs. The page carries the same verdicts as `--json`, draws what the
//! records hold (a bar per session, a mark per refusal, H6's cut-off where the verdict
//! found one), keeps values from the records inert, and stays small on a big input.
//! (The page in a real browser: tests/e2e/tools/html-check.js.)

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sockproxy");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn report(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("report")
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("COLUMNS")
        .stdin(Stdio::null())
        .output()
        .expect("sockproxy runs")
}

/// The page for `inputs`, and the exit code.
fn page_of(inputs: &[&Path]) -> (String, i32) {
    let out_file = support::temp_dir("html").join("report.html");
    let mut args = vec!["--html", out_file.to_str().unwrap()];
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    let out = report(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wrote "), "{stderr}");
    let page = std::fs::read_to_string(&out_file).expect("the page was written");
    (page, out.status.code().expect("exit code"))
}

fn json_of(input: &Path) -> Value {
    let out = report(&["--json", input.to_str().unwrap()]);
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// The records of a file (JSON lines, or `kubectl logs --prefix` lines).
fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The value of `attr` in each element whose tag holds `marker`.
fn attr_values<'p>(page: &'p str, marker: &str, attr: &str) -> Vec<&'p str> {
    let needle = format!("{attr}=\"");
    page.match_indices(marker)
        .map(|(i, _)| {
            let tag_end = page[i..].find('>').map_or(page.len(), |e| i + e);
            let tag = &page[i..tag_end];
            let at = tag
                .find(&needle)
                .unwrap_or_else(|| panic!("{attr} in {tag}"));
            let rest = &tag[at + needle.len()..];
            &rest[..rest.find('"').expect("closing quote")]
        })
        .collect()
}

const DRAWN: &[&str] = &["h2-no-affinity.log", "h5-draining.jsonl", "h6-timeouts.log"];

#[test]
fn the_page_carries_the_json_verdicts_and_the_same_exit_code() {
    for file in DRAWN {
        let path = fixture(file);
        let v = json_of(&path);
        let (page, code) = page_of(&[&path]);
        let confirmed = !v["confirmed"].as_array().unwrap().is_empty();
        assert_eq!(code, i32::from(confirmed), "{file}");
        let ids = attr_values(&page, "<tr data-id=", "data-id");
        let verdicts = attr_values(&page, "<tr data-id=", "data-verdict");
        let want: Vec<(&str, &str)> = v["hypotheses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["id"].as_str().unwrap(), h["verdict"].as_str().unwrap()))
            .collect();
        let got: Vec<(&str, &str)> = ids.into_iter().zip(verdicts).collect();
        assert_eq!(got, want, "{file}");
        for h in v["hypotheses"].as_array().unwrap() {
            if h["verdict"] == "confirmed" {
                let fix = h["fix"].as_str().unwrap().replace('\'', "&#39;");
                assert!(page.contains(&fix), "{file}: the fix of {}", h["id"]);
            }
        }
        assert!(page.starts_with("<!doctype html>"), "{file}");
        assert!(page.trim_end().ends_with("</html>"), "{file}");
    }
}

#[test]
fn a_bar_per_session_and_a_mark_per_refusal() {
    for file in DRAWN {
        let path = fixture(file);
        let recs = records(&path);
        let sids: HashSet<&str> = recs
            .iter()
            .filter_map(|r| r["sio"]["sid"].as_str())
            .filter(|s| !s.is_empty())
            .collect();
        let refusals = recs
            .iter()
            .filter(|r| r["event"] == "request" && r["sio"].is_object())
            .filter(|r| (400..500).contains(&r["status"].as_u64().unwrap_or(0)))
            .count();
        let (page, _) = page_of(&[&path]);
        let bars = attr_values(&page, "data-k=\"bar\"", "data-sid");
        assert_eq!(bars.len(), sids.len(), "{file}: bars");
        let drawn: HashSet<&str> = bars.into_iter().collect();
        assert_eq!(drawn, sids, "{file}: the sessions drawn");
        let marks: u64 = attr_values(&page, "data-k=\"refusal\"", "data-n")
            .iter()
            .map(|n| n.parse::<u64>().unwrap())
            .sum();
        assert_eq!(marks, refusals as u64, "{file}: refusal marks");
        let tunnels = recs
            .iter()
            .filter(|r| r["event"] == "tunnel_closed")
            .count();
        let in_histogram: u64 = attr_values(&page, "data-k=\"hbin\"", "data-n")
            .iter()
            .zip(attr_values(&page, "data-k=\"hbin\"", "data-series"))
            .filter(|(_, s)| *s != "poll")
            .map(|(n, _)| n.parse::<u64>().unwrap())
            .sum();
        assert_eq!(in_histogram, tunnels as u64, "{file}: tunnel lifetimes");
        for (event, k) in [
            ("listening", "start"),
            ("draining", "drain"),
            ("stopped", "stop"),
        ] {
            let n = recs.iter().filter(|r| r["event"] == event).count();
            let marker = format!("data-k=\"{k}\"");
            assert_eq!(page.matches(&marker).count(), n, "{file}: {event}");
        }
    }
}

#[test]
fn the_cut_off_is_drawn_where_h6_found_its_cluster() {
    for file in DRAWN {
        let path = fixture(file);
        let v = json_of(&path);
        let h6 = &v["hypotheses"][5];
        let (page, _) = page_of(&[&path]);
        let cutoff = attr_values(&page, "data-k=\"cutoff\"", "data-ms");
        if h6["counts"]["cluster"].as_u64().unwrap() == 0 {
            assert_eq!(cutoff, Vec::<&str>::new(), "{file}: no cluster, no line");
            continue;
        }
        assert_eq!(cutoff.len(), 1, "{file}");
        let ms: f64 = cutoff[0].parse().unwrap();
        // The run's front cut at 3 s: the lifetimes end just under it.
        assert!((2500.0..=3500.0).contains(&ms), "{file}: {ms}");
        let shown = format!("≈{:.3} s", ms / 1000.0);
        let summary = h6["summary"].as_str().unwrap();
        assert!(
            summary.contains(&shown),
            "{file}: the line is the verdict's value: {shown} in {summary}"
        );
    }
}

#[test]
fn per_pod_counts_agree_with_the_text_report() {
    for file in DRAWN {
        let path = fixture(file);
        let v = json_of(&path);
        let (page, _) = page_of(&[&path]);
        for pod in v["picture"]["pods"].as_array().unwrap() {
            let name = pod["name"].as_str().unwrap();
            let row_start = page
                .find(&format!("<tr data-pod=\"{name}\">"))
                .unwrap_or_else(|| panic!("{file}: a row for {name}"));
            let row = &page[row_start..row_start + page[row_start..].find("</tr>").unwrap()];
            let cells: Vec<f64> = attr_values(row, "<td data-v=", "data-v")
                .iter()
                .map(|c| c.parse().unwrap())
                .collect();
            // records, requests, refusals, sid unknown, upgrades, tunnels, median, longest,
            // starts, drains
            let pick = |i: usize| cells[i] as u64;
            let got = [pick(0), pick(2), pick(4), pick(5), pick(8), pick(9)];
            let want = [
                "records",
                "refusals",
                "upgrades",
                "tunnels_closed",
                "starts",
                "drains",
            ]
            .map(|k| pod[k].as_u64().unwrap());
            assert_eq!(got, want, "{file}: {name}");
        }
    }
}

#[test]
fn values_from_records_stay_inert() {
    let dir = support::temp_dir("html");
    let evil = dir.join("evil.jsonl");
    let script = "<script>window.__pwned=1</script>";
    let lines = [
        r#"{"time":"2026-11-25T12:00:00.000000Z","event":"listening","pod":"pod-<b>x</b>\"'"}"#
            .to_string(),
        format!(
            r#"{{"time":"2026-11-25T12:00:01.000000Z","event":"request","pod":"pod-<b>x</b>\"'","id":"<img src=x onerror=alert(1)>","method":"GET","path":"/socket.io/","sio":{{"transport":"polling","sid":"\"><svg onload=alert(1)>","handshake":true}},"status":200,"headers":{{"user-agent":"{script}","origin":"{script}","host":"h"}},"httpRequest":{{"remoteIp":"</td>{script}"}}}}"#
        ),
        format!(
            r#"{{"time":"2026-11-25T12:00:02.000000Z","event":"request","pod":"b","id":"2","method":"GET","path":"/socket.io/","sio":{{"transport":"polling","sid":"\"><svg onload=alert(1)>","handshake":false}},"status":400,"sio_error":{{"code":null,"message":"{script}"}},"flags":["sid_unknown","sid_not_issued_here"],"httpRequest":{{"remoteIp":"</td>{script}"}}}}"#
        ),
    ];
    std::fs::write(&evil, lines.join("\n")).unwrap();
    let (page, _) = page_of(&[&evil]);
    assert_eq!(
        page.matches("<script").count(),
        1,
        "only the page's own script"
    );
    for raw in [
        "__pwned=1</script>",
        "<img src=x",
        "<svg onload",
        "<b>x</b>",
        "</td><script",
    ] {
        assert!(!page.contains(raw), "{raw} written as markup");
    }
    assert!(page.contains("&lt;script&gt;window.__pwned=1&lt;/script&gt;"));
    assert!(page.contains("pod-&lt;b&gt;x&lt;/b&gt;&quot;&#39;"));
    let policy = attr_values(&page, "http-equiv=\"Content-Security-Policy\"", "content");
    assert_eq!(policy.len(), 1);
    assert!(
        policy[0].starts_with("default-src 'none';") && policy[0].contains("script-src 'sha256-"),
        "{}",
        policy[0]
    );
}

#[test]
fn an_unwritable_page_fails_before_reading() {
    let out = report(&[
        "--html",
        "/nonexistent-dir/report.html",
        fixture("h6-timeouts.log").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot write /nonexistent-dir/report.html"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing reported");
}

#[test]
fn follow_writes_the_page_when_the_input_ends() {
    let dir = support::temp_dir("html");
    let out_file = dir.join("follow.html");
    let input = std::fs::File::open(fixture("h5-draining.jsonl")).unwrap();
    let out = Command::new(BIN)
        .args(["report", "--follow", "--html", out_file.to_str().unwrap()])
        .stdin(input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "H5 confirmed");
    let page = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(
        attr_values(&page, "<tr data-id=\"H5\"", "data-verdict"),
        ["confirmed"]
    );
}

/// A day of sessions on 12 pods, about `n` records, as JSON lines.
fn big_log(n: usize) -> String {
    let mut out = String::with_capacity(n * 330);
    let mut i = 0u64;
    let base = 1_795_000_000_000_000i64;
    let t = |us: i64| {
        let s = us / 1_000_000;
        let (h, m, sec) = (s / 3600 % 24, s / 60 % 60, s % 60);
        format!("2026-11-25T{h:02}:{m:02}:{sec:02}.{:06}Z", us % 1_000_000)
    };
    let mut written = 0;
    while written < n {
        i += 1;
        let pod = format!("theia-7d9f8b6c5-p{:02}", i % 12);
        let at = base + (i as i64) * 170_000;
        let sid = format!("s{i:019}");
        let life_ms = if i.is_multiple_of(3) {
            29_900.0 + (i % 97) as f64
        } else {
            1000.0 + (i * 7919 % 27_000) as f64
        };
        out.push_str(&format!(
            r#"{{"time":"{}","event":"request","pod":"{pod}","id":"{i}-1","method":"GET","path":"/socket.io/","sio":{{"transport":"polling","sid":"{sid}","handshake":true}},"status":200,"duration_ms":3.1,"headers":{{"user-agent":"Mozilla/5.0 ({i})"}},"httpRequest":{{"remoteIp":"10.{}.{}.{}"}}}}"#,
            t(at),
            i % 200,
            i / 200 % 250,
            i % 7
        ));
        out.push('\n');
        out.push_str(&format!(
            r#"{{"time":"{}","event":"upgrade","pod":"{pod}","id":"{i}-2","method":"GET","path":"/socket.io/","sio":{{"transport":"websocket","sid":"{sid}"}},"status":101,"duration_ms":1.2}}"#,
            t(at + 40_000)
        ));
        out.push('\n');
        out.push_str(&format!(
            r#"{{"time":"{}","event":"tunnel_closed","pod":"{pod}","id":"{i}-2","sio":{{"sid":"{sid}"}},"duration_ms":{life_ms},"closed_by":"client"}}"#,
            t(at + 40_000 + (life_ms * 1000.0) as i64)
        ));
        out.push('\n');
        written += 3;
        if i.is_multiple_of(10) {
            out.push_str(&format!(
                r#"{{"time":"{}","event":"request","pod":"theia-7d9f8b6c5-p{:02}","id":"{i}-3","method":"GET","path":"/socket.io/","sio":{{"transport":"polling","sid":"{sid}","handshake":false}},"status":400,"sio_error":{{"code":1,"message":"Session ID unknown"}},"flags":["sid_unknown","sid_not_issued_here"]}}"#,
                t(at + 60_000),
                (i + 1) % 12
            ));
            out.push('\n');
            written += 1;
        }
    }
    out
}

#[test]
fn a_big_log_gives_a_bounded_page_with_every_refusal_counted() {
    let n = 150_000;
    let dir = support::temp_dir("html");
    let path = dir.join("big.jsonl");
    std::fs::write(&path, big_log(n)).unwrap();
    let (page, code) = page_of(&[&path]);
    assert_eq!(code, 1, "H6 confirmed (a third of the tunnels cut at 30 s)");
    assert!(page.len() < 4 * 1024 * 1024, "{} bytes", page.len());
    let bars = page.matches("data-k=\"bar\"").count();
    assert!((1000..=4000).contains(&bars), "sampled: {bars} bars");
    let refusals = n / 31;
    let marks: u64 = attr_values(&page, "data-k=\"refusal\"", "data-n")
        .iter()
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    assert!(
        (marks as usize).abs_diff(refusals) <= 1,
        "every refusal counted in the marks: {marks} vs {refusals}"
    );
    assert!(
        page.matches("data-k=\"refusal\"").count() <= 12 * 1080 / 4,
        "grouped per few pixels"
    );
    let cutoff = attr_values(&page, "data-k=\"cutoff\"", "data-ms");
    assert_eq!(cutoff.len(), 1);
    let ms: f64 = cutoff[0].parse().unwrap();
    assert!((29_900.0..=30_000.0).contains(&ms), "{ms}");
}
