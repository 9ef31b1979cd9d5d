//! The figures of a run: their medians and spread over rounds, ratios to nginx, the
//! issue's targets, and the markdown and JSON renderings.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{Value, json};

/// One measured quantity.
pub struct Figure {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    /// Decimal places in the table.
    pub prec: usize,
    /// The target for sockproxy's ratio to nginx (at most this), if any.
    pub target: Option<f64>,
    /// False for counts and context, where a ratio to nginx means nothing.
    pub ratio: bool,
}

pub const FIGURES: &[Figure] = &[
    fig("rss_start_mib", "RSS after start", "MiB", 1, Some(0.5)),
    fig(
        "idle_rss_kib",
        "RSS per idle websocket tunnel",
        "KiB",
        1,
        Some(0.33),
    ),
    fig("poll_rps", "polling GET keep-alive", "req/s", 0, None),
    fig(
        "poll_cpu_us",
        "proxy CPU per polling request",
        "µs",
        1,
        Some(0.35),
    ),
    fig(
        "newconn_rps",
        "polling GET, new connection each",
        "req/s",
        0,
        None,
    ),
    fig(
        "newconn_cpu_us",
        "proxy CPU per new-connection request",
        "µs",
        1,
        None,
    ),
    fig("rtt_p50_us", "ws 32 B echo RTT p50", "µs", 1, Some(1.0)),
    fig("rtt_p90_us", "ws 32 B echo RTT p90", "µs", 1, None),
    fig("rtt_p99_us", "ws 32 B echo RTT p99", "µs", 1, Some(1.0)),
    fig("rtt_cpu_us", "proxy CPU per ws round trip", "µs", 1, None),
    fig(
        "ws_mbps",
        "ws 64 KiB frames × 4 conns (echoed payload)",
        "MB/s",
        0,
        None,
    ),
    fig(
        "ws_cpu_us_per_mb",
        "proxy CPU per MB of ws payload",
        "µs",
        0,
        Some(0.40),
    ),
    fig(
        "hs_rate",
        "ws handshakes (new connection each)",
        "/s",
        0,
        None,
    ),
    fig(
        "hs_cpu_us",
        "proxy CPU per ws handshake",
        "µs",
        1,
        Some(0.85),
    ),
    Figure {
        ratio: false,
        ..fig(
            "records_missing",
            "requests whose log line is missing",
            "",
            0,
            None,
        )
    },
    Figure {
        ratio: false,
        ..fig(
            "foreign_cpu_pct",
            "context: CPU used by other processes meanwhile",
            "% of 1 CPU",
            0,
            None,
        )
    },
];

const fn fig(
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    prec: usize,
    target: Option<f64>,
) -> Figure {
    Figure {
        key,
        label,
        unit,
        prec,
        target,
        ratio: true,
    }
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

    fn ratio(&self, contender: &str, key: &str) -> Option<f64> {
        let base = self.stat("nginx", key)?.median;
        let v = self.stat(contender, key)?.median;
        (base != 0.0).then(|| v / base)
    }

    /// The targets for sockproxy: (figure, target, ratio, met).
    pub fn targets(&self) -> Vec<(&'static Figure, f64, Option<f64>, bool)> {
        let mut out: Vec<_> = FIGURES
            .iter()
            .filter_map(|f| {
                let t = f.target?;
                let r = self.ratio("sockproxy", f.key);
                Some((f, t, r, r.is_some_and(|r| r <= t)))
            })
            .collect();
        let missing = FIGURES
            .iter()
            .find(|f| f.key == "records_missing")
            .expect("records_missing is a figure");
        let m = self.stat("sockproxy", missing.key).map(|s| s.max);
        out.push((missing, 0.0, m, m == Some(0.0)));
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
                let cell = match self.stat(c, f.key) {
                    None => "—".to_string(),
                    Some(s) => {
                        let mut cell = format!("{:.*}", f.prec, s.median);
                        if s.max != s.min {
                            let _ = write!(cell, " ±{:.0}%", s.spread_pct());
                        }
                        if c != "nginx"
                            && f.ratio
                            && let Some(r) = self.ratio(c, f.key)
                        {
                            let _ = write!(cell, " ({r:.2}×)");
                        }
                        cell
                    }
                };
                let _ = write!(md, " {cell} |");
            }
            md.push('\n');
        }
        if self.order.iter().any(|c| c == "sockproxy") && self.order.iter().any(|c| c == "nginx") {
            let _ = writeln!(
                md,
                "\n| target (sockproxy vs nginx, same run) | goal | measured | met |\n|---|---:|---:|:-:|"
            );
            for (f, t, r, met) in self.targets() {
                let (goal, got) = if f.key == "records_missing" {
                    (
                        "= 0".to_string(),
                        r.map_or("—".into(), |v| format!("{v:.0}")),
                    )
                } else {
                    (
                        format!("≤ {t:.2}×"),
                        r.map_or("—".into(), |v| format!("{v:.3}×")),
                    )
                };
                let _ = writeln!(
                    md,
                    "| {} | {goal} | {got} | {} |",
                    f.label,
                    if met { "yes" } else { "**no**" }
                );
            }
        }
        md
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
                            "ratio_to_nginx": if f.ratio { self.ratio(c, f.key) } else { None },
                            "rounds": rounds,
                        }),
                    );
                }
                json!({"key": f.key, "label": f.label, "unit": f.unit, "target_ratio": f.target, "contenders": per})
            })
            .collect();
        let targets: Vec<Value> = self
            .targets()
            .into_iter()
            .map(|(f, t, r, met)| json!({"key": f.key, "goal": t, "measured": r, "met": met}))
            .collect();
        json!({"meta": meta, "contenders": self.order, "figures": figures, "targets": targets})
    }
}
