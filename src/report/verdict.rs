//! What a verdict is: the four verdicts, a finding (verdict, evidence, denominators, the
//! rule applied, the fix), and the six findings in order. Each hypothesis' own rule lives
//! in its module (`h1` … `h6`). Pure.

use super::analyze::{Analyzer, Example};

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

/// All six verdicts.
pub fn findings(a: &Analyzer) -> Vec<Finding> {
    let moved = a.sessions.moved(&a.pods);
    vec![
        a.h1.verdict(a),
        super::h2::verdict(a, &moved),
        a.h3.verdict(a),
        a.h4.verdict(a),
        a.h5.verdict(a, &moved),
        a.h6.verdict(a, &moved),
    ]
}

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

/// `12:55:47.634` (UTC).
pub fn clock(us: i64) -> String {
    let t = super::parse::format_time(us);
    t[11..23].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
