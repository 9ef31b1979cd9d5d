//! The rules: from what the records showed to confirmed / ruled out / no evidence for each
//! of the seed's six hypotheses, with the evidence and the fix. Pure.

use super::analyze::{
    Analyzer, BINS, Cross, Example, H6, MAX_EXAMPLES, MIN_LIFETIME_MS, PodId, SamePod, bin_of, secs,
};

/// A verdict. "Ruled out" always rests on positive evidence against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Confirmed,
    RuledOut,
    NoEvidence,
}

impl Verdict {
    pub fn key(self) -> &'static str {
        match self {
            Verdict::Confirmed => "confirmed",
            Verdict::RuledOut => "ruled_out",
            Verdict::NoEvidence => "no_evidence",
        }
    }

    pub fn words(self) -> &'static str {
        match self {
            Verdict::Confirmed => "CONFIRMED",
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
    /// One line.
    pub summary: String,
    /// Further evidence, one line each.
    pub details: Vec<String>,
    pub counts: Vec<(&'static str, u64)>,
    pub examples: Vec<Example>,
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

const FIX_H1: &str = "pass Upgrade and Connection through every hop: nginx `proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade;` (GKE's load balancer forwards websockets by itself)";
const FIX_H2: &str = "make the backend service sticky: BackendConfig `sessionAffinity: {affinityType: GENERATED_COOKIE}` (Service.spec.sessionAffinity does nothing with NEGs), or connect with transports: ['websocket']";
const FIX_H3: &str = "point the load balancer's health check at a path that answers 200 (BackendConfig `healthCheck.requestPath`, or a readinessProbe on the serving port); a failing check gives 502s, never 400s";
const FIX_H4: &str = "keep the browser's Host and Origin end to end (nginx `proxy_set_header Host $http_host`, no Origin rewrite), or list the public host in THEIA_HOSTS";
const FIX_H5: &str = "let sessions end before the pod does: --drain-timeout and terminationGracePeriodSeconds above the longest session, BackendConfig `connectionDraining.drainingTimeoutSec` to match, and rely on the client's reconnect";
const FIX_H6: &str = "raise the backend service's timeout above the longest session: BackendConfig `timeoutSec` (e.g. 86400) — for websockets it is a hard lifetime limit, and long-polls need more than pingInterval";

/// Later requests of sessions that all stayed on their pod before H2 is ruled out: by
/// chance, with no affinity and two pods, five in a row stay with odds of 1 in 32 for one
/// session, and far less across several.
const MIN_STAYED_USES: u64 = 5;

/// Examples shown for a finding that draws on several kinds of evidence.
const MAX_SHOWN: usize = 5;

/// GKE's default backend-service timeout: tunnels that outlive it rule H6 out.
pub const GKE_DEFAULT_TIMEOUT_MS: f64 = 30_000.0;
/// Failures of theia this close to a pod's start or drain count as the rollout's doing.
const LIFECYCLE_WINDOW_US: i64 = 60_000_000;

/// All six verdicts.
pub fn findings(a: &Analyzer) -> Vec<Finding> {
    let moved = moved_sessions(a);
    vec![
        h1(a),
        h2(a, &moved),
        h3(a),
        h4(a),
        h5(a, &moved),
        h6(a, &moved),
    ]
}

fn finding(i: usize, verdict: Verdict, summary: String, fix: &'static str) -> Finding {
    Finding {
        id: TITLES[i].0,
        title: TITLES[i].1,
        verdict,
        summary,
        details: Vec::new(),
        counts: Vec::new(),
        examples: Vec::new(),
        fix,
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn h1(a: &Analyzer) -> Finding {
    let h = &a.h1;
    let n = h.missing_upgrade + h.missing_connection;
    let mut f = if n > 0 {
        let what = match (h.missing_upgrade > 0, h.missing_connection > 0) {
            (true, false) => "without Upgrade",
            (false, _) => "with Upgrade but no `Connection: upgrade`",
            (true, true) => "without Upgrade or without `Connection: upgrade`",
        };
        let mut s = format!(
            "{} arrived {what}",
            plural(n, "websocket request", "websocket requests")
        );
        if h.got_400 > 0 {
            s.push_str(&format!(
                "; {} got 400{}",
                h.got_400,
                if h.code3 > 0 {
                    format!(" ({} × code 3 Bad request)", h.code3)
                } else {
                    String::new()
                }
            ));
        }
        let mut f = finding(0, Verdict::Confirmed, s, FIX_H1);
        if h.upgraded_with_headers > 0 {
            f.details.push(format!(
                "{} did arrive with both headers and got 101: some path keeps them, another drops them",
                plural(h.upgraded_with_headers, "upgrade", "upgrades")
            ));
        }
        f
    } else if h.upgraded_with_headers > 0 {
        finding(
            0,
            Verdict::RuledOut,
            format!(
                "{} came with Upgrade and `Connection: upgrade` and got 101",
                plural(
                    h.upgraded_with_headers,
                    "websocket upgrade",
                    "websocket upgrades"
                )
            ),
            FIX_H1,
        )
    } else if a.picture.ws_attempts > 0 {
        finding(
            0,
            Verdict::NoEvidence,
            format!(
                "{} seen, none upgraded and none without Upgrade",
                plural(
                    a.picture.ws_attempts,
                    "websocket request",
                    "websocket requests"
                )
            ),
            FIX_H1,
        )
    } else {
        finding(
            0,
            Verdict::NoEvidence,
            "no websocket request in the records".to_string(),
            FIX_H1,
        )
    };
    f.counts = vec![
        ("upgrade_header_missing", h.missing_upgrade),
        ("connection_upgrade_missing", h.missing_connection),
        ("refused_400", h.got_400),
        ("code_3", h.code3),
        ("upgraded_with_headers", h.upgraded_with_headers),
    ];
    f.examples = h.examples.0.clone();
    f
}

/// Cross-pod uses and same-pod refusals sorted by cause.
struct Moved<'a> {
    /// Used on another pod while the issuing pod was still up: H2.
    affinity: Vec<&'a Cross>,
    /// Used on another pod after the issuing pod drained or restarted: H5.
    after_drain: Vec<&'a Cross>,
    /// Refused on the issuing pod after it restarted: H5.
    after_restart: Vec<&'a SamePod>,
    /// Refused on the issuing pod after a long-poll of it was cut: H6 (or any cut).
    after_cut_poll: Vec<&'a SamePod>,
}

fn moved_sessions(a: &Analyzer) -> Moved<'_> {
    // Whether one of `times` falls after `from` and no later than `to`.
    let within = |times: &[i64], from: Option<i64>, to: Option<i64>| match (from, to) {
        (Some(f), Some(t)) => times.iter().any(|x| *x > f && *x <= t),
        _ => false,
    };
    let mut m = Moved {
        affinity: Vec::new(),
        after_drain: Vec::new(),
        after_restart: Vec::new(),
        after_cut_poll: Vec::new(),
    };
    for c in &a.h2.crosses {
        let p = &a.pods[c.issued_pod as usize];
        if within(&p.drains, c.issued_at, c.at) || within(&p.starts, c.issued_at, c.at) {
            m.after_drain.push(c);
        } else {
            m.affinity.push(c);
        }
    }
    for s in &a.h2.same_pod {
        let p = &a.pods[s.pod as usize];
        if within(&p.starts, s.issued_at, s.at) {
            m.after_restart.push(s);
        } else if s.cut_poll.is_some() {
            m.after_cut_poll.push(s);
        }
    }
    m
}

fn cross_example(a: &Analyzer, c: &Cross) -> Example {
    Example {
        time: c.at,
        pod: c.pod,
        id: c.id.clone(),
        text: format!(
            "sid {} issued on {}{} → {}",
            c.sid,
            a.pod_name(c.issued_pod),
            c.issued_at
                .map_or(String::new(), |t| format!(" at {}", clock(t))),
            c.what
        ),
    }
}

/// The earliest `n` examples, in time order.
fn earliest(n: usize, examples: impl IntoIterator<Item = Example>) -> Vec<Example> {
    let mut ex: Vec<Example> = examples.into_iter().collect();
    ex.sort_by_key(|e| e.time.unwrap_or(i64::MAX));
    ex.truncate(n);
    ex
}

fn h2(a: &Analyzer, m: &Moved<'_>) -> Finding {
    let h = &a.h2;
    let crossed = m.affinity.len() as u64 + h.crosses_not_kept;
    let mut f = if crossed > 0 {
        let mut pairs: Vec<(PodId, PodId)> =
            m.affinity.iter().map(|c| (c.issued_pod, c.pod)).collect();
        pairs.sort_unstable();
        pairs.dedup();
        let route = match pairs.as_slice() {
            [(from, to)] => format!("on {} came back on {}", a.pod_name(*from), a.pod_name(*to)),
            _ => "on one pod came back on another".to_string(),
        };
        let mut f = finding(
            1,
            Verdict::Confirmed,
            format!(
                "{} issued {route}: {} refused with Session ID unknown",
                plural(crossed, "sid", "sids"),
                plural(h.foreign_refusals, "request", "requests"),
            ),
            FIX_H2,
        );
        f.examples = earliest(MAX_EXAMPLES, m.affinity.iter().map(|c| cross_example(a, c)));
        if h.stayed > 0 {
            f.details.push(format!(
                "{} stayed on the pod that issued them",
                plural(h.stayed, "session", "sessions")
            ));
        }
        f
    } else if a.pods.len() >= 2 && h.stayed_uses >= MIN_STAYED_USES && h.unjoined == 0 {
        finding(
            1,
            Verdict::RuledOut,
            format!(
                "{} stayed on the pod that issued them ({} later requests; {} pods); none moved",
                plural(h.stayed, "session", "sessions"),
                h.stayed_uses,
                a.pods.len()
            ),
            FIX_H2,
        )
    } else if h.unjoined > 0 {
        let mut f = finding(
            1,
            Verdict::NoEvidence,
            format!(
                "{} refused as unknown, issued by no pod in these records",
                plural(h.unjoined, "sid", "sids")
            ),
            FIX_H2,
        );
        f.details.push(
            "another pod's records may show it issued: read every pod's records together"
                .to_string(),
        );
        f.examples = h
            .unjoined_examples
            .iter()
            .map(|(sid, e)| Example {
                text: format!("sid {sid}: {}", e.text),
                ..e.clone()
            })
            .collect();
        f
    } else if a.pods.len() < 2 {
        finding(
            1,
            Verdict::NoEvidence,
            "one pod in the records: affinity cannot be tested".to_string(),
            FIX_H2,
        )
    } else {
        finding(
            1,
            Verdict::NoEvidence,
            "no session used after its handshake".to_string(),
            FIX_H2,
        )
    };
    if !m.after_drain.is_empty() {
        f.details.push(format!(
            "{} moved only after their pod drained or restarted (counted under H5)",
            plural(m.after_drain.len() as u64, "sid", "sids")
        ));
    }
    f.counts = vec![
        ("sids_issued", h.issued),
        ("sessions_stayed", h.stayed),
        ("requests_stayed", h.stayed_uses),
        ("sids_crossed", crossed),
        ("sids_crossed_after_drain", m.after_drain.len() as u64),
        ("sid_unknown_refusals", h.sid_unknown),
        ("sids_refused_unjoined", h.unjoined),
        ("pods", a.pods.len() as u64),
    ];
    f
}

fn h3(a: &Analyzer) -> Finding {
    let h = &a.h3;
    let outcomes = |ok: bool| {
        h.outcomes
            .iter()
            .filter(|o| (200..400).contains(&o.2) == ok)
            .map(|(agent, path, status, n)| format!("{agent} {path} → {status} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut f = if h.failed > 0 {
        finding(
            2,
            Verdict::Confirmed,
            format!(
                "{} of {} failed: {}",
                h.failed,
                plural(h.checks, "health check", "health checks"),
                outcomes(false)
            ),
            FIX_H3,
        )
    } else if h.checks > 0 {
        finding(
            2,
            Verdict::RuledOut,
            format!(
                "{} answered 2xx/3xx: {}",
                plural(h.checks, "health check", "health checks"),
                outcomes(true)
            ),
            FIX_H3,
        )
    } else {
        finding(
            2,
            Verdict::NoEvidence,
            "no health-check request recorded (sockproxy records them with --log-all)".to_string(),
            FIX_H3,
        )
    };
    if h.failed > 0 {
        f.details.push(
            "a failing health check marks the backend unhealthy: the load balancer answers 502, never 400"
                .to_string(),
        );
    }
    f.counts = vec![
        ("health_checks", h.checks),
        ("ok", h.ok),
        ("failed", h.failed),
    ];
    f.examples = h.examples.0.clone();
    f
}

fn h4(a: &Analyzer) -> Finding {
    let h = &a.h4;
    let n = h.refused_mismatch + h.refused_port;
    let mut f = if n > 0 {
        let mut kinds = Vec::new();
        if h.refused_403 > 0 {
            kinds.push(format!("{} × 403 polling", h.refused_403));
        }
        if h.refused_400 > 0 {
            kinds.push(format!("{} × 400 websocket", h.refused_400));
        }
        let mut f = finding(
            3,
            Verdict::Confirmed,
            format!(
                "{} refused Forbidden where Origin ≠ Host{}",
                plural(n, "request", "requests"),
                if kinds.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", kinds.join(", "))
                }
            ),
            FIX_H4,
        );
        if h.refused_port > 0 {
            f.details.push(format!(
                "{} of them differ only by the port that Host lacks (nginx's $host drops it; Theia compares host:port)",
                h.refused_port
            ));
        }
        f
    } else if h.origin_ok > 0 {
        let mut f = finding(
            3,
            Verdict::RuledOut,
            format!(
                "{} with an Origin succeeded; no Forbidden from an Origin/Host difference",
                plural(h.origin_ok, "handshake", "handshakes")
            ),
            FIX_H4,
        );
        if h.mismatch_passed > 0 {
            f.details.push(format!(
                "{} passed although Origin's host differs from Host (no same-origin check upstream)",
                h.mismatch_passed
            ));
        }
        f
    } else {
        finding(
            3,
            Verdict::NoEvidence,
            "no handshake with an Origin in the records".to_string(),
            FIX_H4,
        )
    };
    if h.refused_other > 0 {
        f.details.push(format!(
            "{} refused Forbidden with Origin matching Host or absent: another check (Theia's connection-token cookie?)",
            plural(h.refused_other, "request", "requests")
        ));
    }
    f.counts = vec![
        ("refused_origin_host_mismatch", h.refused_mismatch),
        ("refused_port_only", h.refused_port),
        ("refused_other", h.refused_other),
        ("origin_ok", h.origin_ok),
        ("mismatch_passed", h.mismatch_passed),
    ];
    f.examples = if n > 0 {
        h.examples.0.clone()
    } else {
        h.other_examples.0.clone()
    };
    f
}

fn h5(a: &Analyzer, m: &Moved<'_>) -> Finding {
    let h = &a.h5;
    let tunnels = h.shutdown_tunnels.max(h.stopped_tunnels);
    let near: Vec<&Example> = h
        .upstream_failures
        .iter()
        .filter(|(pod, t, _)| {
            let p = &a.pods[*pod as usize];
            t.is_some_and(|t| {
                p.starts
                    .iter()
                    .chain(p.drains.iter())
                    .any(|x| (t - x).abs() <= LIFECYCLE_WINDOW_US)
            })
        })
        .map(|(_, _, e)| e)
        .collect();
    let moved = (m.after_drain.len() + m.after_restart.len()) as u64;
    let mut parts = Vec::new();
    if tunnels > 0 {
        parts.push(format!(
            "{} closed by shutdown",
            plural(tunnels, "tunnel", "tunnels")
        ));
    }
    if h.shutdown_requests > 0 {
        parts.push(format!(
            "{} cut by the drain deadline",
            plural(h.shutdown_requests, "request", "requests")
        ));
    }
    if moved > 0 {
        parts.push(format!(
            "{} refused after its pod drained or restarted",
            plural(moved, "session", "sessions")
        ));
    }
    if !near.is_empty() {
        parts.push(format!(
            "{} answered by sockproxy (theia unreachable) around a start or drain",
            plural(near.len() as u64, "request", "requests")
        ));
    }
    if parts.is_empty() && h.stops_cut_short > 0 {
        parts.push(format!(
            "{} cut short",
            plural(h.stops_cut_short, "drain", "drains")
        ));
    }
    let mut f = if !parts.is_empty() {
        let mut f = finding(4, Verdict::Confirmed, parts.join("; "), FIX_H5);
        let mut ex: Vec<Example> = h.examples.0.clone();
        ex.extend(m.after_drain.iter().map(|c| cross_example(a, c)));
        ex.extend(m.after_restart.iter().map(|s| Example {
            time: s.at,
            pod: s.pod,
            id: s.id.clone(),
            text: format!(
                "sid {} refused after {} restarted",
                s.sid,
                a.pod_name(s.pod)
            ),
        }));
        ex.extend(near.iter().map(|e| (*e).clone()));
        f.examples = earliest(MAX_SHOWN, ex);
        f
    } else if h.drains > 0 || h.stops > 0 {
        finding(
            4,
            Verdict::RuledOut,
            format!(
                "{} drained with nothing cut",
                plural(h.drains.max(h.stops), "shutdown", "shutdowns")
            ),
            FIX_H5,
        )
    } else {
        finding(
            4,
            Verdict::NoEvidence,
            "no shutdown in the records".to_string(),
            FIX_H5,
        )
    };
    let restarts: usize = a
        .pods
        .iter()
        .map(|p| p.starts.len().saturating_sub(1))
        .sum();
    if restarts > 0 {
        f.details.push(format!(
            "{} (a later `listening` on the same pod)",
            plural(restarts as u64, "restart", "restarts")
        ));
    }
    f.counts = vec![
        ("drains", h.drains),
        ("stops", h.stops),
        ("drains_cut_short", h.stops_cut_short),
        ("tunnels_closed_by_shutdown", tunnels),
        ("requests_cut_by_shutdown", h.shutdown_requests),
        ("sessions_refused_after_drain_or_restart", moved),
        (
            "upstream_failures",
            h.upstream_failures.len() as u64 + h.upstream_failures_not_kept,
        ),
        ("upstream_failures_near_start_or_drain", near.len() as u64),
    ];
    f
}

/// A cluster of lifetimes just under one value, with little just below it.
#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    pub n: u64,
    pub tunnels: u64,
    pub polls: u64,
    pub lo_ms: f64,
    /// The longest lifetime in the cluster: about the timeout.
    pub hi_ms: f64,
    /// How wide the band is.
    pub band_ms: f64,
    /// In the two band widths just below.
    pub below: u64,
    /// Lifetimes longer than the cluster (beyond a small margin).
    pub above: u64,
    pub total: u64,
    first_bin: usize,
    last_bin: usize,
}

/// The band under a value T is T·5 %, but at least 0.5 s: a tunnel's lifetime starts at
/// the 101, after the load balancer's timer did, and that head start does not shrink with
/// T. Lifetimes more than T + 2 % (at least 0.1 s) count as longer.
const BAND_REL: f64 = 0.05;
const BAND_MIN_MS: f64 = 500.0;
const ABOVE_REL: f64 = 0.02;
const ABOVE_MIN_MS: f64 = 100.0;

/// The largest cluster of lifetimes that looks like a fixed timeout T: at least 3 in the
/// band just under T, more than twice as many as in the two band widths below it (+3),
/// at least twice as many as lived longer than T, and at least a tenth of all lifetimes.
pub fn find_cluster(h: &H6) -> Option<Cluster> {
    let count = |i: usize| u64::from(h.tunnels[i]) + u64::from(h.polls[i]);
    let mut prefix = vec![0u64; BINS + 1];
    for i in 0..BINS {
        prefix[i + 1] = prefix[i] + count(i);
    }
    let sum = |from: usize, to: usize| prefix[to.min(BINS)] - prefix[from.min(BINS)];
    let total = prefix[BINS];
    let mut best: Option<Cluster> = None;
    for top in 0..BINS {
        if count(top) == 0 {
            continue;
        }
        let t = f64::from(h.max_ms[top]);
        let band = (t * BAND_REL).max(BAND_MIN_MS);
        // The bands below must lie where lifetimes are recorded at all.
        if t - 3.0 * band < MIN_LIFETIME_MS {
            continue;
        }
        let first = bin_of(t - band);
        let n = sum(first, top + 1);
        if n < 3 || best.as_ref().is_some_and(|b| b.n >= n) {
            continue;
        }
        let below = sum(bin_of(t - 3.0 * band), first);
        let above = sum(bin_of(t + (t * ABOVE_REL).max(ABOVE_MIN_MS)) + 1, BINS);
        if n < 2 * below + 3 || 2 * above > n || 10 * n < total {
            continue;
        }
        let range = first..=top;
        best = Some(Cluster {
            n,
            tunnels: range.clone().map(|i| u64::from(h.tunnels[i])).sum(),
            polls: range.clone().map(|i| u64::from(h.polls[i])).sum(),
            lo_ms: range
                .clone()
                .filter(|i| count(*i) > 0)
                .map(|i| f64::from(h.min_ms[i]))
                .fold(f64::INFINITY, f64::min),
            hi_ms: t,
            band_ms: band,
            below,
            above,
            total,
            first_bin: first,
            last_bin: top,
        });
    }
    best
}

fn h6(a: &Analyzer, m: &Moved<'_>) -> Finding {
    let h = &a.h6;
    let total: u64 = h
        .tunnels
        .iter()
        .chain(h.polls.iter())
        .map(|c| u64::from(*c))
        .sum();
    let longest = h.longest_tunnel.as_ref().map(|(ms, _)| *ms);
    let mut f = if let Some(c) = find_cluster(h) {
        let mut kinds = Vec::new();
        if c.tunnels > 0 {
            kinds.push(plural(c.tunnels, "tunnel", "tunnels"));
        }
        if c.polls > 0 {
            kinds.push(plural(c.polls, "long-poll cut", "long-polls cut"));
        }
        let mut f = finding(
            5,
            Verdict::Confirmed,
            format!(
                "{} lifetimes cluster just under ≈{} ({}–{}): {}",
                c.n,
                secs(c.hi_ms),
                secs(c.lo_ms),
                secs(c.hi_ms),
                kinds.join(", ")
            ),
            FIX_H6,
        );
        f.details.push(format!(
            "{} between {} and {}; {} longer than {}",
            c.below,
            secs(c.hi_ms - 3.0 * c.band_ms),
            secs(c.lo_ms.min(c.hi_ms - c.band_ms)),
            c.above,
            secs(c.hi_ms)
        ));
        if !m.after_cut_poll.is_empty() {
            f.details.push(format!(
                "{} refused (Session ID unknown) on its own pod after its long-poll was cut",
                plural(m.after_cut_poll.len() as u64, "session", "sessions")
            ));
        }
        let mut ex = Vec::new();
        for b in c.first_bin..=c.last_bin {
            if let Some(e) = h.examples.get(&(b as u32)) {
                ex.extend(e.0.iter().cloned());
            }
        }
        let mut ex = earliest(MAX_EXAMPLES, ex);
        ex.extend(
            m.after_cut_poll
                .iter()
                .take(MAX_SHOWN - MAX_EXAMPLES)
                .map(|s| Example {
                    time: s.at,
                    pod: s.pod,
                    id: s.id.clone(),
                    text: format!(
                        "sid {} refused on {} after its long-poll was cut{}",
                        s.sid,
                        a.pod_name(s.pod),
                        s.cut_poll
                            .map_or(String::new(), |(_, d)| format!(" at {}", secs(d)))
                    ),
                }),
        );
        f.examples = ex;
        f
    } else if let Some(ms) = longest.filter(|ms| *ms >= GKE_DEFAULT_TIMEOUT_MS) {
        let mut f = finding(
            5,
            Verdict::RuledOut,
            format!(
                "tunnels lived up to {} (past GKE's default 30 s) with no cluster of lifetimes",
                secs(ms)
            ),
            FIX_H6,
        );
        if let Some((_, e)) = &h.longest_tunnel {
            f.examples = vec![e.clone()];
        }
        f
    } else if total > 0 {
        finding(
            5,
            Verdict::NoEvidence,
            format!(
                "{} of 1 s or more, no cluster{}",
                plural(total, "lifetime", "lifetimes"),
                longest.map_or(String::new(), |l| format!("; longest tunnel {}", secs(l)))
            ),
            FIX_H6,
        )
    } else {
        finding(
            5,
            Verdict::NoEvidence,
            "no tunnel or cut long-poll lasted 1 s or more".to_string(),
            FIX_H6,
        )
    };
    let tunnels: u64 = h.tunnels.iter().map(|c| u64::from(*c)).sum();
    f.counts = vec![
        ("tunnel_lifetimes", tunnels),
        ("long_polls_cut", total - tunnels),
        (
            "sessions_refused_after_cut_poll",
            m.after_cut_poll.len() as u64,
        ),
    ];
    f
}

/// `12:55:47.634` (UTC).
pub fn clock(us: i64) -> String {
    let t = super::parse::format_time(us);
    t[11..23].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifetimes(tunnels: &[f64], polls: &[f64]) -> H6 {
        let mut h = H6::default();
        for (list, is_tunnel) in [(tunnels, true), (polls, false)] {
            for &ms in list {
                let b = bin_of(ms);
                if is_tunnel {
                    h.tunnels[b] += 1;
                } else {
                    h.polls[b] += 1;
                }
                h.min_ms[b] = h.min_ms[b].min(ms as f32);
                h.max_ms[b] = h.max_ms[b].max(ms as f32);
            }
        }
        h
    }

    #[test]
    fn clusters() {
        // (name, tunnel lifetimes, long-polls cut, expected (n, tunnels, polls) or None)
        let uniform: Vec<f64> = (1..=60).map(|i| f64::from(i) * 1000.0).collect();
        let mut at_30: Vec<f64> = (0..40).map(|i| 29_800.0 + f64::from(i) * 4.0).collect();
        at_30.extend((1..20).map(|i| f64::from(i) * 1400.0));
        let ramp = vec![
            27_000.0, 27_500.0, 28_000.0, 28_500.0, 29_000.0, 29_500.0, 29_900.0, 30_000.0,
            30_001.0,
        ];
        let short_lived: Vec<f64> = (0..300)
            .map(|i| 1000.0 + f64::from(i * i % 97) * 37.0)
            .collect();
        type Case = (&'static str, Vec<f64>, Vec<f64>, Option<(u64, u64, u64)>);
        let cases: Vec<Case> = vec![
            (
                "e2e h6: 3 quiet tunnels and a poll at 3 s, one busy tunnel 20 s",
                vec![2962.667, 2942.537, 2957.296, 20231.326],
                vec![3000.228],
                Some((4, 3, 1)),
            ),
            (
                "e2e h6 on a busy machine: the tunnels' head start is 0.16 s",
                vec![2926.163, 2836.002, 2844.904, 20487.439],
                vec![3000.595],
                Some((4, 3, 1)),
            ),
            (
                "three at 30 s",
                vec![29_950.0, 29_990.0, 30_000.0],
                vec![],
                Some((3, 3, 0)),
            ),
            (
                "two are not a cluster",
                vec![29_950.0, 30_000.0],
                vec![],
                None,
            ),
            ("spread evenly", uniform, vec![], None),
            ("a ramp up to 30 s is no spike", ramp, vec![], None),
            (
                "GKE default with natural closes below",
                at_30,
                vec![],
                Some((40, 40, 0)),
            ),
            (
                "most outlive the band",
                vec![
                    3000.0, 3001.0, 3002.0, 50_000.0, 60_000.0, 70_000.0, 80_000.0, 90_000.0,
                    95_000.0, 99_000.0,
                ],
                vec![],
                None,
            ),
            ("many short-lived sessions", short_lived, vec![], None),
            (
                "too short to tell from the 1 s floor",
                vec![1900.0, 1950.0, 2000.0],
                vec![],
                None,
            ),
            (
                "an hour",
                vec![
                    3_599_000.0,
                    3_599_500.0,
                    3_600_000.0,
                    3_600_000.0,
                    12_000.0,
                    400_000.0,
                ],
                vec![],
                Some((4, 4, 0)),
            ),
            ("nothing", vec![], vec![], None),
        ];
        for (name, t, p, want) in cases {
            let got = find_cluster(&lifetimes(&t, &p)).map(|c| (c.n, c.tunnels, c.polls));
            assert_eq!(got, want, "{name}");
        }
    }

    /// The six verdicts (C confirmed, R ruled out, - no evidence) for records given as
    /// (pod, second, JSON fields after the common ones).
    fn verdicts_of(records: &[(&str, u32, &str)]) -> String {
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
        findings(&a)
            .iter()
            .map(|f| match f.verdict {
                Verdict::Confirmed => 'C',
                Verdict::RuledOut => 'R',
                Verdict::NoEvidence => '-',
            })
            .collect()
    }

    const HANDSHAKE: &str = r#""event":"request","id":"h","method":"GET","sio":{"transport":"polling","sid":"S","handshake":true},"status":200,"headers":{"origin":"https://ide.example.com","host":"ide.example.com"}"#;
    const POLL: &str = r#""event":"request","id":"p","method":"GET","sio":{"transport":"polling","sid":"S","handshake":false},"status":200"#;
    const REFUSED: &str = r#""event":"request","id":"r","method":"GET","sio":{"transport":"polling","sid":"S","handshake":false},"status":400,"sio_error":{"code":1,"message":"Session ID unknown"},"flags":["sid_unknown","sid_not_issued_here"]"#;
    const WS_NO_UPGRADE: &str = r#""event":"request","id":"w","method":"GET","sio":{"transport":"websocket","sid":"S"},"status":400,"headers":{"upgrade":null},"sio_error":{"code":3,"message":"Bad request"},"flags":["upgrade_header_missing"]"#;
    const UPGRADED: &str = r#""event":"upgrade","id":"u","method":"GET","sio":{"transport":"websocket","sid":"S"},"status":101,"headers":{"upgrade":"websocket","connection":"upgrade"}"#;
    const HC_404: &str = r#""event":"request","id":"c","method":"GET","path":"/health","status":404,"headers":{"user-agent":"GoogleHC/1.0"},"flags":["health_check"]"#;
    const HC_200: &str = r#""event":"request","id":"c","method":"GET","path":"/health","status":200,"headers":{"user-agent":"GoogleHC/1.0"},"flags":["health_check"]"#;
    const FORBIDDEN_MISMATCH: &str = r#""event":"request","id":"f","method":"GET","sio":{"transport":"polling"},"status":403,"headers":{"origin":"http://k8s-ingress.internal","host":"ide.example.com"},"sio_error":{"code":4,"message":"Forbidden"},"flags":["origin_host_mismatch","forbidden"]"#;
    const FORBIDDEN_NO_ORIGIN: &str = r#""event":"request","id":"f","method":"GET","sio":{"transport":"polling"},"status":403,"headers":{"origin":null,"host":"ide.example.com"},"sio_error":{"code":4,"message":"Forbidden"},"flags":["forbidden"]"#;
    const LISTENING: &str = r#""event":"listening""#;
    const DRAINING: &str = r#""event":"draining","open_tunnels":0,"deadline_s":25"#;
    const STOPPED: &str = r#""event":"stopped","drained":true,"tunnels_closed_by_shutdown":0"#;
    const CUT: &str = r#""event":"tunnel_closed","id":"u","sio":{"sid":"S"},"duration_ms":2000,"closed_by":"shutdown""#;

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
        let long = closed("4", 45_000.0);
        type Records<'a> = Vec<(&'a str, u32, &'a str)>;
        let cases: Vec<(&str, Records, &str)> = vec![
            ("nothing", vec![], "------"),
            (
                "websocket without Upgrade",
                vec![("a", 1, WS_NO_UPGRADE)],
                "C-----",
            ),
            (
                "websocket upgraded with its headers",
                vec![("a", 1, UPGRADED)],
                "R-----",
            ),
            (
                "both: some path strips it",
                vec![("a", 1, UPGRADED), ("a", 2, WS_NO_UPGRADE)],
                "C-----",
            ),
            (
                "sid issued on a, refused on b",
                vec![("a", 1, HANDSHAKE), ("b", 2, REFUSED)],
                "-C-R--",
            ),
            (
                "the same, b's records first",
                vec![("b", 2, REFUSED), ("a", 1, HANDSHAKE)],
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
                "refused, issued nowhere in the records",
                vec![("b", 2, REFUSED)],
                "------",
            ),
            (
                "five later requests stayed, two pods",
                vec![
                    ("a", 1, HANDSHAKE),
                    ("a", 2, POLL),
                    ("a", 3, POLL),
                    ("a", 4, POLL),
                    ("a", 5, POLL),
                    ("a", 6, POLL),
                    ("b", 7, LISTENING),
                ],
                "-R-R--",
            ),
            (
                "four are not enough",
                vec![
                    ("a", 1, HANDSHAKE),
                    ("a", 2, POLL),
                    ("a", 3, POLL),
                    ("a", 4, POLL),
                    ("a", 5, POLL),
                    ("b", 7, LISTENING),
                ],
                "---R--",
            ),
            (
                "health check 404",
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
                "three tunnels at 30 s",
                vec![("a", 31, &t1), ("a", 32, &t2), ("a", 33, &t3)],
                "-----C",
            ),
            ("a tunnel outlived 30 s", vec![("a", 46, &long)], "-----R"),
        ];
        for (name, records, want) in cases {
            assert_eq!(verdicts_of(&records), want, "{name}");
        }
    }

    #[test]
    fn cluster_bounds() {
        let c = find_cluster(&lifetimes(
            &[2962.667, 2942.537, 2957.296, 20231.326],
            &[3000.228],
        ))
        .unwrap();
        assert!((c.lo_ms - 2942.537).abs() < 0.01, "{c:?}");
        assert!((c.hi_ms - 3000.228).abs() < 0.01, "{c:?}");
        assert_eq!((c.below, c.above, c.total), (0, 1, 5));
    }

    #[test]
    fn clock_is_utc_time_of_day() {
        assert_eq!(
            clock(crate::report::parse::parse_time("2026-11-25T12:55:47.634831Z").unwrap()),
            "12:55:47.634"
        );
    }
}
