//! The figures of a run: their medians and spread over rounds, ratios to the best peer
//! (nginx or haproxy), the targets, and the markdown and JSON renderings.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{Value, json};

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    /// Rates: the best peer is the faster one.
    Higher,
}

/// Whom a target compares sockproxy with (always medians of the same run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// The better of nginx and haproxy on this figure.
    Best,
    /// nginx alone (the memory-after-a-burst goal).
    Nginx,
}

/// The target for sockproxy's ratio to a peer: at most `at_most`.
#[derive(Debug, Clone, Copy)]
pub struct Goal {
    pub at_most: f64,
    pub vs: Peer,
}

/// One measured quantity.
pub struct Figure {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    /// Decimal places in the table.
    pub prec: usize,
    pub better: Better,
    pub target: Option<Goal>,
    /// False for counts and context, where a ratio means nothing.
    pub ratio: bool,
}

/// The contenders a target compares with: the production-grade proxies.
pub const PEERS: [&str; 2] = ["nginx", "haproxy"];

pub const FIGURES: &[Figure] = &[
    lower("rss_start_mib", "RSS after start", "MiB", 1).goal(1.0),
    lower("idle_rss_kib", "RSS per idle websocket tunnel", "KiB", 1).goal(1.0),
    lower(
        "burst_rss_mib",
        "RSS after the idle tunnels closed",
        "MiB",
        1,
    )
    .goal_vs(1.0, Peer::Nginx),
    higher("poll_rps", "polling GET keep-alive", "req/s", 0),
    lower("poll_cpu_us", "proxy CPU per polling request", "µs", 1).goal(0.8),
    higher(
        "newconn_rps",
        "polling GET, new connection each",
        "req/s",
        0,
    ),
    lower(
        "newconn_cpu_us",
        "proxy CPU per new-connection request",
        "µs",
        1,
    )
    .goal(0.8),
    lower(
        "newconn_p50_ms",
        "new-connection request latency p50",
        "ms",
        2,
    ),
    lower(
        "newconn_p99_ms",
        "new-connection request latency p99",
        "ms",
        2,
    )
    .goal(1.2),
    lower("rtt_p50_us", "ws 32 B echo RTT p50", "µs", 1).goal(1.0),
    lower("rtt_p90_us", "ws 32 B echo RTT p90", "µs", 1),
    lower("rtt_p99_us", "ws 32 B echo RTT p99", "µs", 1),
    lower("rtt_cpu_us", "proxy CPU per ws round trip", "µs", 1).goal(0.8),
    higher(
        "ws_mbps",
        "ws 64 KiB frames × 4 conns (echoed payload)",
        "MB/s",
        0,
    ),
    lower(
        "ws_cpu_us_per_mb",
        "proxy CPU per MB of ws payload",
        "µs",
        0,
    )
    .goal(1.0),
    higher("hs_rate", "ws handshakes (new connection each)", "/s", 0),
    lower("hs_cpu_us", "proxy CPU per ws handshake", "µs", 1).goal(0.8),
    lower("log_bytes_poll", "log bytes per polling request", "B", 0),
    Figure {
        ratio: false,
        ..lower(
            "records_missing",
            "requests whose log line is missing",
            "",
            0,
        )
    },
    Figure {
        ratio: false,
        ..lower(
            "foreign_cpu_pct",
            "context: CPU used by other processes meanwhile",
            "% of 1 CPU",
            0,
        )
    },
];

const fn lower(key: &'static str, label: &'static str, unit: &'static str, prec: usize) -> Figure {
    Figure {
        key,
        label,
        unit,
        prec,
        better: Better::Lower,
        target: None,
        ratio: true,
    }
}

const fn higher(key: &'static str, label: &'static str, unit: &'static str, prec: usize) -> Figure {
    Figure {
        better: Better::Higher,
        ..lower(key, label, unit, prec)
    }
}

impl Figure {
    const fn goal(self, at_most: f64) -> Figure {
        self.goal_vs(at_most, Peer::Best)
    }

    const fn goal_vs(self, at_most: f64, vs: Peer) -> Figure {
        Figure {
            target: Some(Goal { at_most, vs }),
            ..self
        }
    }
}

/// One target's verdict: sockproxy's ratio of medians to the peer's, the range of its
/// per-round ratios, and whether the goal is met.
pub struct Verdict {
    pub figure: &'static Figure,
    pub goal: Goal,
    /// The peer compared with (for [`Peer::Best`], the better one on this figure).
    pub peer: Option<String>,
    pub ratio: Option<f64>,
    /// (lowest, highest) per-round ratio: the spread a reader weighs the verdict with.
    pub range: Option<(f64, f64)>,
    pub met: bool,
}

/// Every round's value of every figure, per contender (absent: not applicable).
#[derive(Default)]
pub struct Results {
    /// contender → figure → one value per round.
    pub values: BTreeMap<String, BTreeMap<&'static str, Vec<f64>>>,
    /// Contenders in table order.
    pub order: Vec<String>,
}

/// Median and range of one figure's rounds.
#[derive(Clone, Copy)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    fn of(v: &[f64]) -> Option<Stat> {
        let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        if s.is_empty() {
            return None;
        }
        s.sort_by(f64::total_cmp);
        let mid = s.len() / 2;
        let median = if s.len() % 2 == 1 {
            s[mid]
        } else {
            (s[mid - 1] + s[mid]) / 2.0
        };
        Some(Stat {
            median,
            min: s[0],
            max: s[s.len() - 1],
        })
    }

    /// Half the range as a percentage of the median.
    pub fn spread_pct(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / 2.0 / self.median.abs() * 100.0
        }
    }
}

impl Results {
    pub fn push(&mut self, contender: &str, key: &'static str, value: f64) {
        if !self.order.iter().any(|c| c == contender) {
            self.order.push(contender.to_string());
        }
        self.values
            .entry(contender.to_string())
            .or_default()
            .entry(key)
            .or_default()
            .push(value);
    }

    pub fn stat(&self, contender: &str, key: &str) -> Option<Stat> {
        Stat::of(self.values.get(contender)?.get(key)?)
    }

    /// The peer a figure compares with: nginx, or the better of the peers that have it.
    fn peer(&self, f: &Figure, vs: Peer) -> Option<&'static str> {
        let candidates: &[&'static str] = match vs {
            Peer::Nginx => &PEERS[..1],
            Peer::Best => &PEERS,
        };
        let have: Vec<(&'static str, f64)> = candidates
            .iter()
            .filter_map(|p| Some((*p, self.stat(p, f.key)?.median)))
            .collect();
        let best = match f.better {
            Better::Lower => have.iter().min_by(|a, b| a.1.total_cmp(&b.1)),
            Better::Higher => have.iter().max_by(|a, b| a.1.total_cmp(&b.1)),
        };
        best.map(|(p, _)| *p)
    }

    /// `contender`'s median over `peer`'s median.
    fn ratio_to(&self, contender: &str, peer: &str, key: &str) -> Option<f64> {
        let base = self.stat(peer, key)?.median;
        let v = self.stat(contender, key)?.median;
        (base != 0.0).then(|| v / base)
    }

    /// The ratio shown in the table: to the best peer on this figure.
    fn ratio(&self, contender: &str, f: &Figure) -> Option<f64> {
        self.ratio_to(contender, self.peer(f, Peer::Best)?, f.key)
    }

    /// The lowest and highest ratio of one round's value to the peer's in the same round
    /// (rounds interleave the contenders, so a round's pair shares the machine's state);
    /// when a round is missing on either side, the widest pairing of the extremes.
    fn ratio_range(&self, contender: &str, peer: &str, key: &str) -> Option<(f64, f64)> {
        let a = self.values.get(contender)?.get(key)?;
        let b = self.values.get(peer)?.get(key)?;
        if a.len() == b.len() && b.iter().all(|v| *v != 0.0) {
            let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
            let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            return Some((lo, hi));
        }
        let (sa, sb) = (Stat::of(a)?, Stat::of(b)?);
        (sb.min > 0.0).then(|| (sa.min / sb.max, sa.max / sb.min))
    }

    /// The targets for sockproxy, then the records that must all be there.
    pub fn targets(&self) -> Vec<Verdict> {
        let mut out: Vec<Verdict> = FIGURES
            .iter()
            .filter_map(|f| {
                let goal = f.target?;
                let peer = self.peer(f, goal.vs);
                let ratio = peer.and_then(|p| self.ratio_to("sockproxy", p, f.key));
                Some(Verdict {
                    figure: f,
                    goal,
                    peer: peer.map(String::from),
                    ratio,
                    range: peer.and_then(|p| self.ratio_range("sockproxy", p, f.key)),
                    met: ratio.is_some_and(|r| r <= goal.at_most),
                })
            })
            .collect();
        let missing = FIGURES
            .iter()
            .find(|f| f.key == "records_missing")
            .expect("records_missing is a figure");
        let m = self.stat("sockproxy", missing.key).map(|s| s.max);
        out.push(Verdict {
            figure: missing,
            goal: Goal {
                at_most: 0.0,
                vs: Peer::Best,
            },
            peer: None,
            ratio: m,
            range: None,
            met: m == Some(0.0),
        });
        out
    }

    pub fn markdown(&self, header: &str) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "{header}\n");
        let _ = write!(md, "| figure | unit |");
        for c in &self.order {
            let _ = write!(md, " {c} |");
        }
        let _ = write!(md, "\n|---|---|");
        for _ in &self.order {
            let _ = write!(md, "---:|");
        }
        md.push('\n');
        for f in FIGURES {
            let _ = write!(md, "| {} | {} |", f.label, f.unit);
            for c in &self.order {
                let _ = write!(md, " {} |", self.cell(c, f));
            }
            md.push('\n');
        }
        if self.order.iter().any(|c| c == "sockproxy")
            && PEERS.iter().any(|p| self.order.iter().any(|c| c == p))
        {
            self.targets_markdown(&mut md);
        }
        md
    }

    /// Median, ± half the range over rounds, (ratio to the best peer).
    fn cell(&self, c: &str, f: &Figure) -> String {
        let Some(s) = self.stat(c, f.key) else {
            return "—".to_string();
        };
        let mut cell = format!("{:.*}", f.prec, s.median);
        if s.max != s.min {
            let _ = write!(cell, " ±{:.0}%", s.spread_pct());
        }
        let is_best_peer = self.peer(f, Peer::Best) == Some(c);
        if f.ratio
            && !is_best_peer
            && let Some(r) = self.ratio(c, f)
        {
            let _ = write!(cell, " ({r:.2}×)");
        }
        cell
    }

    fn targets_markdown(&self, md: &mut String) {
        let _ = writeln!(
            md,
            "\n| target (sockproxy ÷ peer, medians of the same run) | peer | goal | measured | per-round range | met | to go |\n|---|---|---:|---:|---:|:-:|---:|"
        );
        for v in self.targets() {
            let f = v.figure;
            let peer = v.peer.as_deref().unwrap_or("—");
            let (goal, got) = if f.key == "records_missing" {
                (
                    "= 0".to_string(),
                    v.ratio.map_or("—".into(), |r| format!("{r:.0}")),
                )
            } else {
                (
                    format!("≤ {:.2}×", v.goal.at_most),
                    v.ratio.map_or("—".into(), |r| format!("{r:.2}×")),
                )
            };
            let range = v
                .range
                .map_or("—".into(), |(lo, hi)| format!("{lo:.2}–{hi:.2}×"));
            // How much sockproxy's figure must shrink to meet the goal.
            let to_go = match v.ratio {
                Some(r) if !v.met && f.key != "records_missing" && r > 0.0 => {
                    format!("−{:.0}%", (1.0 - v.goal.at_most / r) * 100.0)
                }
                _ => String::new(),
            };
            let _ = writeln!(
                md,
                "| {} | {peer} | {goal} | {got} | {range} | {} | {to_go} |",
                f.label,
                if v.met { "met" } else { "**missed**" }
            );
        }
    }

    pub fn json(&self, meta: Value) -> Value {
        let figures: Vec<Value> = FIGURES
            .iter()
            .map(|f| {
                let mut per = serde_json::Map::new();
                for c in &self.order {
                    let rounds = self
                        .values
                        .get(c)
                        .and_then(|m| m.get(f.key))
                        .cloned()
                        .unwrap_or_default();
                    let stat = self.stat(c, f.key);
                    per.insert(
                        c.clone(),
                        json!({
                            "median": stat.map(|s| s.median),
                            "min": stat.map(|s| s.min),
                            "max": stat.map(|s| s.max),
                            "spread_pct": stat.map(|s| s.spread_pct()),
                            "ratio_to_best_peer": if f.ratio { self.ratio(c, f) } else { None },
                            "rounds": rounds,
                        }),
                    );
                }
                json!({
                    "key": f.key,
                    "label": f.label,
                    "unit": f.unit,
                    "best_peer": self.peer(f, Peer::Best),
                    "target_ratio": f.target.map(|g| g.at_most),
                    "target_vs": f.target.map(|g| format!("{:?}", g.vs)),
                    "contenders": per,
                })
            })
            .collect();
        let targets: Vec<Value> = self
            .targets()
            .into_iter()
            .map(|v| {
                json!({
                    "key": v.figure.key,
                    "goal": v.goal.at_most,
                    "peer": v.peer,
                    "measured": v.ratio,
                    "range": v.range.map(|(lo, hi)| [lo, hi]),
                    "met": v.met,
                })
            })
            .collect();
        json!({"meta": meta, "contenders": self.order, "figures": figures, "targets": targets})
    }
}
