//! What the report knows of each pod: its counts, its lifecycle (starts, drains, when
//! theia answered) and how far its clock may be off. Pure.

use std::collections::HashMap;

use super::evidence::PodId;

/// How far two pods' clocks may disagree (pods skew by up to ±2 s): lifecycle events this
/// close to a use count as before it. Pods reporting the same `pod_ip` share a host and a
/// clock (a local run): no skew between them.
pub const CLOCK_SKEW_US: i64 = 5_000_000;
/// Theia's answers are remembered per pod in buckets of this many microseconds.
const ANSWER_BUCKET_US: i64 = 10_000_000;
/// Buckets of theia answers kept per pod (10 s each: about 11 days).
const MAX_ANSWER_BUCKETS: usize = 100_000;

#[derive(Clone, Debug, Default)]
pub struct PodStats {
    pub name: String,
    /// `pod_ip`, as first seen.
    pub ip: Option<Box<str>>,
    pub records: u64,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub handshakes: u64,
    pub ws_attempts: u64,
    pub upgrades: u64,
    /// 4xx answers on socket.io paths.
    pub refusals: u64,
    /// 5xx answers and exchanges that got no answer from theia.
    pub server_errors: u64,
    pub tunnels_closed: u64,
    /// `listening` times (the first is the start; later ones are restarts).
    pub starts: Vec<i64>,
    pub drains: Vec<i64>,
    /// Each drain's window: from `draining` to its deadline (plus the clock skew).
    pub drain_windows: Vec<(i64, i64)>,
    /// Times theia answered (status from theia, not sockproxy's own), by 10 s bucket:
    /// the earliest and latest answer in each.
    answers: HashMap<i64, (i64, i64)>,
}

impl PodStats {
    /// A pod with nothing recorded yet.
    pub fn named(name: &str) -> PodStats {
        PodStats {
            name: name.to_string(),
            ..PodStats::default()
        }
    }

    /// Whether theia answered anything on this pod between `from` and `to` (inclusive).
    pub fn answered_between(&self, from: i64, to: i64) -> bool {
        if to < from {
            return false;
        }
        let (b0, b1) = (
            from.div_euclid(ANSWER_BUCKET_US),
            to.div_euclid(ANSWER_BUCKET_US),
        );
        if b1 - b0 > 2 {
            // Any answer in a bucket wholly inside the range counts.
            if (b0 + 1..b1).any(|b| self.answers.contains_key(&b)) {
                return true;
            }
        } else if b1 - b0 == 2 && self.answers.contains_key(&(b0 + 1)) {
            return true;
        }
        [b0, b1].iter().any(|b| {
            self.answers
                .get(b)
                .is_some_and(|(lo, hi)| (from..=to).contains(lo) || (from..=to).contains(hi))
        })
    }

    pub fn answered(&mut self, t: i64) {
        let b = t.div_euclid(ANSWER_BUCKET_US);
        if let Some((lo, hi)) = self.answers.get_mut(&b) {
            *lo = (*lo).min(t);
            *hi = (*hi).max(t);
        } else if self.answers.len() < MAX_ANSWER_BUCKETS {
            self.answers.insert(b, (t, t));
        }
    }

    /// Whether `t` falls in one of this pod's drain windows.
    pub fn draining_at(&self, t: i64) -> bool {
        self.drain_windows
            .iter()
            .any(|(from, to)| (*from..=*to).contains(&t))
    }

    /// How far this pod's clock and `other`'s may disagree: none when both report the same
    /// `pod_ip` (one host, one clock: a local run), else the skew pods may have.
    pub fn skew_to(&self, other: &PodStats) -> i64 {
        match (&self.ip, &other.ip) {
            (Some(a), Some(b)) if a == b => 0,
            _ => CLOCK_SKEW_US,
        }
    }

    /// The latest start at or before `t`.
    pub fn start_before(&self, t: i64) -> Option<i64> {
        self.starts.iter().copied().filter(|s| *s <= t).max()
    }
}

/// The name of pod `pod`, `?` when unknown.
pub fn name(pods: &[PodStats], pod: PodId) -> &str {
    pods.get(pod as usize).map_or("?", |p| p.name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_by_bucket() {
        let s = 1_000_000i64;
        let mut p = PodStats::default();
        p.answered(100 * s);
        p.answered(105 * s);
        p.answered(300 * s);
        let cases = [
            (0, 99 * s, false),
            (0, 100 * s, true),
            (101 * s, 104 * s, false),
            (101 * s, 106 * s, true),
            (106 * s, 299 * s, false),
            (200 * s, 400 * s, true),
            (301 * s, 900 * s, false),
        ];
        for (from, to, want) in cases {
            assert_eq!(p.answered_between(from, to), want, "{from}..{to}");
        }
    }
}
