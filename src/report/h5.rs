//! H5, draining kills sessions: its state, its fold over records and its rule. Pure.
//!
//! Every rollout ends sessions; sessions that end at a drain and come back as fresh
//! handshakes are normal churn. What clients see as failures: tunnels and requests the
//! drain deadline cut (`closed_by`/`outcome` `shutdown`), clients that came back with
//! the old sid and were refused, and sockproxy's own 502 while the pod drained (theia
//! gone before the sidecar). A 502 after a start, before theia first answered on that
//! pod, is a readiness finding (theia not ready when traffic arrived), not draining.

use super::evidence::{Example, Examples, MAX_JOINED, PodId, describe, example, secs};
use super::parse::Rec;
use super::pods::{self, PodStats};
use super::sessions::{Moved, cross_example};
use super::verdict::{Finding, MAX_SHOWN, Verdict, count, earliest, of, plural, share_at_least};

pub const RULE: &str = "failures = tunnels and requests cut by the drain deadline + sessions refused after their pod drained or restarted + sockproxy's 502 to new requests while a pod drained (theia gone, traffic still sent); confirmed when they are at least 25 % of what the drains met (tunnels and requests open at each `draining`, plus the sessions that came back after one); isolated when fewer; ruled out when pods drained and nothing failed. 502s before theia first answered after a start are a readiness finding, not this";
const FIX: &str = "let sessions end before the pod does: --drain-timeout and terminationGracePeriodSeconds above the longest session, BackendConfig `connectionDraining.drainingTimeoutSec` to match, and rely on the client's reconnect";

const SHARE: f64 = 0.25;

#[derive(Clone, Debug, Default)]
pub struct H5 {
    pub drains: u64,
    pub stops: u64,
    pub stops_cut_short: u64,
    /// Sum of `draining.open_tunnels` and `open_requests`: what the drains met.
    pub open_at_drains: u64,
    pub tunnels_cut: u64,
    /// Sum of `stopped.tunnels_closed_by_shutdown`.
    pub stopped_tunnels: u64,
    pub requests_cut: u64,
    pub examples: Examples,
    /// Exchanges sockproxy answered itself: pod, time, whether theia refused the
    /// connection (`upstream_unreachable`; else it accepted and never answered), example.
    pub upstream_failures: Vec<(PodId, Option<i64>, bool, Example)>,
    pub upstream_failures_not_kept: u64,
}

/// sockproxy's own 502s, by when they happened in the pod's life.
/// What H5's verdict weighs: the failures the drains caused and what the drains met.
struct Tally<'a> {
    u: Unreachable<'a>,
    tunnels: u64,
    refused: u64,
    came_back: u64,
    failures: u64,
    met: u64,
}

#[derive(Default)]
struct Unreachable<'a> {
    starting: Vec<&'a Example>,
    /// New requests theia refused while the pod drained (traffic still sent to it).
    draining: Vec<&'a Example>,
    /// Requests in flight when theia exited during the drain: the drain's open requests.
    in_flight_at_exit: u64,
    midlife: Vec<&'a Example>,
}

impl H5 {
    pub fn draining(&mut self, r: &Rec<'_>, pod: PodId) {
        self.drains += 1;
        let open = r.open_tunnels.unwrap_or(0) + r.open_requests.unwrap_or(0);
        self.open_at_drains += open;
        if open > 0 {
            let text = format!(
                "draining with {} tunnel(s) and {} request(s) open, deadline {}s",
                r.open_tunnels.unwrap_or(0),
                r.open_requests.unwrap_or(0),
                r.deadline_s.map_or("?".to_string(), |d| format!("{d}"))
            );
            self.examples.offer(r.time, || example(r, pod, text));
        }
    }

    pub fn stopped(&mut self, r: &Rec<'_>, pod: PodId) {
        self.stops += 1;
        let cut = r.tunnels_closed_by_shutdown.unwrap_or(0);
        self.stopped_tunnels += cut;
        if r.drained == Some(false) || cut > 0 {
            self.stops_cut_short += 1;
            let text = format!("stopped, drain cut short: {cut} tunnel(s) closed by shutdown");
            self.examples.offer(r.time, || example(r, pod, text));
        }
    }

    pub fn tunnel_cut(&mut self, r: &Rec<'_>, pod: PodId, ms: f64) {
        self.tunnels_cut += 1;
        let text = format!("tunnel closed by shutdown after {}", secs(ms));
        self.examples.offer(r.time, || example(r, pod, text));
    }

    pub fn fold(&mut self, r: &Rec<'_>, pod: PodId, upstream_failed: bool, refused: bool) {
        if r.outcome == super::parse::Outcome::Shutdown {
            self.requests_cut += 1;
            let text = format!("{} cut by the drain deadline", describe(r));
            self.examples.offer(r.time, || example(r, pod, text));
        }
        if upstream_failed {
            if self.upstream_failures.len() < MAX_JOINED {
                let text = format!(
                    "{} (sockproxy answered: {})",
                    describe(r),
                    r.upstream_error.unwrap_or("theia unreachable")
                );
                self.upstream_failures
                    .push((pod, r.time, refused, example(r, pod, text)));
            } else {
                self.upstream_failures_not_kept += 1;
            }
        }
    }

    fn unreachable<'a>(&'a self, pods: &[PodStats]) -> Unreachable<'a> {
        let mut u = Unreachable::default();
        for (pod, t, refused, e) in &self.upstream_failures {
            let p = &pods[*pod as usize];
            let Some(t) = *t else {
                u.midlife.push(e);
                continue;
            };
            // One pod's records share one clock: no skew to allow for.
            let start = p.start_before(t).or(p.first).unwrap_or(t);
            let draining = p.drains.iter().any(|d| *d <= t && *d >= start);
            if draining && *refused {
                u.draining.push(e);
            } else if draining {
                u.in_flight_at_exit += 1;
            } else if !p.answered_between(start, t - 1) {
                u.starting.push(e);
            } else {
                u.midlife.push(e);
            }
        }
        u
    }

    pub fn verdict(&self, pods: &[PodStats], m: &Moved<'_>) -> Finding {
        let t = self.tally(pods, m);
        let summary = self.summary(&t);
        let mut f = if t.failures > 0 && share_at_least(t.failures, t.met, SHARE) {
            let mut f = Finding::new(4, Verdict::Confirmed, summary, RULE, FIX);
            f.examples = earliest(MAX_SHOWN, self.confirmed_examples(pods, m, &t.u));
            f
        } else if t.failures > 0 {
            let mut f = Finding::new(
                4,
                Verdict::Isolated,
                format!(
                    "{summary}: most sessions ended on their own or came back as fresh handshakes"
                ),
                RULE,
                FIX,
            );
            f.examples = earliest(MAX_SHOWN, self.examples.0.clone());
            f
        } else {
            self.nothing_cut(t.came_back)
        };
        self.not_drain_notes(&mut f, &t.u, pods);
        f.counts = vec![
            ("drains", self.drains),
            ("stops", self.stops),
            ("drains_cut_short", self.stops_cut_short),
            ("open_at_drains", self.open_at_drains),
            ("tunnels_closed_by_shutdown", t.tunnels),
            ("requests_cut_by_shutdown", self.requests_cut),
            ("sessions_back_after_drain_or_restart", t.came_back),
            ("sessions_refused_after_drain_or_restart", t.refused),
            (
                "upstream_failures",
                self.upstream_failures.len() as u64 + self.upstream_failures_not_kept,
            ),
            (
                "upstream_failures_while_draining",
                t.u.draining.len() as u64,
            ),
            ("upstream_failures_before_ready", t.u.starting.len() as u64),
            // The name before the two above (kept for scripts that read it).
            (
                "upstream_failures_near_start_or_drain",
                (t.u.draining.len() + t.u.starting.len()) as u64 + t.u.in_flight_at_exit,
            ),
            ("failures", t.failures),
        ];
        f
    }

    /// The drains' failures and what they met.
    fn tally<'a>(&'a self, pods: &[PodStats], m: &Moved<'_>) -> Tally<'a> {
        let u = self.unreachable(pods);
        let tunnels = self.tunnels_cut.max(self.stopped_tunnels);
        let refused = m.refused_after_shutdown();
        let came_back = (m.after_drain.len() + m.after_restart.len()) as u64;
        let failures = tunnels + self.requests_cut + refused + u.draining.len() as u64;
        let met = self.open_at_drains.max(tunnels + self.requests_cut)
            + came_back
            + u.draining.len() as u64;
        Tally {
            u,
            tunnels,
            refused,
            came_back,
            failures,
            met,
        }
    }

    /// `N failures of M the drains met: …`, each kind of failure named.
    fn summary(&self, t: &Tally<'_>) -> String {
        let mut parts = Vec::new();
        if t.tunnels > 0 {
            parts.push(format!(
                "{} closed by shutdown",
                plural(t.tunnels, "tunnel", "tunnels")
            ));
        }
        if self.requests_cut > 0 {
            parts.push(format!(
                "{} cut by the drain deadline",
                plural(self.requests_cut, "request", "requests")
            ));
        }
        if t.refused > 0 {
            parts.push(format!(
                "{} came back with the old sid after its pod drained or restarted and was refused",
                of(t.refused, t.came_back)
            ));
        }
        if !t.u.draining.is_empty() {
            parts.push(format!(
                "{} answered by sockproxy while the pod drained (theia gone first)",
                plural(t.u.draining.len() as u64, "request", "requests")
            ));
        }
        format!(
            "{} failures of {} the drains met: {}",
            count(t.failures),
            count(t.met),
            parts.join("; ")
        )
    }

    /// The failures quoted for a confirmed H5: tunnels cut, sessions refused after their
    /// pod drained or restarted, 502s while draining.
    fn confirmed_examples(
        &self,
        pods: &[PodStats],
        m: &Moved<'_>,
        u: &Unreachable<'_>,
    ) -> Vec<Example> {
        let name = |p| pods::name(pods, p).to_string();
        let mut ex: Vec<Example> = self.examples.0.clone();
        ex.extend(
            m.after_drain
                .iter()
                .filter(|c| c.refused)
                .map(|c| cross_example(name, c)),
        );
        ex.extend(m.after_restart.iter().map(|s| Example {
            time: s.at,
            pod: s.pod,
            id: s.id.clone(),
            text: format!(
                "sid {} refused after {} restarted",
                s.sid,
                pods::name(pods, s.pod)
            ),
        }));
        ex.extend(u.draining.iter().map(|e| (*e).clone()));
        ex
    }

    /// Nothing failed: ruled out when pods drained, else no evidence.
    fn nothing_cut(&self, came_back: u64) -> Finding {
        if self.drains > 0 || self.stops > 0 {
            Finding::new(
                4,
                Verdict::RuledOut,
                format!(
                    "{} with nothing cut ({} open when they began ended on their own{})",
                    plural(self.drains.max(self.stops), "drain", "drains"),
                    count(self.open_at_drains),
                    if came_back > 0 {
                        format!(
                            "; {} came back after a drain, none refused",
                            count(came_back)
                        )
                    } else {
                        String::new()
                    }
                ),
                RULE,
                FIX,
            )
        } else {
            Finding::new(
                4,
                Verdict::NoEvidence,
                "no shutdown in the records".to_string(),
                RULE,
                FIX,
            )
        }
    }

    /// sockproxy's 502s that are not the drain's (before theia was ready, theia exiting,
    /// mid-life) and restarts.
    fn not_drain_notes(&self, f: &mut Finding, u: &Unreachable<'_>, pods: &[PodStats]) {
        if !u.starting.is_empty() {
            let starting_pods: std::collections::BTreeSet<u32> = self
                .upstream_failures
                .iter()
                .filter(|(_, _, _, e)| u.starting.iter().any(|s| std::ptr::eq(*s, e)))
                .map(|(p, _, _, _)| *p)
                .collect();
            f.details.push(format!(
                "not draining: {} answered 502 by sockproxy after a start on {}, before theia first answered there: theia was not ready when traffic arrived (a readiness probe on theia's port, or sockproxy as a native sidecar started before theia)",
                plural(u.starting.len() as u64, "request", "requests"),
                plural(starting_pods.len() as u64, "pod", "pods")
            ));
            if f.verdict != Verdict::Confirmed {
                f.examples
                    .extend(u.starting.iter().take(2).map(|e| (*e).clone()));
            }
        }
        if u.in_flight_at_exit > 0 {
            f.details.push(format!(
                "{} in flight when theia exited during a drain got sockproxy's 502 (no answer): the drain's open requests, ended by theia's shutdown; clients retry",
                plural(u.in_flight_at_exit, "request", "requests")
            ));
        }
        if !u.midlife.is_empty() {
            f.details.push(format!(
                "{} answered 502 by sockproxy while theia had been answering (theia restarted or overloaded?)",
                plural(u.midlife.len() as u64, "request", "requests")
            ));
        }
        let restarts: usize = pods.iter().map(|p| p.starts.len().saturating_sub(1)).sum();
        if restarts > 0 {
            f.details.push(format!(
                "{} (a later `listening` on the same pod)",
                plural(restarts as u64, "restart", "restarts")
            ));
        }
    }
}
