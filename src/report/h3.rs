//! H3, health check failing: its state, its fold over records and its rule. Pure.
//!
//! Health checks (`GoogleHC/…` from the load balancer, `kube-probe/…` from the kubelet)
//! are recorded with `--log-all`. A check that fails while theia starts and then passes is
//! how every pod starts (a readiness probe doing its job: 502 from sockproxy, 503 from
//! theia); a 4xx means theia is up and refuses the path, never a start-up state. One
//! that keeps failing once
//! theia is up, or never passes, makes the load balancer drop the backend (then browsers
//! get the load balancer's 502, never a 400). Checks after a pod's drain are ignored.

use std::collections::HashMap;

use super::evidence::{Example, Examples, PodId, example, status_text};
use super::parse::{Flags, Rec};
use super::pods::{self, PodStats};
use super::verdict::{Finding, Verdict, count, of, plural, share_at_least};

pub const RULE: &str = "per pod and checker, checks that failed with 5xx or no answer before that checker's first pass after a pod start are start-up (a 4xx never is); confirmed when, after start-up (or 6 or more 5xx in a series that never passed), at least half of one checker's checks on a pod failed, or 3 in a row did; isolated when fewer failed; ruled out when every check passed once theia was up; checks sockproxy answered itself (theia down) never count";
const FIX: &str = "point the load balancer's health check at a path that answers 200 (BackendConfig `healthCheck.requestPath`, or a readinessProbe on the serving port); a failing check gives 502s, never 400s";

const SHARE: f64 = 0.5;
const RUN: u32 = 3;
/// 5xx failures after a start with no pass at all before they count as failing (a probe
/// every 10 s: a minute); fewer may be a start the records end in the middle of.
const NEVER_PASSED: u64 = 6;
/// Checks kept with their times (for the start-up split); past this, only counted.
const MAX_CHECKS: usize = 500_000;

/// The status kept for a check sockproxy answered itself (never a real status).
const THEIA_DOWN: u16 = 1;

/// One check: when, and the status it got.
type Check = (Option<i64>, u16);

#[derive(Clone, Debug, Default)]
pub struct H3 {
    pub checks: u64,
    pub ok: u64,
    pub failed: u64,
    /// Checks sockproxy answered itself (theia unreachable or silent).
    pub theia_down: u64,
    /// (agent, path, status) → count, the first few distinct.
    pub outcomes: Vec<(String, String, u16, u64)>,
    /// (pod, checker) → (time, status) of each check, in input order.
    series: HashMap<(PodId, Box<str>), Vec<Check>>,
    kept: usize,
    pub examples: Examples,
}

/// One checker on one pod, sorted out.
#[derive(Debug, Default)]
struct Sorted {
    startup_failed: u64,
    after: u64,
    after_failed: u64,
    longest_run: u32,
    never_passed: bool,
}

impl H3 {
    pub fn fold(&mut self, r: &Rec<'_>, pod: PodId, status: u16) {
        if !r.flags.has(Flags::HEALTH_CHECK) {
            return;
        }
        self.checks += 1;
        let ok = (200..400).contains(&status);
        // sockproxy answered itself: theia was down or hung, which the check reported
        // rightly; not a check pointed at the wrong path (H5 names theia's absences).
        let theia_down = r.flags.has(Flags::UPSTREAM_UNREACHABLE) || r.upstream_error.is_some();
        if ok {
            self.ok += 1;
        } else if theia_down {
            self.theia_down += 1;
        } else {
            self.failed += 1;
        }
        let ua = r.user_agent.unwrap_or("?");
        let agent = ua.split_whitespace().next().unwrap_or("?");
        let checker = agent.split('/').next().unwrap_or(agent);
        if self.kept < MAX_CHECKS {
            self.kept += 1;
            self.series
                .entry((pod, Box::from(checker)))
                .or_default()
                .push((r.time, if theia_down { THEIA_DOWN } else { status }));
        }
        let path = r.path.unwrap_or("?");
        let known = self
            .outcomes
            .iter()
            .position(|(a, p, s, _)| a == agent && p == path && *s == status);
        match known {
            Some(i) => self.outcomes[i].3 += 1,
            None if self.outcomes.len() < 8 => {
                self.outcomes
                    .push((agent.to_string(), path.to_string(), status, 1))
            }
            None => {}
        }
        if !ok && !theia_down {
            let text = format!(
                "{agent} {} {} → {}",
                r.method.unwrap_or("?"),
                path,
                status_text(status)
            );
            self.examples.offer(r.time, || example(r, pod, text));
        }
    }

    pub fn verdict(&self, pods: &[PodStats]) -> Finding {
        let (failing, startup, after, after_failed) = self.tally(pods);
        let mut f = if !failing.is_empty() {
            self.confirmed(pods, &failing, after_failed)
        } else if after_failed > 0 {
            Finding::new(
                2,
                Verdict::Isolated,
                format!(
                    "{} checks failed once theia was up, none in a run of {RUN} and under half of any checker's: transient",
                    of(after_failed, after)
                ),
                RULE,
                FIX,
            )
        } else if self.checks > 0 {
            Finding::new(
                2,
                Verdict::RuledOut,
                format!(
                    "{} once theia was up: {}",
                    plural(after, "health check passed", "health checks passed"),
                    self.outcomes(true)
                ),
                RULE,
                FIX,
            )
        } else {
            Finding::new(
                2,
                Verdict::NoEvidence,
                "no health-check request recorded (sockproxy records them with --log-all)"
                    .to_string(),
                RULE,
                FIX,
            )
        };
        if self.theia_down > 0 {
            f.details.push(format!(
                "{} answered by sockproxy itself (theia down or silent): the check was right, theia was away; not counted here",
                plural(self.theia_down, "check was", "checks were")
            ));
        }
        if startup > 0 {
            f.details.push(format!(
                "{} while theia started, before the first pass (normal for a readiness probe)",
                plural(startup, "check failed", "checks failed")
            ));
        }
        f.counts = vec![
            ("health_checks", self.checks),
            ("ok", self.ok),
            ("failed", self.failed),
            ("answered_by_sockproxy", self.theia_down),
            ("failed_at_startup", startup),
            ("checks_after_startup", after),
            ("failed_after_startup", after_failed),
        ];
        f.examples = self.examples.0.clone();
        if f.verdict != Verdict::Confirmed {
            f.examples.retain(|e: &Example| e.time.is_some());
        }
        f
    }

    /// `GoogleHC/1.0 /health → 404 ×12, …`: the checks that passed (`ok`) or failed.
    fn outcomes(&self, ok: bool) -> String {
        self.outcomes
            .iter()
            .filter(|o| (200..400).contains(&o.2) == ok)
            .map(|(agent, path, status, n)| format!("{agent} {path} → {status} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Each pod's and checker's checks sorted: the failing series, and the checks failed
    /// at start-up, made after it, and failed after it.
    fn tally(&self, pods: &[PodStats]) -> (Vec<(PodId, &str, Sorted)>, u64, u64, u64) {
        let mut keys: Vec<&(PodId, Box<str>)> = self.series.keys().collect();
        keys.sort();
        let mut failing: Vec<(PodId, &str, Sorted)> = Vec::new();
        let (mut startup, mut after, mut after_failed) = (0, 0, 0);
        for key in keys {
            let s = sort(&self.series[key], &pods[key.0 as usize]);
            startup += s.startup_failed;
            after += s.after;
            after_failed += s.after_failed;
            let bad = s.after_failed > 0
                && (share_at_least(s.after_failed, s.after, SHARE) || s.longest_run >= RUN);
            if bad {
                failing.push((key.0, &key.1, s));
            }
        }
        (failing, startup, after, after_failed)
    }

    /// Checks failing after start-up on some pod, by share or in a run.
    fn confirmed(
        &self,
        pods: &[PodStats],
        failing: &[(PodId, &str, Sorted)],
        after_failed: u64,
    ) -> Finding {
        let which: Vec<String> = failing
            .iter()
            .take(4)
            .map(|(pod, checker, s)| {
                format!(
                    "{checker} on {}: {} failed{}",
                    pods::name(pods, *pod),
                    of(s.after_failed, s.after),
                    if s.never_passed { ", never passed" } else { "" }
                )
            })
            .collect();
        let mut f = Finding::new(
            2,
            Verdict::Confirmed,
            format!(
                "{} after start-up ({}): {}",
                plural(after_failed, "check failed", "checks failed"),
                which.join("; "),
                self.outcomes(false)
            ),
            RULE,
            FIX,
        );
        f.details.push(format!(
            "failing on {} of {} pods with checks",
            count(
                failing
                    .iter()
                    .map(|(p, _, _)| *p)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len() as u64
            ),
            count(
                self.series
                    .keys()
                    .map(|(p, _)| *p)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len() as u64
            )
        ));
        f.details.push(
            "a failing health check marks the backend unhealthy: the load balancer answers 502, never 400"
                .to_string(),
        );
        f
    }
}

/// Splits one checker's checks on one pod into start-up failures and the rest.
fn sort(checks: &[(Option<i64>, u16)], pod: &PodStats) -> Sorted {
    let mut checks: Vec<(Option<i64>, u16)> = checks.to_vec();
    checks.sort_by_key(|(t, _)| t.unwrap_or(i64::MAX));
    let draining_at = |t: i64| {
        let start = pod.start_before(t).unwrap_or(i64::MIN);
        pod.drains.iter().any(|d| *d <= t && *d >= start)
    };
    let mut s = Sorted::default();
    // Failures since the last start not yet followed by a pass: start-up if a pass comes.
    let mut pending = 0u64;
    let mut passed = false;
    let mut segment_start = None;
    let mut run = 0u32;
    for (t, status) in checks {
        if status == THEIA_DOWN {
            continue;
        }
        let ok = (200..400).contains(&status);
        // Theia answering 4xx is up and refusing the path: never a start-up state.
        let refused = (400..500).contains(&status);
        if let Some(t) = t {
            let start = pod.start_before(t);
            if start != segment_start {
                s.close_segment(pending, passed);
                segment_start = start;
                pending = 0;
                passed = false;
                run = 0;
            }
            if draining_at(t) {
                continue;
            }
        }
        if !passed && !refused {
            if ok {
                passed = true;
                s.startup_failed += pending;
                pending = 0;
                s.after += 1;
            } else {
                pending += 1;
            }
            continue;
        }
        s.after += 1;
        if ok {
            run = 0;
        } else {
            s.after_failed += 1;
            run += 1;
            s.longest_run = s.longest_run.max(run);
        }
    }
    s.close_segment(pending, passed);
    s
}

impl Sorted {
    /// Ends a pod start's segment: failures that no pass followed are not start-up.
    fn close_segment(&mut self, pending: u64, passed: bool) {
        if pending > 0 && !passed && pending < NEVER_PASSED {
            // The records end while theia may still be starting.
            self.startup_failed += pending;
        } else if pending > 0 && !passed {
            self.after += pending;
            self.after_failed += pending;
            self.never_passed = true;
            self.longest_run = self
                .longest_run
                .max(pending.min(u64::from(u32::MAX)) as u32);
        }
    }
}
