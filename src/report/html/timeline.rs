//! The timeline drawing: pods as lanes, sampled sessions as bars coloured by how they
//! ended, a mark per refused request (with a line back to the session's own pod when it
//! moved), each pod's starts, drains and stops, and its health checks. Pure.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use super::escape::{Esc, clip};
use super::scene::{Lane, Life, Mark, MarkKind, Scene, Session};
use crate::report::evidence::secs;
use crate::report::parse::format_time;

/// Lanes drawn (the pods with the most records; the rest are named in a note).
pub const MAX_DRAWN_LANES: usize = 24;
/// Refusal marks drawn one by one; past this they are drawn per few pixels, with counts.
pub const MAX_DRAWN_MARKS: usize = 2000;
/// Lines from a refusal back to its session's own pod.
const MAX_LINKS: usize = 1000;
/// Height of all lanes' bars together (px): a lane gets its share, between the two below.
const BARS_H: f64 = 1000.0;
const LANE_MIN_H: f64 = 28.0;
const LANE_MAX_H: f64 = 120.0;
/// Rows are this thin at least; when a lane needs more rows, bars share the least busy one.
const ROW_MIN_H: f64 = 2.0;
const ROW_MAX_H: f64 = 8.0;

pub const LEFT: f64 = 170.0;
pub const PLOT_W: f64 = 1080.0;
const RIGHT: f64 = 16.0;
const AXIS_H: f64 = 26.0;
const MARK_H: f64 = 12.0;
const HEALTH_H: f64 = 5.0;
const LANE_GAP: f64 = 10.0;
/// Health checks are summed over columns this wide (px).
const HEALTH_COL: f64 = 2.0;
/// Refusals are summed over columns this wide (px) when too many to draw one by one.
const MARK_COL: f64 = 4.0;

/// Maps times (µs) to x.
#[derive(Clone, Copy)]
pub struct Axis {
    pub t0: i64,
    pub t1: i64,
}

impl Axis {
    pub fn x(self, t: i64) -> f64 {
        let span = (self.t1 - self.t0).max(1) as f64;
        LEFT + ((t - self.t0) as f64 / span).clamp(0.0, 1.0) * PLOT_W
    }

    /// Nice tick times: at most about ten.
    fn ticks(self) -> Vec<i64> {
        const STEPS_S: [f64; 22] = [
            0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0,
            1800.0, 3600.0, 7200.0, 10_800.0, 21_600.0, 43_200.0, 86_400.0, 604_800.0,
        ];
        let span_s = (self.t1 - self.t0) as f64 / 1e6;
        let step_s = STEPS_S
            .iter()
            .copied()
            .find(|s| span_s / s <= 10.0)
            .unwrap_or(span_s / 10.0)
            .max(0.1);
        let step = (step_s * 1e6) as i64;
        let first = self.t0.div_euclid(step) * step + step;
        (0..12)
            .map(|i| first + i * step)
            .filter(|t| *t <= self.t1)
            .collect()
    }

    fn label(self, t: i64) -> String {
        let full = format_time(t);
        let one_day = self.t0.div_euclid(86_400_000_000) == self.t1.div_euclid(86_400_000_000);
        let short_span = self.t1 - self.t0 < 20_000_000;
        match (one_day, short_span) {
            (true, true) => full[11..21].to_string(),
            (true, false) => full[11..19].to_string(),
            (false, _) => full[5..16].replace('T', " "),
        }
    }
}

/// One lane's geometry.
struct LaneBox {
    lane: Lane,
    top: f64,
    rows: usize,
    row_h: f64,
}

/// Bars of one lane packed into at most `max_rows` rows: (session index, row); and the row
/// count.
fn pack(bars: &mut [(f64, f64, usize)], max_rows: usize) -> (Vec<(usize, usize)>, usize) {
    bars.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut row_ends: Vec<f64> = Vec::new();
    let mut placed = Vec::with_capacity(bars.len());
    for (x0, x1, i) in bars.iter() {
        let row = match row_ends.iter().position(|end| *end + 1.0 <= *x0) {
            Some(r) => r,
            None if row_ends.len() < max_rows.max(1) => {
                row_ends.push(f64::MIN);
                row_ends.len() - 1
            }
            None => row_ends
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(r, _)| r),
        };
        row_ends[row] = row_ends[row].max(*x1);
        placed.push((*i, row));
    }
    (placed, row_ends.len())
}

/// The lanes to draw: the busiest pods, in the order they first appear.
pub fn drawn_lanes(scene: &Scene) -> Vec<Lane> {
    let mut lanes: Vec<Lane> = (0..scene.lanes.len() as Lane).collect();
    lanes.sort_by_key(|l| std::cmp::Reverse(scene.lanes[*l as usize].records));
    lanes.truncate(MAX_DRAWN_LANES);
    lanes.sort_by_key(|l| {
        let info = &scene.lanes[*l as usize];
        (info.first.unwrap_or(i64::MAX), info.name.clone())
    });
    lanes
}

/// The timeline as an SVG element, and how many session bars it holds.
pub fn svg(scene: &Scene, out: &mut String) -> usize {
    let (Some(t0), Some(t1)) = (scene.first, scene.last) else {
        out.push_str("<p class=\"note\">No record carries a time: nothing to draw.</p>\n");
        return 0;
    };
    let axis = Axis {
        t0,
        t1: t1.max(t0 + 1),
    };
    let lanes = drawn_lanes(scene);
    let sessions: Vec<&Session> = {
        let mut v: Vec<&Session> = scene.sessions.values().collect();
        v.sort_by_key(|s| (s.home().map_or(i64::MAX, |h| h.start), s.hash));
        v
    };
    let (boxes, placed) = layout(&lanes, &sessions, axis);
    let height = boxes.last().map_or(AXIS_H, lane_bottom) + 6.0;
    let width = LEFT + PLOT_W + RIGHT;
    let _ = writeln!(
        out,
        r#"<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0}" viewBox="0 0 {width} {height:.0}" data-t0="{}" data-t1="{}" role="img" aria-label="timeline: pods as lanes, sessions as bars">"#,
        axis.t0 / 1000,
        axis.t1 / 1000
    );
    ticks(out, axis, height);
    let lane_top: HashMap<Lane, (f64, f64, f64)> = boxes
        .iter()
        .map(|b| (b.lane, (b.top, b.row_h, lane_bottom(b))))
        .collect();
    for b in &boxes {
        lane_frame(out, scene, b);
    }
    lifecycle(out, scene, axis, &lane_top);
    health(out, scene, axis, &lane_top);
    let mut bar_y: HashMap<u64, (f64, f64)> = HashMap::new();
    for (i, lane, row) in &placed {
        let s = sessions[*i];
        let (top, row_h, _) = lane_top[lane];
        let y = top + MARK_H + *row as f64 * row_h;
        bar(out, scene, s, axis, y, row_h);
        bar_y.insert(
            s.hash,
            (y + row_h / 2.0, axis.x(s.home().map_or(t0, |h| h.end))),
        );
    }
    marks(out, scene, axis, &lane_top, &bar_y);
    out.push_str("</svg>\n");
    placed.len()
}

fn lane_bottom(b: &LaneBox) -> f64 {
    b.top + MARK_H + b.rows as f64 * b.row_h + HEALTH_H
}

/// Packs each drawn lane's bars; returns the lanes' boxes and (session, lane, row).
fn layout(
    lanes: &[Lane],
    sessions: &[&Session],
    axis: Axis,
) -> (Vec<LaneBox>, Vec<(usize, Lane, usize)>) {
    let mut per_lane: HashMap<Lane, Vec<(f64, f64, usize)>> = HashMap::new();
    for (i, s) in sessions.iter().enumerate() {
        if let Some(h) = s.home() {
            per_lane
                .entry(h.lane)
                .or_default()
                .push((axis.x(h.start), axis.x(h.end), i));
        }
    }
    let lane_h = (BARS_H / lanes.len().max(1) as f64).clamp(LANE_MIN_H, LANE_MAX_H);
    let max_rows = (lane_h / ROW_MIN_H) as usize;
    let mut top = AXIS_H;
    let mut boxes = Vec::new();
    let mut placed = Vec::new();
    for lane in lanes {
        let mut bars = per_lane.remove(lane).unwrap_or_default();
        let (rows_of, rows) = pack(&mut bars, max_rows);
        let rows = rows.max(1);
        let row_h = (lane_h / rows as f64).clamp(ROW_MIN_H, ROW_MAX_H);
        placed.extend(rows_of.into_iter().map(|(i, r)| (i, *lane, r)));
        let b = LaneBox {
            lane: *lane,
            top,
            rows,
            row_h,
        };
        top = lane_bottom(&b) + LANE_GAP;
        boxes.push(b);
    }
    (boxes, placed)
}

fn ticks(out: &mut String, axis: Axis, height: f64) {
    let _ = writeln!(
        out,
        r#"<g class="axis"><text x="{:.1}" y="14" text-anchor="end">UTC</text>"#,
        LEFT - 8.0
    );
    for t in axis.ticks() {
        let x = axis.x(t);
        let _ = writeln!(
            out,
            r#"<line x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{height:.0}" class="grid"/><text x="{x:.1}" y="14" text-anchor="middle">{}</text>"#,
            AXIS_H - 6.0,
            axis.label(t)
        );
    }
    out.push_str("</g>\n");
}

fn lane_frame(out: &mut String, scene: &Scene, b: &LaneBox) {
    let info = &scene.lanes[b.lane as usize];
    let bottom = lane_bottom(b);
    let _ = writeln!(
        out,
        r#"<g data-k="lane" data-pod="{}"><title>{}: {} records</title><rect x="0" y="{:.1}" width="{}" height="{:.1}" class="lane"/><text x="6" y="{:.1}" class="lane-name">{}</text></g>"#,
        Esc(&info.name),
        Esc(&info.name),
        info.records,
        b.top - 3.0,
        LEFT + PLOT_W + RIGHT,
        bottom - b.top + 6.0,
        (b.top + bottom) / 2.0 + 4.0,
        Esc(&clip(&info.name, 24)),
    );
}

fn bar(out: &mut String, scene: &Scene, s: &Session, axis: Axis, y: f64, row_h: f64) {
    let Some(home) = s.home() else {
        return;
    };
    let x0 = axis.x(home.start);
    let w = (axis.x(home.end) - x0).max(1.5);
    let fate = s.fate();
    let mut tip = format!(
        "sid {}\npod {}\n{} → {} ({})\n{}; {} request{}",
        s.sid,
        scene.lanes[home.lane as usize].name,
        format_time(home.start),
        format_time(home.end),
        secs((home.end - home.start) as f64 / 1000.0),
        fate.words(),
        s.requests,
        if s.requests == 1 { "" } else { "s" }
    );
    if s.upgraded {
        let _ = write!(
            tip,
            "\ntunnel{}",
            s.longest_tunnel_ms
                .map_or(" open at the end".to_string(), |ms| format!(
                    " {} (ended by {})",
                    secs(ms),
                    s.ended_by().join(", ")
                ))
        );
    }
    for sp in s.spans.iter().filter(|sp| sp.lane != home.lane) {
        let _ = write!(
            tip,
            "\nalso on {}: {} record{} at {}",
            scene.lanes[sp.lane as usize].name,
            sp.records,
            if sp.records == 1 { "" } else { "s" },
            format_time(sp.start)
        );
    }
    if let Some(c) = &s.client {
        let _ = write!(tip, "\nclient {c}");
    }
    if let Some((_, id)) = &s.first_id {
        let _ = write!(tip, "\nfirst record id {id}");
    }
    let _ = writeln!(
        out,
        r#"<rect data-k="bar" data-sid="{}" data-fate="{}" class="bar f-{}" x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{:.1}"><title>{}</title></rect>"#,
        Esc(&s.sid),
        fate.key(),
        fate.key(),
        (row_h - 1.0).max(1.0),
        Esc(&tip)
    );
}

fn lifecycle(out: &mut String, scene: &Scene, axis: Axis, lanes: &HashMap<Lane, (f64, f64, f64)>) {
    for (lane, t, what) in &scene.lifecycle {
        let Some((top, _, bottom)) = lanes.get(lane) else {
            continue;
        };
        let x = axis.x(*t);
        let name = &scene.lanes[*lane as usize].name;
        let (k, text) = match what {
            Life::Start => (
                "start",
                format!("{name} started (listening) at {}", format_time(*t)),
            ),
            Life::Drain { deadline } => {
                if let Some(d) = deadline {
                    let end = stop_after(scene, *lane, *t).map_or(*d, |s| s.min(*d));
                    let _ = writeln!(
                        out,
                        r#"<rect class="drainwin" x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}"/>"#,
                        top - 3.0,
                        (axis.x(end) - x).max(1.0),
                        bottom - top + 6.0
                    );
                }
                let until =
                    deadline.map_or(String::new(), |d| format!(", deadline {}", format_time(d)));
                (
                    "drain",
                    format!("{name} draining (SIGTERM) at {}{until}", format_time(*t)),
                )
            }
            Life::Stop { drained, cut } => {
                let how = match (drained, cut) {
                    (Some(false), Some(n)) => format!(": drain cut short, {n} tunnels cut"),
                    (Some(false), None) => ": drain cut short".to_string(),
                    (Some(true), _) => ": drained".to_string(),
                    (None, _) => String::new(),
                };
                (
                    "stop",
                    format!("{name} stopped at {}{how}", format_time(*t)),
                )
            }
        };
        let _ = writeln!(
            out,
            r#"<g data-k="{k}" class="life {k}"><title>{}</title><line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}"/><rect x="{:.1}" y="{:.1}" width="6" height="6" transform="rotate(45 {x:.1} {:.1})"/></g>"#,
            Esc(&text),
            top - 3.0,
            bottom + 3.0,
            x - 3.0,
            top - 3.0,
            top
        );
    }
}

/// The first stop of `lane` after `t`.
fn stop_after(scene: &Scene, lane: Lane, t: i64) -> Option<i64> {
    scene
        .lifecycle
        .iter()
        .filter(|(l, at, w)| *l == lane && *at >= t && matches!(w, Life::Stop { .. }))
        .map(|(_, at, _)| *at)
        .min()
}

fn health(out: &mut String, scene: &Scene, axis: Axis, lanes: &HashMap<Lane, (f64, f64, f64)>) {
    let mut cols: HashMap<Lane, BTreeMap<i64, [u32; 2]>> = HashMap::new();
    for ((lane, sec), n) in &scene.health {
        if lanes.contains_key(lane) {
            let col = ((axis.x(sec * 1_000_000) - LEFT) / HEALTH_COL) as i64;
            let c = cols.entry(*lane).or_default().entry(col).or_default();
            c[0] += n[0];
            c[1] += n[1];
        }
    }
    let col_time = |col: i64| {
        axis.t0 + ((col as f64 * HEALTH_COL / PLOT_W) * (axis.t1 - axis.t0) as f64) as i64
    };
    for (lane, cols) in cols {
        let (_, _, bottom) = lanes[&lane];
        // Runs of neighbouring columns with the same state, one element each.
        let mut runs: Vec<(i64, i64, [u32; 2])> = Vec::new();
        for (col, n) in cols {
            let failing = n[1] > 0;
            match runs.last_mut() {
                Some((_, last, sum)) if *last + 1 == col && (sum[1] > 0) == failing => {
                    *last = col;
                    sum[0] += n[0];
                    sum[1] += n[1];
                }
                _ => runs.push((col, col, n)),
            }
        }
        for (from, to, n) in runs {
            let state = if n[1] > 0 { "fail" } else { "ok" };
            let _ = writeln!(
                out,
                r#"<rect data-k="health" data-ok="{}" data-fail="{}" class="hc hc-{state}" x="{:.1}" y="{:.1}" width="{:.1}" height="{}"><title>health checks {} – {}: {} passed, {} failed</title></rect>"#,
                n[0],
                n[1],
                LEFT + from as f64 * HEALTH_COL,
                bottom - HEALTH_H,
                (to - from + 1) as f64 * HEALTH_COL,
                HEALTH_H - 1.0,
                format_time(col_time(from)),
                format_time(col_time(to + 1)),
                n[0],
                n[1]
            );
        }
    }
}

fn marks(
    out: &mut String,
    scene: &Scene,
    axis: Axis,
    lanes: &HashMap<Lane, (f64, f64, f64)>,
    bar_y: &HashMap<u64, (f64, f64)>,
) {
    let drawn: Vec<&Mark> = scene
        .marks
        .iter()
        .filter(|m| lanes.contains_key(&m.lane))
        .collect();
    if drawn.len() > MAX_DRAWN_MARKS {
        return grouped_marks(out, scene, axis, lanes, &drawn);
    }
    let mut links = 0;
    for m in drawn {
        let (top, _, _) = lanes[&m.lane];
        let (x, y) = (axis.x(m.time), top + 2.0);
        let home = m.sid_hash.and_then(|h| bar_y.get(&h));
        if let Some((by, bx)) = home
            && links < MAX_LINKS
            && (by - y).abs() > MARK_H
        {
            links += 1;
            let _ = writeln!(
                out,
                r#"<path class="link" d="M{:.1} {by:.1} L{x:.1} {:.1}"/>"#,
                bx.min(x),
                y + 4.0
            );
        }
        let mut tip = format!(
            "{}\npod {}\n{}\nstatus {}",
            m.kind.words(),
            scene.lanes[m.lane as usize].name,
            format_time(m.time),
            m.status
        );
        if let Some(c) = m.code {
            let _ = write!(tip, " (engine.io code {c})");
        }
        if let Some(h) = m.sid_hash
            && let Some(s) = scene.sessions.get(&h)
        {
            let _ = write!(tip, "\nsid {}", s.sid);
        }
        if let Some(id) = &m.id {
            let _ = write!(tip, "\nid {id}");
        }
        mark_shape(out, m.kind, x, y, 1, &tip);
    }
}

/// Too many refusals to draw one by one: one mark per few pixels, lane and kind, with its count.
fn grouped_marks(
    out: &mut String,
    scene: &Scene,
    axis: Axis,
    lanes: &HashMap<Lane, (f64, f64, f64)>,
    drawn: &[&Mark],
) {
    let mut groups: BTreeMap<(Lane, MarkKind, i64), (u64, i64, i64)> = BTreeMap::new();
    for m in drawn {
        let col = ((axis.x(m.time) - LEFT) / MARK_COL) as i64;
        let g = groups
            .entry((m.lane, m.kind, col))
            .or_insert((0, m.time, m.time));
        g.0 += 1;
        g.1 = g.1.min(m.time);
        g.2 = g.2.max(m.time);
    }
    for ((lane, kind, col), (n, from, to)) in groups {
        let (top, _, _) = lanes[&lane];
        let x = LEFT + (col as f64 + 0.5) * MARK_COL;
        let tip = format!(
            "{n} × {}\npod {}\n{} – {}",
            kind.words(),
            scene.lanes[lane as usize].name,
            format_time(from),
            format_time(to)
        );
        mark_shape(out, kind, x, top + 2.0, n, &tip);
    }
}

fn mark_shape(out: &mut String, kind: MarkKind, x: f64, y: f64, n: u64, tip: &str) {
    let _ = writeln!(
        out,
        r#"<path data-k="refusal" data-kind="{}" data-n="{n}" class="mark m-{}" d="M{:.1} {:.1}h8l-4 7z"><title>{}</title></path>"#,
        kind.key(),
        kind.key(),
        x - 4.0,
        y - 1.0,
        Esc(tip)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows() {
        // (bars as (x0, x1), rows expected)
        let cases: &[(&[(f64, f64)], usize)] = &[
            (&[], 0),
            (&[(0.0, 10.0)], 1),
            (&[(0.0, 10.0), (11.0, 20.0)], 1),
            (&[(0.0, 10.0), (10.5, 20.0)], 2),
            (&[(0.0, 10.0), (5.0, 6.0), (7.0, 8.0)], 2),
        ];
        for (bars, want) in cases {
            let mut v: Vec<(f64, f64, usize)> = bars
                .iter()
                .enumerate()
                .map(|(i, (a, b))| (*a, *b, i))
                .collect();
            let (placed, rows) = pack(&mut v, 10);
            assert_eq!(rows, *want, "{bars:?}");
            assert_eq!(placed.len(), bars.len());
        }
        let mut many: Vec<(f64, f64, usize)> = (0..100).map(|i| (0.0, 100.0, i)).collect();
        let (placed, rows) = pack(&mut many, 10);
        assert_eq!((placed.len(), rows), (100, 10), "overflow shares rows");
    }

    #[test]
    fn ticks_are_few_and_inside() {
        let cases = [
            (0i64, 3_000_000i64),
            (0, 25_000_000),
            (1_000_000, 6 * 3600 * 1_000_000),
            (5, 6),
        ];
        for (t0, t1) in cases {
            let axis = Axis { t0, t1 };
            let ticks = axis.ticks();
            assert!(ticks.len() <= 12, "{t0}..{t1}: {}", ticks.len());
            assert!(ticks.iter().all(|t| *t > t0 && *t <= t1), "{t0}..{t1}");
        }
    }
}
