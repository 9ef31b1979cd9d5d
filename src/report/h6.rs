//! H6, backend timeout too short: its state (lifetimes of tunnels and cut long-polls in
//! log-spaced bins), its fold over records and its rule. Pure.
//!
//! A load balancer's backend timeout (GKE's `timeoutSec`, 30 s by default) is a hard
//! lifetime limit for websockets: every tunnel that reaches it ends there, closed from the
//! client's side. So its signature is a pile of lifetimes just under one value T, few just
//! below the pile, and few that outlived T. Tab closes spread out; they make no pile.

use std::collections::HashMap;

use super::evidence::{Example, Examples, MAX_EXAMPLES, PodId, example, secs};
use super::parse::{ClosedBy, Rec};
use super::pods::{self, PodStats};
use super::sessions::Moved;
use super::verdict::{Finding, MAX_SHOWN, Verdict, count, earliest, of, plural};

pub const RULE: &str = "a cluster is at least 3 lifetimes (tunnels ended by the client or an error; long-polls cut by the client) in the band just under a value T (T·5 %, at least 0.5 s), more than twice (+3) the two band widths below it and the band width past T; confirmed when at least twice as many ended in the cluster as outlived T (+2 %); isolated when a cluster exists but more outlived it, if it is tight (within 2 % of T, ≥ 0.3 s), has ≥ 4 and ≥ 5 % of those that reached it; ruled out (up to the longest lifetime seen) when there is no cluster and at least 3 tunnels outlived GKE's default 30 s; tunnels theia closed (`closed_by: upstream`) and lifetimes that ended in their pod's drain window never count";
const FIX: &str = "raise the backend service's timeout above the longest session: BackendConfig `timeoutSec` (e.g. 86400) — for websockets it is a hard lifetime limit, and long-polls need more than pingInterval";

/// GKE's default backend-service timeout: tunnels that outlive it (with no cluster) rule
/// H6 out.
pub const GKE_DEFAULT_TIMEOUT_MS: f64 = 30_000.0;
/// Lifetimes kept with their pod and end time (past this, none is taken out for drains).
const MAX_ENDS: usize = 1_000_000;
/// Tunnels past the default needed to rule H6 out.
const MIN_OUTLIVED: u64 = 3;

/// Log-spaced bins of lifetimes from 1 s: each bin is 0.25 % wider than the last.
pub const BIN_RATIO: f64 = 1.0025;
pub const BINS: usize = 4900;
/// Shorter lifetimes say nothing about a load balancer's timeout (GKE's minimum is 1 s).
pub const MIN_LIFETIME_MS: f64 = 1000.0;

pub fn bin_of(ms: f64) -> usize {
    ((ms / 1000.0).ln() / BIN_RATIO.ln())
        .floor()
        .clamp(0.0, (BINS - 1) as f64) as usize
}

/// Lifetimes of tunnels that ended on their own and of long-polls cut by the client.
#[derive(Clone, Debug, Default)]
pub struct H6 {
    pub bins: Bins,
    pub examples: HashMap<u32, Examples>,
    pub longest_tunnel: Option<(f64, Example)>,
    /// Each lifetime's pod, end time and bin, to take out at the verdict those that ended
    /// in their pod's drain window (the shutdown ended them, not a timeout).
    ends: Vec<(PodId, i64, u32, bool)>,
}

impl H6 {
    /// A tunnel that ended (not by shutdown: H5 takes those).
    pub fn tunnel_closed(&mut self, r: &Rec<'_>, pod: PodId, ms: f64) {
        let by = r.closed_by;
        if matches!(by, ClosedBy::Client | ClosedBy::Upstream | ClosedBy::Error) {
            let text = format!("tunnel closed by {} after {}", by.name(), secs(ms));
            if self.longest_tunnel.as_ref().is_none_or(|(l, _)| ms > *l) {
                self.longest_tunnel = Some((ms, example(r, pod, text.clone())));
            }
            // A load balancer's timeout cuts from the client's side (a FIN, or a reset);
            // theia closing a tunnel (`upstream`) is theia's doing: a shutdown, a ping
            // timeout. Those lifetimes say nothing about the front's limit.
            if ms >= MIN_LIFETIME_MS && by != ClosedBy::Upstream {
                self.lifetime(ms, true, r, pod, text);
            }
        }
    }

    /// A long-poll the client (or a hop in front) gave up on.
    pub fn poll_cut(&mut self, r: &Rec<'_>, pod: PodId) {
        if let Some(ms) = r.duration_ms.filter(|ms| *ms >= MIN_LIFETIME_MS) {
            let text = format!("long-poll cut by the client after {}", secs(ms));
            self.lifetime(ms, false, r, pod, text);
        }
    }

    fn lifetime(&mut self, ms: f64, tunnel: bool, r: &Rec<'_>, pod: PodId, text: String) {
        let b = bin_of(ms);
        if tunnel {
            self.bins.tunnels[b] += 1;
        } else {
            self.bins.polls[b] += 1;
        }
        if let Some(t) = r.time
            && self.ends.len() < MAX_ENDS
        {
            self.ends.push((pod, t, b as u32, tunnel));
        }
        self.bins.min_ms[b] = self.bins.min_ms[b].min(ms as f32);
        self.bins.max_ms[b] = self.bins.max_ms[b].max(ms as f32);
        self.examples
            .entry(b as u32)
            .or_default()
            .offer(r.time, || example(r, pod, text));
    }

    /// The bins without the lifetimes that ended in their pod's drain window, and how many
    /// those were.
    fn without_drains(&self, pods: &[PodStats]) -> (Bins, u64) {
        let mut bins = self.bins.clone();
        let mut taken = 0;
        for (pod, t, b, tunnel) in &self.ends {
            if pods[*pod as usize].draining_at(*t) {
                let c = if *tunnel {
                    &mut bins.tunnels[*b as usize]
                } else {
                    &mut bins.polls[*b as usize]
                };
                *c = c.saturating_sub(1);
                taken += 1;
            }
        }
        (bins, taken)
    }

    /// The cluster the verdict judges (lifetimes in drain windows taken out), if any: what
    /// `report --html` marks as the cut-off.
    pub fn cluster(&self, pods: &[PodStats]) -> Option<Cluster> {
        find_cluster(&self.without_drains(pods).0)
    }

    pub fn verdict(&self, pods: &[PodStats], m: &Moved<'_>) -> Finding {
        let (bins, in_drains) = self.without_drains(pods);
        self.judge(&bins, pods, m, in_drains)
    }

    fn judge(&self, bins: &Bins, pods: &[PodStats], m: &Moved<'_>, in_drains: u64) -> Finding {
        let total: u64 = bins
            .tunnels
            .iter()
            .chain(bins.polls.iter())
            .map(|c| u64::from(*c))
            .sum();
        let longest = self.longest_tunnel.as_ref().map(|(ms, _)| *ms);
        let outlived_default = bins.tunnels_at_least(GKE_DEFAULT_TIMEOUT_MS);
        let cluster = find_cluster(bins);
        let mut f = if let Some(c) = cluster.as_ref() {
            self.clustered(c, total, pods, m)
        } else if outlived_default >= MIN_OUTLIVED {
            let mut f = Finding::new(
                5,
                Verdict::RuledOut,
                format!(
                    "{} outlived GKE's default 30 s, up to {}, and no lifetimes pile up under any value up to that ({} in all); a limit above {} is untested",
                    plural(outlived_default, "tunnel", "tunnels"),
                    secs(longest.unwrap_or(0.0)),
                    count(total),
                    secs(longest.unwrap_or(0.0))
                ),
                RULE,
                FIX,
            );
            if let Some((_, e)) = &self.longest_tunnel {
                f.examples = vec![e.clone()];
            }
            f
        } else if total > 0 {
            Finding::new(
                5,
                Verdict::NoEvidence,
                format!(
                    "{} of 1 s or more, no cluster{}",
                    plural(total, "lifetime", "lifetimes"),
                    longest.map_or(String::new(), |l| format!("; longest tunnel {}", secs(l)))
                ),
                RULE,
                FIX,
            )
        } else {
            Finding::new(
                5,
                Verdict::NoEvidence,
                "no tunnel or cut long-poll lasted 1 s or more".to_string(),
                RULE,
                FIX,
            )
        };
        if in_drains > 0 {
            f.details.push(format!(
                "{} ended while their pod drained: the shutdown ended them, not counted here",
                plural(in_drains, "lifetime", "lifetimes")
            ));
        }
        let tunnels: u64 = bins.tunnels.iter().map(|c| u64::from(*c)).sum();
        f.counts = vec![
            ("ended_in_drain_windows", in_drains),
            ("tunnel_lifetimes", tunnels),
            ("long_polls_cut", total - tunnels),
            ("tunnels_past_30s", outlived_default),
            ("cluster", cluster.as_ref().map_or(0, |c| c.n)),
            ("outlived_cluster", cluster.as_ref().map_or(0, |c| c.above)),
            (
                "sessions_refused_after_cut_poll",
                m.after_cut_poll.len() as u64,
            ),
        ];
        f
    }

    /// Lifetimes pile up under a value: confirmed when that value cuts them all.
    fn clustered(&self, c: &Cluster, total: u64, pods: &[PodStats], m: &Moved<'_>) -> Finding {
        let mut kinds = Vec::new();
        if c.tunnels > 0 {
            kinds.push(plural(c.tunnels, "tunnel", "tunnels"));
        }
        if c.polls > 0 {
            kinds.push(plural(c.polls, "long-poll cut", "long-polls cut"));
        }
        let reached = c.n + c.above;
        let head = format!(
            "{} lifetimes that reached {} ended just under ≈{} ({}–{}: {})",
            of(c.n, reached),
            secs(c.lo_ms.min(c.hi_ms - c.band_ms)),
            secs(c.hi_ms),
            secs(c.lo_ms),
            secs(c.hi_ms),
            kinds.join(", ")
        );
        let mut f = if c.cuts_all() {
            Finding::new(5, Verdict::Confirmed, head, RULE, FIX)
        } else {
            Finding::new(
                5,
                Verdict::Isolated,
                format!(
                    "{head}; {} outlived it: not a limit every session hits (one path's timeout, or chance)",
                    count(c.above)
                ),
                RULE,
                FIX,
            )
        };
        f.details.push(format!(
            "{} between {} and {}; {} longer than {}; {} lifetimes of 1 s or more in all",
            count(c.below),
            secs(c.hi_ms - 3.0 * c.band_ms),
            secs(c.lo_ms.min(c.hi_ms - c.band_ms)),
            count(c.above),
            secs(c.hi_ms),
            count(total)
        ));
        if !m.after_cut_poll.is_empty() {
            f.details.push(format!(
                "{} refused (Session ID unknown) on its own pod after its long-poll was cut",
                plural(m.after_cut_poll.len() as u64, "session", "sessions")
            ));
        }
        f.examples = self.cluster_examples(c, pods, m);
        f
    }

    /// The earliest lifetimes in the cluster, then sessions refused after a cut long-poll.
    fn cluster_examples(&self, c: &Cluster, pods: &[PodStats], m: &Moved<'_>) -> Vec<Example> {
        let mut ex = Vec::new();
        for b in c.first_bin..=c.last_bin {
            if let Some(e) = self.examples.get(&(b as u32)) {
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
                        pods::name(pods, s.pod),
                        s.cut_poll
                            .map_or(String::new(), |(_, d)| format!(" at {}", secs(d)))
                    ),
                }),
        );
        ex
    }
}

/// Counts of lifetimes per log-spaced bin, tunnels and cut long-polls apart, with the
/// shortest and longest lifetime seen in each bin.
#[derive(Clone, Debug)]
pub struct Bins {
    pub tunnels: Vec<u32>,
    pub polls: Vec<u32>,
    pub min_ms: Vec<f32>,
    pub max_ms: Vec<f32>,
}

impl Default for Bins {
    fn default() -> Bins {
        Bins {
            tunnels: vec![0; BINS],
            polls: vec![0; BINS],
            min_ms: vec![f32::INFINITY; BINS],
            max_ms: vec![0.0; BINS],
        }
    }
}

impl Bins {
    /// Tunnel lifetimes of at least `ms`.
    fn tunnels_at_least(&self, ms: f64) -> u64 {
        self.tunnels[bin_of(ms)..]
            .iter()
            .map(|c| u64::from(*c))
            .sum()
    }
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

impl Cluster {
    /// Worth naming though it does not cut all: at least 4, at least 5 % of the lifetimes
    /// that reached it, and tight, as a timeout makes them (all within 2 % of T, at least
    /// 0.3 s: the head start before the 101). Loose little piles come by chance.
    pub fn notable(&self) -> bool {
        self.cuts_all()
            || (self.n >= 4
                && self.n * 20 >= self.n + self.above
                && self.hi_ms - self.lo_ms <= (self.hi_ms * 0.02).max(300.0))
    }

    /// At least twice as many ended in the cluster as outlived it: a limit every session
    /// that gets that far hits.
    pub fn cuts_all(&self) -> bool {
        self.above * 2 <= self.n
    }
}

/// The band under a value T is T·5 %, but at least 0.5 s: a tunnel's lifetime starts at
/// the 101, after the load balancer's timer did, and that head start does not shrink with
/// T. Lifetimes more than T + 2 % (at least 0.1 s) count as longer.
const BAND_REL: f64 = 0.05;
const BAND_MIN_MS: f64 = 500.0;
const ABOVE_REL: f64 = 0.02;
const ABOVE_MIN_MS: f64 = 100.0;

/// The cluster of lifetimes that looks most like a fixed timeout T: at least 3 in the band
/// just under T, more than twice as many (+3) as in the two band widths below it and as
/// in the band width just past T. One
/// that cuts all (see [`Cluster::cuts_all`]) beats one that does not; then the larger.
pub fn find_cluster(h: &Bins) -> Option<Cluster> {
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
        if n < 3 {
            continue;
        }
        let below = sum(bin_of(t - 3.0 * band), first);
        let above_from = bin_of(t + (t * ABOVE_REL).max(ABOVE_MIN_MS)) + 1;
        let above = sum(above_from, BINS);
        // A pile stands out from both sides: the band just past T is as thin as below.
        let just_after = sum(above_from, bin_of(t + band) + 1);
        if n < 2 * below + 3 || n < 2 * just_after + 3 {
            continue;
        }
        let range = first..=top;
        let c = Cluster {
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
        };
        let better = match &best {
            None => true,
            Some(b) => (c.cuts_all(), c.notable(), c.n) > (b.cuts_all(), b.notable(), b.n),
        };
        if better {
            best = Some(c);
        }
    }
    best.filter(Cluster::notable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifetimes(tunnels: &[f64], polls: &[f64]) -> Bins {
        let mut h = Bins::default();
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
        // (name, tunnel lifetimes, long-polls cut, expected (n, tunnels, polls, cuts all))
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
        // The example: 4 of 50 tunnels cut at 60 s, the rest live long.
        let mut four_of_fifty = vec![59_700.0, 59_800.0, 59_900.0, 60_000.0];
        four_of_fifty.extend((0..46).map(|i| 300_000.0 + f64::from(i) * 97_000.0));
        type Case = (
            &'static str,
            Vec<f64>,
            Vec<f64>,
            Option<(u64, u64, u64, bool)>,
        );
        let cases: Vec<Case> = vec![
            (
                "e2e h6: 3 quiet tunnels and a poll at 3 s, one busy tunnel 20 s",
                vec![2962.667, 2942.537, 2957.296, 20231.326],
                vec![3000.228],
                Some((4, 3, 1, true)),
            ),
            (
                "e2e h6 on a busy machine: the tunnels' head start is 0.16 s",
                vec![2926.163, 2836.002, 2844.904, 20487.439],
                vec![3000.595],
                Some((4, 3, 1, true)),
            ),
            (
                "three at 30 s",
                vec![29_950.0, 29_990.0, 30_000.0],
                vec![],
                Some((3, 3, 0, true)),
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
                Some((40, 40, 0, true)),
            ),
            (
                "three, most outlive them: too few to name",
                vec![
                    3000.0, 3001.0, 3002.0, 50_000.0, 60_000.0, 70_000.0, 80_000.0, 90_000.0,
                    95_000.0, 99_000.0,
                ],
                vec![],
                None,
            ),
            (
                "4 of 50 at 60 s: a cluster, not a limit",
                four_of_fifty,
                vec![],
                Some((4, 4, 0, false)),
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
                Some((4, 4, 0, true)),
            ),
            ("nothing", vec![], vec![], None),
        ];
        for (name, t, p, want) in cases {
            let got =
                find_cluster(&lifetimes(&t, &p)).map(|c| (c.n, c.tunnels, c.polls, c.cuts_all()));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn bins() {
        let cases = [
            (1000.0, 0),
            (999.0, 0),
            (1002.6, 1),
            (2943.0, 432),
            (3000.0, 439),
            (1e12, BINS - 1),
        ];
        for (ms, want) in cases {
            assert_eq!(bin_of(ms), want, "{ms}");
        }
    }
}
