//! What the load balancer's own entries add to the verdicts: H3 from requests it could not
//! send to any healthy backend while theia answered, H6 from websockets and requests it
//! ended at its backend timeout, H1 from stripped upgrades it passed to a pod. A verdict is
//! raised only on the load balancer's explicit `statusDetails`, never lowered. Pure.

use super::analyze::Analyzer;
use super::evidence::{Example, PodId, secs};
use super::lb::{Entry, Family, TraceId};
use super::lb_join::{LbJoin, Side};
use super::parse::{ClosedBy, Flags};
use super::verdict::{Finding, Verdict, count, earliest, of, plural};

/// Requests the load balancer answered for lack of a healthy backend, needed (while theia
/// answered on some pod) to confirm H3.
const MIN_NO_BACKEND: u64 = 3;
/// How close to such a request a pod's answer must be to say theia was up.
const UP_WINDOW_US: i64 = 30_000_000;
/// Entries the load balancer ended at its backend timeout, needed to confirm H6.
const MIN_CUTS: u64 = 3;
/// Lifetimes more than this past the longest cut (2 %, at least 0.1 s) outlived it.
const ABOVE_REL: f64 = 0.02;
const ABOVE_MIN_MS: f64 = 100.0;

pub const H3_RULE: &str = "from the load balancer: confirmed when it answered at least 3 requests with failed_to_pick_backend (no healthy backend) within 30 s of theia answering on a pod (so the pods were up and the health check called them unhealthy); with no pod answering around them they point at pods being down (H5), not at the check";
pub const H6_RULE: &str = "from the load balancer: confirmed when it ended at least 3 websockets or requests with backend_timeout and at most half as many others on the same backend services outlived the longest of them (+2 %, at least 0.1 s); isolated when it ended fewer, or more outlived them";

/// Amends `findings` (H1..H6 in order) with the load balancer's evidence, if any was read.
pub fn amend(findings: &mut [Finding], a: &Analyzer) {
    let j = &a.lb;
    if j.is_empty() || findings.len() < 6 {
        return;
    }
    h1(&mut findings[0], j);
    h3(&mut findings[2], j, a);
    h6(&mut findings[5], j);
}

fn lb_example(e: &Entry, side: Option<&Side>, text: String) -> Example {
    Example {
        time: e.time,
        pod: side.map_or(PodId::MAX, |s| s.pod),
        id: side.and_then(|s| s.id.as_deref()).map(str::to_string),
        text,
    }
}

fn side_of<'j>(j: &'j LbJoin, e: &Entry) -> Option<&'j Side> {
    match e.trace {
        TraceId::Id(t) => j.side(t),
        _ => None,
    }
}

/// Replaces the verdict with a stronger one from the load balancer; the summary that the
/// records alone gave stays, as a detail.
fn raise(f: &mut Finding, to: Verdict, summary: String, rule: &'static str) {
    let stronger = match to {
        Verdict::Confirmed => f.verdict != Verdict::Confirmed,
        Verdict::Isolated => f.verdict == Verdict::NoEvidence,
        _ => false,
    };
    if stronger {
        let before = std::mem::replace(&mut f.summary, summary);
        f.details
            .insert(0, format!("sockproxy's records alone: {before}"));
        f.verdict = to;
        f.rule = rule;
    } else {
        f.details.insert(0, summary);
    }
}

fn h1(f: &mut Finding, j: &LbJoin) {
    let (mut stripped, mut passed, mut rejected) = (0u64, 0u64, 0u64);
    for e in j.entries() {
        if e.details.as_deref() == Some("upgrade_header_rejected") {
            rejected += 1;
        }
        let Some(s) = side_of(j, e) else { continue };
        if s.flags.has(Flags::UPGRADE_HEADER_MISSING) {
            stripped += 1;
            if e.family == Family::Backend && Some(e.status) == s.status {
                passed += 1;
            }
        }
    }
    if stripped > 0 {
        f.details.push(format!(
            "the load balancer logged {} of these websocket requests without Upgrade: it passed {} to a pod (response_sent_by_backend) and the browser got theia's answer, so the header was lost after the load balancer (on its hop to the pod, or in the pod's nginx)",
            count(stripped),
            count(passed)
        ));
    }
    if rejected > 0 {
        f.details.push(format!(
            "the load balancer itself refused {} carrying Upgrade (upgrade_header_rejected): they never reached a pod",
            plural(rejected, "request", "requests")
        ));
    }
    if stripped + rejected > 0 {
        f.counts.push(("lb_stripped_passed_to_pod", passed));
        f.counts.push(("lb_upgrade_header_rejected", rejected));
    }
}

fn h3(f: &mut Finding, j: &LbJoin, a: &Analyzer) {
    let (mut n, mut up) = (0u64, 0u64);
    let mut pods_up: Vec<PodId> = Vec::new();
    let mut ex = Vec::new();
    for e in j
        .entries()
        .iter()
        .filter(|e| e.family == Family::NoHealthyBackend)
    {
        n += 1;
        let answering: Vec<PodId> = match e.time {
            Some(t) => (0..a.pods.len() as PodId)
                .filter(|p| {
                    a.pods[*p as usize].answered_between(t - UP_WINDOW_US, t + UP_WINDOW_US)
                })
                .collect(),
            None => Vec::new(),
        };
        if !answering.is_empty() {
            up += 1;
            for p in answering {
                if !pods_up.contains(&p) {
                    pods_up.push(p);
                }
            }
        }
        {
            let text = format!(
                "load balancer: {} {} → {} failed_to_pick_backend; no pod's sidecar saw it",
                e.method.as_deref().unwrap_or("?"),
                e.path().unwrap_or("?"),
                e.status
            );
            ex.push(lb_example(e, None, text));
            ex = earliest(3, ex);
        }
    }
    if n == 0 {
        return;
    }
    f.counts.push(("lb_no_healthy_backend", n));
    f.counts.push(("lb_no_healthy_backend_while_theia_up", up));
    let names: Vec<&str> = pods_up.iter().map(|p| a.pod_name(*p)).collect();
    if up >= MIN_NO_BACKEND {
        let summary = format!(
            "the load balancer answered {} itself for lack of a healthy backend (failed_to_pick_backend), {} within 30 s of theia answering on {}: the pods were up and the health check called them unhealthy",
            plural(n, "request", "requests"),
            count(up),
            names.join(", ")
        );
        raise(f, Verdict::Confirmed, summary, H3_RULE);
        ex.append(&mut f.examples);
        f.examples = earliest(super::verdict::MAX_SHOWN, ex);
    } else {
        f.details.push(format!(
            "the load balancer answered {} itself for lack of a healthy backend (failed_to_pick_backend); {} within 30 s of any pod answering: too few to blame the check (pods down point at H5)",
            plural(n, "request", "requests"),
            of(up, n)
        ));
    }
}

/// The load balancer's backend-timeout ends: how many, how long, and against sockproxy.
#[derive(Debug, Default)]
struct Cuts {
    n: u64,
    websockets: u64,
    lo_ms: f64,
    hi_ms: f64,
    outlived: u64,
    /// Of the cut websockets, those joined to a tunnel, and which side sockproxy saw close.
    joined: u64,
    by_client: u64,
    side_lo_ms: f64,
    side_hi_ms: f64,
}

fn cuts(j: &LbJoin) -> Cuts {
    let mut c = Cuts {
        lo_ms: f64::INFINITY,
        side_lo_ms: f64::INFINITY,
        ..Cuts::default()
    };
    for e in j
        .entries()
        .iter()
        .filter(|e| e.family == Family::BackendTimeout)
    {
        c.n += 1;
        if let Some(ms) = e.latency_ms {
            c.lo_ms = c.lo_ms.min(ms);
            c.hi_ms = c.hi_ms.max(ms);
        }
        if !e.websocket() {
            continue;
        }
        c.websockets += 1;
        if let Some((ms, by)) = side_of(j, e).and_then(|s| s.tunnel) {
            c.joined += 1;
            c.by_client += u64::from(by == ClosedBy::Client);
            c.side_lo_ms = c.side_lo_ms.min(ms);
            c.side_hi_ms = c.side_hi_ms.max(ms);
        }
    }
    // A timeout belongs to one backend service: lifetimes on others say nothing about it.
    let mut services: Vec<Option<&str>> = Vec::new();
    for e in j
        .entries()
        .iter()
        .filter(|e| e.family == Family::BackendTimeout)
    {
        if !services.contains(&e.backend_service.as_deref()) {
            services.push(e.backend_service.as_deref());
        }
    }
    let limit = c.hi_ms + (c.hi_ms * ABOVE_REL).max(ABOVE_MIN_MS);
    c.outlived = j
        .entries()
        .iter()
        .filter(|e| e.family != Family::BackendTimeout)
        .filter(|e| services.contains(&e.backend_service.as_deref()))
        .filter(|e| e.latency_ms.is_some_and(|ms| ms > limit))
        .count() as u64;
    c
}

fn h6(f: &mut Finding, j: &LbJoin) {
    let c = cuts(j);
    if c.n == 0 {
        return;
    }
    f.counts.push(("lb_backend_timeouts", c.n));
    f.counts.push(("lb_websockets_cut", c.websockets));
    f.counts.push(("lb_outlived_timeout", c.outlived));
    let range = if c.lo_ms.is_finite() {
        format!(" after {}", between(c.lo_ms, c.hi_ms))
    } else {
        String::new()
    };
    let mut summary = format!(
        "the load balancer ended {} ({} of them websockets) with backend_timeout{range}; {} lasted longer on the same backend service",
        plural(c.n, "connection", "connections"),
        count(c.websockets),
        count(c.outlived)
    );
    if c.joined > 0 {
        summary.push_str(&format!(
            "; sockproxy saw {} of those tunnels end, {} closed by the client side, after {}",
            count(c.joined),
            count(c.by_client),
            between(c.side_lo_ms, c.side_hi_ms)
        ));
    }
    let verdict = if c.n >= MIN_CUTS && c.outlived * 2 <= c.n {
        Verdict::Confirmed
    } else {
        Verdict::Isolated
    };
    raise(f, verdict, summary, H6_RULE);
    let mut ex: Vec<Example> = j
        .entries()
        .iter()
        .filter(|e| e.family == Family::BackendTimeout)
        .take(2)
        .map(|e| {
            let side = side_of(j, e);
            let theirs = side
                .and_then(|s| s.tunnel)
                .map_or("no tunnel close in the records".to_string(), |(ms, by)| {
                    format!("sockproxy: closed by {} after {}", by.name(), secs(ms))
                });
            let text = format!(
                "load balancer: {} {} backend_timeout after {}; {theirs}",
                e.path().unwrap_or("?"),
                e.status,
                e.latency_ms.map_or("?".to_string(), secs)
            );
            lb_example(e, side, text)
        })
        .collect();
    ex.append(&mut f.examples);
    ex.truncate(super::verdict::MAX_SHOWN);
    f.examples = ex;
}

/// `3.001 s–3.004 s`, or one value when both round alike.
pub fn between(lo: f64, hi: f64) -> String {
    let (a, b) = (secs(lo), secs(hi));
    if a == b { a } else { format!("{a}–{b}") }
}
