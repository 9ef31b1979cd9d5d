//! `sockproxy report` with the load balancer's own log: the built binary on the records and
//! the front's LB-format log of real end-to-end runs (tests/e2e: H1, H3, H6), and on a
//! hand-made `gcloud logging read` export with one entry per `statusDetails` family
//! (tests/fixtures/lb-families.py writes it).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sockproxy");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn e2e(scenario: &str, what: &str) -> String {
    fixture(&format!("lb-e2e/{scenario}.{what}.jsonl"))
        .display()
        .to_string()
}

fn report(args: &[&str]) -> (String, i32) {
    let out = Command::new(BIN)
        .arg("report")
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("COLUMNS")
        .stdin(Stdio::null())
        .output()
        .expect("sockproxy runs");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).expect("UTF-8"),
        out.status.code().expect("exit code"),
    )
}

fn json(args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (out, _) = report(&all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn counts(v: &Value, id: &str, key: &str) -> u64 {
    v["hypotheses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == id)
        .and_then(|h| h["counts"][key].as_u64())
        .unwrap_or(0)
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let p = support::temp_dir("lb").join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn real_runs_name_the_cause_from_both_ends() {
    // (scenario, verdicts of the records alone, with the LB log, hypothesis, LB count, value)
    let cases = [
        (
            "h1-upgrade-stripped",
            "C---R-",
            "C---R-",
            "H1",
            "lb_stripped_passed_to_pod",
            2,
        ),
        (
            "h3-health-check",
            "--C-R-",
            "--C-R-",
            "H3",
            "lb_no_healthy_backend_while_theia_up",
            3,
        ),
        (
            "h6-timeouts",
            "RR--RC",
            "RR--RC",
            "H6",
            "lb_websockets_cut",
            3,
        ),
    ];
    for (scenario, alone, joined, id, key, want) in cases {
        let records = e2e(scenario, "records");
        let lb = e2e(scenario, "lb");
        let v = json(&[&records]);
        assert_eq!(support::verdicts(&v), alone, "{scenario}: records alone");
        assert_eq!(v["load_balancer"]["entries"], 0, "{scenario}");
        let v = json(&[&records, &lb]);
        assert_eq!(support::verdicts(&v), joined, "{scenario}: with the LB log");
        assert_eq!(counts(&v, id, key), want, "{scenario}: {id} {key}");
        let j = &v["load_balancer"]["join"];
        assert_eq!(
            j["no_trace"], 0,
            "{scenario}: the front always sets a trace"
        );
        // Each LB entry is either joined or never reached a pod: the front's pods are all
        // in the records.
        let total = v["load_balancer"]["entries"].as_u64().unwrap();
        let joined_or_never = j["matched"].as_u64().unwrap()
            + j["status_differs"].as_u64().unwrap()
            + j["never_reached_a_pod"].as_u64().unwrap();
        assert_eq!(joined_or_never, total, "{scenario}: {j}");
    }
}

#[test]
fn h3_from_the_load_balancer_alone_when_no_check_is_recorded() {
    // pod-b ran without --log-all: its records hold no health check, only a handshake; the
    // load balancer's failed_to_pick_backend entries, while theia answered there, name H3.
    let all = std::fs::read_to_string(e2e("h3-health-check", "records")).unwrap();
    let pod_b: String = all
        .lines()
        .filter(|l| l.contains(r#""pod":"pod-b""#))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!pod_b.is_empty());
    let records = temp_file("pod-b.jsonl", &pod_b);
    let records = records.to_str().unwrap();
    let alone = json(&[records]);
    assert_eq!(
        &support::verdicts(&alone)[2..3],
        "-",
        "no check in pod-b's records"
    );
    let lb = e2e("h3-health-check", "lb");
    let v = json(&[records, &lb]);
    assert_eq!(&support::verdicts(&v)[2..3], "C");
    let h3 = &v["hypotheses"][2];
    let summary = h3["summary"].as_str().unwrap();
    assert!(
        summary.contains("failed_to_pick_backend") && summary.contains("pod-b"),
        "{summary}"
    );
    assert!(
        h3["details"][0]
            .as_str()
            .unwrap()
            .starts_with("sockproxy's records alone: "),
        "{h3}"
    );
    // The LB log alone: no pod answered anything, so the check is not blamed.
    let v = json(&[&lb]);
    assert_eq!(&support::verdicts(&v)[2..3], "-", "{}", v["hypotheses"][2]);
    assert_eq!(counts(&v, "H3", "lb_no_healthy_backend"), 3);
    assert_eq!(counts(&v, "H3", "lb_no_healthy_backend_while_theia_up"), 0);
}

#[test]
fn h6_tunnels_and_the_lb_websockets_are_one_and_the_same() {
    let v = json(&[&e2e("h6-timeouts", "records"), &e2e("h6-timeouts", "lb")]);
    let w = &v["load_balancer"]["websockets"];
    assert_eq!(w["total"], 4);
    assert_eq!(w["by_family"]["backend_timeout"], 3);
    assert_eq!(w["by_family"]["websocket_closed"], 1);
    assert_eq!(w["joined_to_tunnel"], 4);
    assert_eq!(w["tunnel_closed_by"]["client"], 3);
    // The LB's websocket starts before sockproxy's tunnel (the 101 comes later) and ends at
    // the same cut: its lifetime is a little longer, never shorter.
    let gap = &w["lifetime_gap_ms"];
    let (lo, hi) = (gap["min"].as_f64().unwrap(), gap["max"].as_f64().unwrap());
    assert!(lo >= 0.0 && hi < 1000.0, "{gap}");
    let timeout = &w["backend_timeout_ms"];
    assert!(timeout["min"].as_f64().unwrap() >= 3000.0, "{timeout}");
    let differs = &v["load_balancer"]["status_differs"];
    assert_eq!(
        differs,
        &serde_json::json!([{"sockproxy_status": 0, "browser_status": 504, "status_details": "backend_timeout", "count": 1}])
    );
    let changes = &v["load_balancer"]["changes"];
    assert_eq!(
        changes["path_rewrites"],
        serde_json::json!([{"load_balancer": "/theia", "sockproxy": "", "count": 12}])
    );
    assert_eq!(changes["client_ip_is_first_xff"], 12);
    assert_eq!(changes["user_agent_differs"], 0);
}

#[test]
fn every_status_details_family_and_entries_without_a_match() {
    let path = fixture("lb-families.json");
    let v = json(&[path.to_str().unwrap()]);
    let lb = &v["load_balancer"];
    assert_eq!(lb["entries"], 21);
    assert_eq!(lb["duplicates"], 1);
    assert_eq!(lb["other_load_balancers"], 1);
    assert_eq!(lb["malformed_traces"], 1);
    assert_eq!(lb["sockproxy_exchanges_with_trace"], 5);
    assert_eq!(lb["sockproxy_exchanges_without_trace"], 1);
    assert_eq!(
        lb["join"],
        serde_json::json!({
            "no_trace": 2, "matched": 4, "status_differs": 1, "never_reached_a_pod": 8,
            "client_left_unseen": 1, "unexplained": 2, "backend_answered_unseen": 2,
            "outside_records": 1,
        })
    );
    let never: Vec<(String, u64, u64)> = lb["never_reached_a_pod"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["status_details"].as_str().unwrap().to_string(),
                d["status"].as_u64().unwrap(),
                d["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64, u64)> = [
        ("failed_to_pick_backend", 502, 3),
        ("client_cert_not_provided", 0, 1),
        ("config_not_found", 502, 1),
        ("denied_by_security_policy", 403, 1),
        ("failed_to_connect_to_backend", 502, 1),
        ("upgrade_header_rejected", 400, 1),
    ]
    .iter()
    .map(|(d, s, n)| (d.to_string(), *s, *n))
    .collect();
    assert_eq!(never, want);
    assert_eq!(
        lb["status_differs"],
        serde_json::json!([{"sockproxy_status": 200, "browser_status": 502, "status_details": "backend_connection_closed_before_data_sent_to_client", "count": 1}])
    );
    // H3 from the LB (3 of the 4 failed_to_pick_backend within 30 s of theia answering; the
    // fourth is two hours later); H6 isolated: one cut, and a longer websocket on the same
    // backend service; H1's one stripped attempt stays isolated.
    assert_eq!(support::verdicts(&v), "I-CR-I");
    assert_eq!(counts(&v, "H3", "lb_no_healthy_backend"), 4);
    assert_eq!(counts(&v, "H3", "lb_no_healthy_backend_while_theia_up"), 3);
    assert_eq!(counts(&v, "H6", "lb_outlived_timeout"), 1);
    assert_eq!(counts(&v, "H1", "lb_upgrade_header_rejected"), 1);
    let rows = lb["requests"].as_array().unwrap();
    assert_eq!(lb["requests_notable"].as_u64().unwrap(), rows.len() as u64);
    let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert!(
        kinds
            .iter()
            .all(|k| *k != "matched" && *k != "outside_records")
            || rows.iter().any(|r| r["browser_status"] == 101),
        "{kinds:?}"
    );
    let times: Vec<&str> = rows.iter().filter_map(|r| r["time"].as_str()).collect();
    let mut sorted = times.clone();
    sorted.sort_unstable();
    assert_eq!(times, sorted, "requests listed earliest first");
}

#[test]
fn separate_files_in_any_order_join_the_same() {
    let all: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture("lb-families.json")).unwrap())
            .unwrap();
    let (lb, records): (Vec<&Value>, Vec<&Value>) = all
        .iter()
        .partition(|e| e["resource"]["type"] != "k8s_container");
    // The LB part as JSON lines (a log sink), oldest first; the records as a JSON array.
    let mut lines = String::new();
    for e in lb.iter().rev() {
        lines.push_str(&format!("{e}\n"));
    }
    let lb = temp_file("lb.jsonl", &lines);
    let records = temp_file(
        "records.json",
        &serde_json::to_string_pretty(&records).unwrap(),
    );
    let (lb, records) = (lb.to_str().unwrap(), records.to_str().unwrap());
    let whole = json(&[fixture("lb-families.json").to_str().unwrap()]);
    for order in [[lb, records], [records, lb]] {
        let v = json(&order);
        assert_eq!(
            support::verdicts(&v),
            support::verdicts(&whole),
            "{order:?}"
        );
        let mut a = v["load_balancer"].clone();
        let mut b = whole["load_balancer"].clone();
        for x in [&mut a, &mut b] {
            x["requests"] = Value::Null;
        }
        assert_eq!(a, b, "{order:?}");
    }
}

#[test]
fn the_text_report_has_a_load_balancer_section_only_with_its_log() {
    let records = e2e("h6-timeouts", "records");
    let (text, code) = report(&[&records]);
    assert_eq!(code, 1, "H6 confirmed");
    assert!(!text.contains("Load balancer"), "{text}");
    let (text, code) = report(&[&records, &e2e("h6-timeouts", "lb")]);
    assert_eq!(code, 1);
    for want in [
        "Load balancer (its own log, joined by trace id)",
        "12 read; 0 of 12 had no trace id",
        "12 of 12 entries with a trace matched",
        "sockproxy no answer → browser 504 backend_timeout ×1",
        "3 × backend_timeout after",
        "path prefix rewritten: /theia → (nothing) ×12",
        "the load balancer ended 4 connections (3 of them websockets) with backend_timeout",
    ] {
        assert!(
            text.replace('\n', " ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .contains(want),
            "missing {want:?} in:\n{text}"
        );
    }
}
