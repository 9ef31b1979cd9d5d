//! The lifetime histogram: tunnel lifetimes (and cut long-polls) on a log scale, stacked by
//! who ended them, with H6's cluster (the front's cut-off) marked where the verdict found
//! one. Pure.

use std::fmt::Write;

use super::escape::Esc;
use super::scene::{LIFE_BINS, Scene, Series, bin_start_ms};
use crate::report::evidence::secs;
use crate::report::h6::{Cluster, GKE_DEFAULT_TIMEOUT_MS};
use crate::report::verdict::{Finding, count};

const LEFT: f64 = 56.0;
const PLOT_W: f64 = 1080.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 34.0;
const PLOT_H: f64 = 170.0;
const BOTTOM: f64 = 30.0;
/// Bins per decade, as the scene counts them.
const PER_DECADE: usize = 20;

/// Stacking order, bottom first: the front's signature (client-side ends) at the base.
const STACK: [Series; 5] = [
    Series::Client,
    Series::PollCut,
    Series::Upstream,
    Series::Other,
    Series::Shutdown,
];

/// Maps lifetimes (ms) to x, over whole decades.
#[derive(Clone, Copy)]
struct Scale {
    lo_decade: f64,
    hi_decade: f64,
}

impl Scale {
    fn x(self, ms: f64) -> f64 {
        let f = (ms.max(1.0).log10() - self.lo_decade) / (self.hi_decade - self.lo_decade);
        LEFT + f.clamp(0.0, 1.0) * PLOT_W
    }
}

/// `1 ms`, `100 ms`, `1 s`, `100 s`, `16.7 min`, `2.8 h`.
fn decade_label(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 1_000_000.0 {
        format!("{:.0} s", ms / 1000.0)
    } else if ms < 10_000_000.0 {
        format!("{:.1} min", ms / 60_000.0)
    } else {
        format!("{:.1} h", ms / 3_600_000.0)
    }
}

/// The histogram as an SVG element (or a note when there is nothing to draw).
pub fn svg(scene: &Scene, cluster: Option<&Cluster>, h6: &Finding, out: &mut String) {
    let used = |b: usize| {
        Series::ALL
            .iter()
            .any(|s| scene.lifetimes_of(*s).bins[b] > 0)
    };
    let (Some(lo), Some(hi)) = (
        (0..LIFE_BINS).find(|b| used(*b)),
        (0..LIFE_BINS).rfind(|b| used(*b)),
    ) else {
        out.push_str("<p class=\"note\">No tunnel or cut long-poll in these records.</p>\n");
        return;
    };
    let mut hi_decade = (hi / PER_DECADE + 1) as f64;
    if let Some(c) = cluster {
        hi_decade = hi_decade.max(c.hi_ms.log10().floor() + 1.0);
    }
    let scale = Scale {
        lo_decade: (lo / PER_DECADE) as f64,
        hi_decade,
    };
    let stacks: Vec<u64> = (0..LIFE_BINS)
        .map(|b| {
            Series::ALL
                .iter()
                .map(|s| u64::from(scene.lifetimes_of(*s).bins[b]))
                .sum()
        })
        .collect();
    let top = stacks.iter().copied().max().unwrap_or(1).max(1);
    let width = LEFT + PLOT_W + RIGHT;
    let height = TOP + PLOT_H + BOTTOM;
    let _ = writeln!(
        out,
        r#"<svg id="lifetimes" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="tunnel lifetimes, log scale">"#
    );
    axes(out, scale, top);
    for b in lo..=hi {
        bin(out, scene, scale, top, b);
    }
    if (scale.lo_decade..scale.hi_decade).contains(&GKE_DEFAULT_TIMEOUT_MS.log10()) {
        let x = scale.x(GKE_DEFAULT_TIMEOUT_MS);
        let _ = writeln!(
            out,
            r#"<line class="reference" x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{:.1}"/><text class="reference" x="{:.1}" y="{:.1}">GKE default 30 s</text>"#,
            TOP + PLOT_H,
            x + 4.0,
            TOP + 12.0
        );
    }
    if let Some(c) = cluster {
        cutoff(out, scale, c, h6);
    }
    out.push_str("</svg>\n");
}

fn axes(out: &mut String, scale: Scale, top: u64) {
    let base = TOP + PLOT_H;
    let _ = writeln!(
        out,
        r#"<g class="axis"><line x1="{LEFT}" x2="{:.1}" y1="{base}" y2="{base}"/>"#,
        LEFT + PLOT_W
    );
    let mut d = scale.lo_decade;
    while d <= scale.hi_decade {
        let ms = 10f64.powf(d);
        let x = scale.x(ms);
        let _ = writeln!(
            out,
            r#"<line class="grid" x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{base}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            base + 16.0,
            decade_label(ms)
        );
        d += 1.0;
    }
    for n in [top / 2, top] {
        if n == 0 {
            continue;
        }
        let y = base - PLOT_H * n as f64 / top as f64;
        let _ = writeln!(
            out,
            r#"<line class="grid" x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT + PLOT_W,
            LEFT - 6.0,
            y + 4.0,
            count(n)
        );
    }
    out.push_str("</g>\n");
}

fn bin(out: &mut String, scene: &Scene, scale: Scale, top: u64, b: usize) {
    let (from, to) = (bin_start_ms(b), bin_start_ms(b + 1));
    let (x0, x1) = (scale.x(from), scale.x(to));
    let mut y = TOP + PLOT_H;
    for series in STACK {
        let n = scene.lifetimes_of(series).bins[b];
        if n == 0 {
            continue;
        }
        let h = PLOT_H * f64::from(n) / top as f64;
        y -= h;
        let range = if b == 0 {
            format!("up to {}", secs(to))
        } else {
            format!("{} – {}", secs(from), secs(to))
        };
        let _ = writeln!(
            out,
            r#"<rect data-k="hbin" data-series="{}" data-n="{n}" class="hb s-{}" x="{:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}"><title>{} {}: {}</title></rect>"#,
            series.key(),
            series.key(),
            x0 + 0.5,
            (x1 - x0 - 1.0).max(1.0),
            count(u64::from(n)),
            Esc(series.words()),
            range
        );
    }
}

fn cutoff(out: &mut String, scale: Scale, c: &Cluster, h6: &Finding) {
    let (xl, xh) = (scale.x(c.lo_ms), scale.x(c.hi_ms));
    let text = format!(
        "cut-off ≈ {} · H6 {}: {} of {} lifetimes that reached it ended just under it",
        secs(c.hi_ms),
        h6.verdict.words(),
        count(c.n),
        count(c.n + c.above)
    );
    let anchor_right = xh > LEFT + PLOT_W * 0.6;
    let _ = writeln!(
        out,
        r#"<g data-k="cutoff" data-ms="{}" data-verdict="{}" class="cutoff"><title>{}</title><rect class="band" x="{:.1}" y="{TOP}" width="{:.1}" height="{PLOT_H}"/><line x1="{xh:.1}" x2="{xh:.1}" y1="{:.1}" y2="{:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="{}">{}</text></g>"#,
        c.hi_ms,
        h6.verdict.key(),
        Esc(&format!("{text}\n{}", h6.summary)),
        xl.min(xh - 1.0),
        (xh - xl).max(1.0),
        TOP - 14.0,
        TOP + PLOT_H,
        if anchor_right { xh - 4.0 } else { xh + 4.0 },
        TOP - 18.0,
        if anchor_right { "end" } else { "start" },
        Esc(&text)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        let cases = [
            (1.0, "1 ms"),
            (100.0, "100 ms"),
            (1000.0, "1 s"),
            (100_000.0, "100 s"),
            (1_000_000.0, "16.7 min"),
            (10_000_000.0, "2.8 h"),
            (100_000_000.0, "27.8 h"),
        ];
        for (ms, want) in cases {
            assert_eq!(decade_label(ms), want, "{ms}");
        }
    }

    #[test]
    fn scale_is_logarithmic() {
        let s = Scale {
            lo_decade: 0.0,
            hi_decade: 4.0,
        };
        let cases = [
            (1.0, LEFT),
            (100.0, LEFT + PLOT_W / 2.0),
            (10_000.0, LEFT + PLOT_W),
            (1e9, LEFT + PLOT_W),
        ];
        for (ms, want) in cases {
            assert!((s.x(ms) - want).abs() < 1e-9, "{ms}");
        }
    }
}
