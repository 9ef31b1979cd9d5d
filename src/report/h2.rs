//! H2, no session affinity: the rule over the session join (`sessions`), which holds the
//! state and the fold because H5 and H6 read it too. Pure.
//!
//! With no affinity and n pods, a polling session's next request lands on another pod
//! with odds (n-1)/n, so most sessions that poll more than once move; with affinity only
//! rollouts (H5), a client that drops cookies, or a dead pod move one. So the rule looks
//! at the share of sessions that moved while the pod that issued them was still up.

use super::evidence::{Example, MAX_EXAMPLES};
use super::pods::{self, PodStats};
use super::sessions::{Moved, Sessions, cross_example};
use super::verdict::{Finding, Verdict, count, earliest, of, plural, share_at_least};

pub const RULE: &str = "confirmed when at least 2 sessions and 10 % (50 % when no pod's start or drain is in the records) of the sessions seen again after their handshake came back on another pod while the pod that issued them was still up (moves within 5 s of a drain, restart or the issuing pod's last record are counted under H5); isolated when fewer; ruled out when none moved and sessions stayed on at least two pods that served at the same time (≥ 5 later requests)";
const FIX: &str = "make the backend service sticky: BackendConfig `sessionAffinity: {affinityType: GENERATED_COOKIE}` (Service.spec.sessionAffinity does nothing with NEGs), or connect with transports: ['websocket']";

const SHARE: f64 = 0.10;
/// The share when no pod's start or drain is in the records.
const BLIND_SHARE: f64 = 0.5;
/// Moves needed at all: one session can move for reasons of its own (its client's
/// address changed, its cookie was dropped).
const MIN_MOVED: u64 = 2;
/// Later requests of sessions that all stayed on their pod before H2 is ruled out: by
/// chance, with no affinity and two pods, five in a row stay with odds of 1 in 32.
const MIN_STAYED_USES: u64 = 5;

/// What H2's verdict reads, counted once.
struct Tally<'a> {
    pods: &'a [PodStats],
    h: &'a Sessions,
    m: &'a Moved<'a>,
    /// Sessions seen again after their handshake.
    seen: u64,
    /// Of those, the ones that came back on another pod while theirs was up.
    moved: u64,
    concurrent: u64,
    /// No pod's start or drain is in the records.
    blind: bool,
}

pub fn verdict(pods: &[PodStats], h: &Sessions, m: &Moved<'_>) -> Finding {
    let t = Tally {
        pods,
        h,
        m,
        seen: h.seen_again(),
        moved: m.affinity.len() as u64 + h.joined.crosses_not_kept,
        concurrent: concurrent_pods(pods, h),
        // Without any `listening` or `draining` record (logs filtered with grep, say), moves
        // after rollouts cannot be told from moves while the pod was up: ask for more.
        blind: pods
            .iter()
            .all(|p| p.starts.is_empty() && p.drains.is_empty()),
    };
    let share = if t.blind { BLIND_SHARE } else { SHARE };
    let (seen, moved, concurrent) = (t.seen, t.moved, t.concurrent);
    let mut f = if moved >= MIN_MOVED && share_at_least(moved, seen, share) {
        confirmed(&t)
    } else if moved > 0 {
        isolated(&t)
    } else if concurrent >= 2 && h.stayed_uses >= MIN_STAYED_USES && h.unjoined * 10 <= seen {
        ruled_out(&t)
    } else if h.unjoined > 0 {
        unjoined(&t)
    } else {
        untested(&t)
    };
    if !m.after_drain.is_empty() {
        f.details.push(format!(
            "{} moved only after their pod drained, restarted or went away (counted under H5)",
            plural(m.after_drain.len() as u64, "session", "sessions")
        ));
    }
    f.counts = vec![
        ("sids_issued", h.issued),
        ("sessions_seen_again", seen),
        ("sessions_stayed", h.joined.stayed),
        ("requests_stayed", h.stayed_uses),
        ("sids_crossed", moved),
        ("sids_crossed_after_drain", m.after_drain.len() as u64),
        ("sid_unknown_refusals", h.sid_unknown),
        ("sids_refused_unjoined", h.unjoined),
        ("pods", pods.len() as u64),
        ("pods_serving_together", concurrent),
    ];
    f
}

/// Sessions moved while their pod was up, often enough to act on.
fn confirmed(t: &Tally<'_>) -> Finding {
    let mut pairs: Vec<(u32, u32)> = t.m.affinity.iter().map(|c| (c.issued_pod, c.pod)).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let route = match pairs.as_slice() {
        [(from, to)] => format!(
            "on {} came back on {}",
            pods::name(t.pods, *from),
            pods::name(t.pods, *to)
        ),
        _ => format!(
            "on one pod came back on another ({} pod pairs)",
            count(pairs.len() as u64)
        ),
    };
    let refused = t.m.affinity.iter().filter(|c| c.refused).count() as u64;
    let mut f = Finding::new(
        1,
        Verdict::Confirmed,
        format!(
            "{} sessions seen again {route} while their pod was up; {} refused with Session ID unknown",
            of(t.moved, t.seen),
            plural(t.h.foreign_refusals.max(refused), "request", "requests"),
        ),
        RULE,
        FIX,
    );
    f.examples = moved_examples(t);
    if t.h.joined.stayed > 0 {
        f.details.push(format!(
            "{} stayed on the pod that issued them",
            plural(t.h.joined.stayed, "session", "sessions")
        ));
    }
    f
}

/// Sessions moved, but too few (or most stayed).
fn isolated(t: &Tally<'_>) -> Finding {
    let mut f = Finding::new(
        1,
        Verdict::Isolated,
        if t.moved < MIN_MOVED {
            format!(
                "{} sessions seen again came back on another pod while theirs was up: too few to act on (one session can move for its own reasons: its client changed address or dropped the cookie)",
                of(t.moved, t.seen)
            )
        } else {
            format!(
                "{} sessions seen again came back on another pod while theirs was up; {} stayed: affinity holds for the rest (a client that drops cookies or changed address?){}",
                of(t.moved, t.seen),
                count(t.h.joined.stayed),
                if t.blind {
                    "; no pod's start or drain is in the records, so moves after rollouts look the same"
                } else {
                    ""
                }
            )
        },
        RULE,
        FIX,
    );
    f.examples = moved_examples(t);
    f
}

/// Sessions stayed on pods that served at the same time.
/// The earliest sessions that came back on another pod, as examples.
fn moved_examples(t: &Tally<'_>) -> Vec<Example> {
    earliest(
        MAX_EXAMPLES,
        t.m.affinity
            .iter()
            .map(|c| cross_example(|p| pods::name(t.pods, p).to_string(), c)),
    )
}

fn ruled_out(t: &Tally<'_>) -> Finding {
    Finding::new(
        1,
        Verdict::RuledOut,
        format!(
            "{} seen again stayed on the pod that issued them ({} later requests; {} pods served at the same time); none moved while its pod was up",
            plural(t.h.joined.stayed, "session", "sessions"),
            count(t.h.stayed_uses),
            t.concurrent
        ),
        RULE,
        FIX,
    )
}

/// Sids refused as unknown that no pod in the records issued.
fn unjoined(t: &Tally<'_>) -> Finding {
    let mut f = Finding::new(
        1,
        Verdict::NoEvidence,
        format!(
            "{} refused as unknown, issued by no pod in these records",
            plural(t.h.unjoined, "sid", "sids")
        ),
        RULE,
        FIX,
    );
    f.details.push(
        "another pod's records may show it issued: read every pod's records together".to_string(),
    );
    f.examples =
        t.h.unjoined_examples
            .iter()
            .map(|(sid, e)| Example {
                text: format!("sid {sid}: {}", e.text),
                ..e.clone()
            })
            .collect();
    f
}

/// Nothing moved, and the records cannot show that affinity holds.
fn untested(t: &Tally<'_>) -> Finding {
    if t.pods.len() < 2 {
        Finding::new(
            1,
            Verdict::NoEvidence,
            "one pod in the records: affinity cannot be tested".to_string(),
            RULE,
            FIX,
        )
    } else if t.concurrent < 2 {
        Finding::new(
            1,
            Verdict::NoEvidence,
            format!(
                "{} sessions seen again, but no two pods kept sessions at the same time: affinity cannot be tested",
                count(t.seen)
            ),
            RULE,
            FIX,
        )
    } else {
        Finding::new(
            1,
            Verdict::NoEvidence,
            format!(
                "{} later requests of sessions: too few to tell",
                count(t.h.stayed_uses)
            ),
            RULE,
            FIX,
        )
    }
}

/// The most pods that kept sessions (stayed) and whose records overlap in time with each
/// other's: affinity is only tested where a client had a choice of pods.
fn concurrent_pods(pods: &[PodStats], h: &Sessions) -> u64 {
    let spans: Vec<(i64, i64)> = h
        .joined
        .stayed_by_pod
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .filter_map(|(i, _)| {
            let p = pods.get(i)?;
            Some((p.first?, p.last?))
        })
        .collect();
    spans
        .iter()
        .map(|(f, l)| spans.iter().filter(|(f2, l2)| f2 <= l && f <= l2).count() as u64)
        .max()
        .unwrap_or(0)
}
