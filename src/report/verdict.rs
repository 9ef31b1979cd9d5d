//! What a verdict is: the four verdicts, a finding (verdict, evidence, denominators, the
//! rule applied, the fix), and the six findings in order. Each hypothesis' own rule lives
//! in its module (`h1` … `h6`). Pure.

use super::evidence::Example;

/// A verdict.
///
/// - `Confirmed`: the hypothesis explains client-visible failures in these records, with
///   enough of them (by its documented threshold) to act on.
/// - `Isolated`: its signature was seen, but too rarely, or in a shape, that does not
///   explain failures (one bot, one client's proxy, a start-up blip).
/// - `RuledOut`: positive evidence against it.
/// - `NoEvidence`: the records cannot tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Confirmed,
    Isolated,
    RuledOut,
    NoEvidence,
}

impl Verdict {
    pub fn key(self) -> &'static str {
        match self {
            Verdict::Confirmed => "confirmed",
            Verdict::Isolated => "isolated",
            Verdict::RuledOut => "ruled_out",
            Verdict::NoEvidence => "no_evidence",
        }
    }

    pub fn words(self) -> &'static str {
        match self {
            Verdict::Confirmed => "CONFIRMED",
            Verdict::Isolated => "isolated",
            Verdict::RuledOut => "ruled out",
            Verdict::NoEvidence => "no evidence",
        }
    }
}

/// One hypothesis' verdict and what it rests on.
#[derive(Clone, Debug)]
pub struct Finding {
    pub id: &'static str,
    pub title: &'static str,
    pub verdict: Verdict,
    /// One line, with its denominators ("12 of 4,213 …").
    pub summary: String,
    /// Further evidence, one line each.
    pub details: Vec<String>,
    pub counts: Vec<(&'static str, u64)>,
    pub examples: Vec<Example>,
    /// The rule and its thresholds, in words.
    pub rule: &'static str,
    pub fix: &'static str,
}

pub const TITLES: [(&str, &str); 6] = [
    ("H1", "Upgrade headers stripped"),
    ("H2", "no session affinity"),
    ("H3", "health check failing"),
    ("H4", "Origin/Host rewritten"),
    ("H5", "draining kills sessions"),
    ("H6", "backend timeout too short"),
];

/// Examples shown for a finding that draws on several kinds of evidence.
pub const MAX_SHOWN: usize = 5;

impl Finding {
    /// Hypothesis `i` (0-based) with no evidence, details or examples yet.
    pub fn new(
        i: usize,
        verdict: Verdict,
        summary: String,
        rule: &'static str,
        fix: &'static str,
    ) -> Finding {
        Finding {
            id: TITLES[i].0,
            title: TITLES[i].1,
            verdict,
            summary,
            details: Vec::new(),
            counts: Vec::new(),
            examples: Vec::new(),
            rule,
            fix,
        }
    }
}

/// `1 request`, `2 requests`; thousands grouped (`4,213`).
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// `4,213`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `12 of 4,213`.
pub fn of(n: u64, total: u64) -> String {
    format!("{} of {}", count(n), count(total))
}

/// Whether `n` is at least `share` of `total` (false when `total` is 0).
pub fn share_at_least(n: u64, total: u64, share: f64) -> bool {
    total > 0 && (n as f64) >= share * (total as f64)
}

/// The earliest `n` examples, in time order.
pub fn earliest(n: usize, examples: impl IntoIterator<Item = Example>) -> Vec<Example> {
    let mut ex: Vec<Example> = examples.into_iter().collect();
    ex.sort_by_key(|e| e.time.unwrap_or(i64::MAX));
    ex.truncate(n);
    ex
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The six verdicts (C confirmed, I isolated, R ruled out, - no evidence) for records given as
    /// (pod, second, JSON fields after the common ones).
    fn verdicts_of(records: &[(&str, u32, &str)]) -> String {
        use crate::report::analyze::Analyzer;
        use crate::report::parse::{Parsed, Rec, parse};
        let mut a = Analyzer::new();
        for (pod, sec, fields) in records {
            let line = format!(
                r#"{{"time":"2026-11-25T12:{:02}:{:02}.000000Z","pod":"{pod}",{fields}}}"#,
                sec / 60,
                sec % 60
            );
            let Parsed::Record(raw) = parse(line.as_bytes()) else {
                panic!("not a record: {line}");
            };
            let rec = Rec::of(&raw).expect("a record");
            a.record(&rec, "?");
        }
        crate::report::findings::all(&a)
            .iter()
            .map(|f| match f.verdict {
                Verdict::Confirmed => 'C',
                Verdict::Isolated => 'I',
                Verdict::RuledOut => 'R',
                Verdict::NoEvidence => '-',
            })
            .collect()
    }

    const HANDSHAKE: &str = r#""event":"request","id":"h","method":"GET","sio":{"transport":"polling","sid":"S","handshake":true},"status":200,"headers":{"origin":"https://ide.example.com","host":"ide.example.com"}"#;
    const HANDSHAKE_T: &str = r#""event":"request","id":"h2","method":"GET","sio":{"transport":"polling","sid":"T","handshake":true},"status":200,"headers":{"origin":"https://ide.example.com","host":"ide.example.com"}"#;
    const REFUSED_T: &str = r#""event":"request","id":"r2","method":"GET","sio":{"transport":"polling","sid":"T","handshake":false},"status":400,"sio_error":{"code":1,"message":"Session ID unknown"},"flags":["sid_unknown","sid_not_issued_here"]"#;
    const POLL: &str = r#""event":"request","id":"p","method":"GET","sio":{"transport":"polling","sid":"S","handshake":false},"status":200"#;
    const REFUSED: &str = r#""event":"request","id":"r","method":"GET","sio":{"transport":"polling","sid":"S","handshake":false},"status":400,"sio_error":{"code":1,"message":"Session ID unknown"},"flags":["sid_unknown","sid_not_issued_here"]"#;
    const WS_NO_UPGRADE: &str = r#""event":"request","id":"w","method":"GET","sio":{"transport":"websocket","sid":"S"},"status":400,"headers":{"upgrade":null},"sio_error":{"code":3,"message":"Bad request"},"flags":["upgrade_header_missing"]"#;
    const WS_STRIPPED: &str = r#""event":"request","id":"w","method":"GET","sio":{"transport":"websocket","sid":"S"},"status":400,"headers":{"upgrade":null,"connection":"upgrade","sec-websocket-key":"dGhlIHNhbXBsZSBub25jZQ==","sec-websocket-version":"13"},"sio_error":{"code":3,"message":"Bad request"},"flags":["upgrade_header_missing"]"#;
    const UNREACHABLE: &str = r#""event":"request","id":"x","method":"GET","sio":{"transport":"polling"},"status":502,"upstream_error":"connect: connection refused","outcome":"upstream_error","flags":["upstream_unreachable"]"#;
    const UPGRADED: &str = r#""event":"upgrade","id":"u","method":"GET","sio":{"transport":"websocket","sid":"S"},"status":101,"headers":{"upgrade":"websocket","connection":"upgrade"}"#;
    const HC_404: &str = r#""event":"request","id":"c","method":"GET","path":"/health","status":404,"headers":{"user-agent":"GoogleHC/1.0"},"flags":["health_check"]"#;
    const HC_200: &str = r#""event":"request","id":"c","method":"GET","path":"/health","status":200,"headers":{"user-agent":"GoogleHC/1.0"},"flags":["health_check"]"#;
    const FORBIDDEN_MISMATCH: &str = r#""event":"request","id":"f","method":"GET","sio":{"transport":"polling"},"status":403,"headers":{"origin":"http://k8s-ingress.internal","host":"ide.example.com"},"sio_error":{"code":4,"message":"Forbidden"},"flags":["origin_host_mismatch","forbidden"]"#;
    const FORBIDDEN_NO_ORIGIN: &str = r#""event":"request","id":"f","method":"GET","sio":{"transport":"polling"},"status":403,"headers":{"origin":null,"host":"ide.example.com"},"sio_error":{"code":4,"message":"Forbidden"},"flags":["forbidden"]"#;
    const LISTENING: &str = r#""event":"listening""#;
    const DRAINING: &str = r#""event":"draining","open_tunnels":0,"deadline_s":25"#;
    const STOPPED: &str = r#""event":"stopped","drained":true,"tunnels_closed_by_shutdown":0"#;
    const CUT: &str = r#""event":"tunnel_closed","id":"u","sio":{"sid":"S"},"duration_ms":2000,"closed_by":"shutdown""#;

    const WS_EVIL_ORIGIN: &str = r#""event":"request","id":"e","method":"GET","sio":{"transport":"websocket"},"status":400,"headers":{"upgrade":"websocket","connection":"Upgrade","origin":"https://evil.example","host":"ide.example.com","sec-websocket-key":"k","sec-websocket-version":"13"},"sio_error":{"code":4,"message":"Forbidden"},"flags":["origin_host_mismatch","forbidden"]"#;
    const UPGRADED_SAME_ORIGIN: &str = r#""event":"upgrade","id":"u","method":"GET","sio":{"transport":"websocket","sid":"S"},"status":101,"headers":{"upgrade":"websocket","connection":"upgrade","origin":"https://ide.example.com","host":"ide.example.com"}"#;
    const WS_HANDSHAKE_PASSED: &str = r#""event":"upgrade","id":"p","method":"GET","sio":{"transport":"websocket"},"status":101,"headers":{"upgrade":"websocket","connection":"upgrade","origin":"https://ide.example.com","host":"localhost:3000"},"flags":["origin_host_mismatch"]"#;
    const WS_HANDSHAKE_REFUSED: &str = r#""event":"request","id":"q","method":"GET","sio":{"transport":"websocket"},"status":400,"headers":{"upgrade":"websocket","connection":"upgrade","origin":"https://ide.example.com","host":"localhost:3000","sec-websocket-key":"k","sec-websocket-version":"13"},"sio_error":{"code":4,"message":"Forbidden"},"flags":["origin_host_mismatch","forbidden"]"#;
    const HC_502_OWN: &str = r#""event":"request","id":"c","method":"GET","path":"/","status":502,"upstream_error":"connect: connection refused","outcome":"upstream_error","headers":{"user-agent":"GoogleHC/1.0"},"flags":["health_check","upstream_unreachable"]"#;

    fn closed_by(id: &str, ms: f64, by: &str) -> String {
        closed(id, ms).replace(r#""closed_by":"client""#, &format!(r#""closed_by":"{by}""#))
    }

    fn closed(id: &str, ms: f64) -> String {
        format!(
            r#""event":"tunnel_closed","id":"{id}","duration_ms":{ms},"closed_by":"client","httpRequest":{{"requestUrl":"http://h/socket.io/?EIO=4&transport=websocket"}}"#
        )
    }

    #[test]
    fn rules() {
        let (t1, t2, t3) = (
            closed("1", 29_950.0),
            closed("2", 29_990.0),
            closed("3", 30_000.0),
        );
        let long: Vec<String> = [45_000.0, 120_000.0, 900_000.0]
            .iter()
            .enumerate()
            .map(|(i, ms)| closed(&format!("l{i}"), *ms))
            .collect();
        let mut four_of_fifty: Vec<String> = (0..4)
            .map(|i| closed(&format!("c{i}"), 59_700.0 + 100.0 * f64::from(i)))
            .collect();
        four_of_fifty
            .extend((0..46).map(|i| closed(&format!("o{i}"), 300_000.0 + 97_000.0 * f64::from(i))));
        let twenty_upgrades = vec![UPGRADED; 20];
        type Records<'a> = Vec<(&'a str, u32, &'a str)>;
        let mut bot: Records = twenty_upgrades.iter().map(|r| ("a", 1, *r)).collect();
        bot.push(("a", 2, WS_NO_UPGRADE));
        let mut one_address: Records = twenty_upgrades.iter().map(|r| ("a", 1, *r)).collect();
        one_address.extend([("a", 2, WS_STRIPPED), ("a", 3, WS_STRIPPED)]);
        let mut one_scanner: Records = (0..30).map(|i| ("a", i, UPGRADED_SAME_ORIGIN)).collect();
        one_scanner.push(("a", 31, WS_EVIL_ORIGIN));
        let mut token: Records = (0..10).map(|i| ("a", i, WS_HANDSHAKE_PASSED)).collect();
        token.extend((11..14).map(|i| ("a", i, WS_HANDSHAKE_REFUSED)));
        let mut theia_restart: Records = (0..40).map(|i| ("a", i, HC_200)).collect();
        theia_restart.extend((40..48).map(|i| ("a", i, HC_502_OWN)));
        theia_restart.extend((48..60).map(|i| ("a", i, HC_200)));
        let mut new_pod_one_client: Records = (0..20).map(|i| ("a", i, UPGRADED)).collect();
        new_pod_one_client.extend([("b", 30, WS_STRIPPED), ("b", 31, WS_STRIPPED)]);
        let theia_closed: Vec<String> = (0..5)
            .map(|i| closed_by(&format!("t{i}"), 29_900.0 + 10.0 * f64::from(i), "upstream"))
            .collect();
        let cases: Vec<(&str, Records, &str)> = vec![
            ("nothing", vec![], "------"),
            (
                "one cross-site probe among 30 upgrades whose Origin matched Host",
                one_scanner,
                "R--I--",
            ),
            (
                "the same Origin/Host pair passed 10 times, refused 3: another check (token)",
                token,
                "R--R--",
            ),
            (
                "GoogleHC passes but for 8 checks sockproxy answered while theia restarted",
                theia_restart,
                "--R---",
            ),
            (
                "a new pod's only 2 attempts stripped, both from one client",
                new_pod_one_client,
                "I-----",
            ),
            (
                "5 tunnels theia closed at 30 s: theia's doing, not the front's",
                theia_closed.iter().map(|r| ("a", 30, r.as_str())).collect(),
                "------",
            ),
            (
                "a websocket request without Upgrade and without a key is no browser's",
                vec![("a", 1, WS_NO_UPGRADE)],
                "------",
            ),
            (
                "one browser attempt without Upgrade: too few",
                vec![("a", 1, WS_STRIPPED)],
                "I-----",
            ),
            (
                "two browser attempts without Upgrade",
                vec![("a", 1, WS_STRIPPED), ("a", 2, WS_STRIPPED)],
                "C-----",
            ),
            (
                "websocket upgraded with its headers",
                vec![("a", 1, UPGRADED)],
                "R-----",
            ),
            (
                "one bot among 20 upgrades (the issue's case)",
                bot,
                "R-----",
            ),
            (
                "2 stripped among 20 upgrades, every client under one address: not everyone's path",
                one_address,
                "I-----",
            ),
            (
                "both: some path strips it",
                vec![
                    ("a", 1, UPGRADED),
                    ("a", 2, WS_STRIPPED),
                    ("a", 3, WS_STRIPPED),
                ],
                "C-----",
            ),
            (
                "one sid issued on a, refused on b: one session can move for its own reasons",
                vec![("a", 1, HANDSHAKE), ("b", 2, REFUSED)],
                "-I-R--",
            ),
            (
                "two sids issued on a, refused on b",
                vec![
                    ("a", 1, HANDSHAKE),
                    ("b", 2, REFUSED),
                    ("a", 3, HANDSHAKE_T),
                    ("b", 4, REFUSED_T),
                ],
                "-C-R--",
            ),
            (
                "the same, b's records first",
                vec![
                    ("b", 4, REFUSED_T),
                    ("b", 2, REFUSED),
                    ("a", 3, HANDSHAKE_T),
                    ("a", 1, HANDSHAKE),
                ],
                "-C-R--",
            ),
            (
                "refused on b after a drained: H5",
                vec![("a", 1, HANDSHAKE), ("a", 2, DRAINING), ("b", 3, REFUSED)],
                "---RC-",
            ),
            (
                "refused on a after a restarted: H5",
                vec![
                    ("a", 0, LISTENING),
                    ("a", 1, HANDSHAKE),
                    ("a", 2, LISTENING),
                    ("a", 3, REFUSED),
                ],
                "---RC-",
            ),
            (
                "a poll, a restart, the refusal; newest first (gcloud logging read)",
                vec![
                    ("a", 4, REFUSED),
                    ("a", 3, LISTENING),
                    ("a", 2, POLL),
                    ("a", 1, HANDSHAKE),
                    ("a", 0, LISTENING),
                ],
                "---RC-",
            ),
            (
                "refused, issued nowhere in the records",
                vec![("b", 2, REFUSED)],
                "------",
            ),
            (
                "sessions stayed on one pod while the other served none: not tested",
                vec![
                    ("a", 1, HANDSHAKE),
                    ("a", 2, POLL),
                    ("a", 3, POLL),
                    ("a", 4, POLL),
                    ("a", 5, POLL),
                    ("a", 6, POLL),
                    ("b", 7, LISTENING),
                ],
                "---R--",
            ),
            (
                "health check 404 (theia up, path wrong)",
                vec![("a", 1, HC_404), ("a", 2, HC_200)],
                "--C---",
            ),
            ("health checks 200", vec![("a", 1, HC_200)], "--R---"),
            (
                "Forbidden with Origin ≠ Host",
                vec![("a", 1, FORBIDDEN_MISMATCH), ("a", 2, HANDSHAKE)],
                "---C--",
            ),
            (
                "Forbidden without Origin is not H4",
                vec![("a", 1, FORBIDDEN_NO_ORIGIN)],
                "------",
            ),
            (
                "tunnel cut by the drain",
                vec![("a", 1, UPGRADED), ("a", 2, DRAINING), ("a", 3, CUT)],
                "R---C-",
            ),
            (
                "drained, nothing cut",
                vec![("a", 1, DRAINING), ("a", 2, STOPPED)],
                "----R-",
            ),
            (
                "a start: sockproxy's 502 before theia answered, then healthy, then a clean drain (the issue's case)",
                vec![
                    ("a", 0, LISTENING),
                    ("a", 1, UNREACHABLE),
                    ("a", 3, HANDSHAKE),
                    ("a", 4, POLL),
                    ("a", 5, DRAINING),
                    ("a", 6, STOPPED),
                ],
                "---RR-",
            ),
            (
                "three tunnels at 30 s",
                vec![("a", 31, &t1), ("a", 32, &t2), ("a", 33, &t3)],
                "-----C",
            ),
            (
                "three tunnels outlived 30 s",
                long.iter().map(|r| ("a", 46, r.as_str())).collect(),
                "-----R",
            ),
            (
                "one tunnel outlived 30 s: too few to rule out",
                vec![("a", 46, long[0].as_str())],
                "------",
            ),
            (
                "4 of 50 tunnels ended at 60 s, the rest lived on",
                four_of_fifty
                    .iter()
                    .map(|r| ("a", 59, r.as_str()))
                    .collect(),
                "-----I",
            ),
        ];
        for (name, records, want) in cases {
            assert_eq!(verdicts_of(&records), want, "{name}");
        }
    }

    #[test]
    fn counts_are_grouped() {
        for (n, want) in [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (4213, "4,213"),
            (1234567, "1,234,567"),
        ] {
            assert_eq!(count(n), want);
        }
        assert_eq!(of(12, 4213), "12 of 4,213");
        assert!(share_at_least(1, 2, 0.5));
        assert!(!share_at_least(1, 3, 0.5));
        assert!(!share_at_least(0, 0, 0.0));
    }
}
