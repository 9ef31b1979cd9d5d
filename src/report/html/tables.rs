//! The per-pod and per-client tables: requests, refusals, upgrades, tunnel lifetimes. Each
//! cell carries its sort value (`data-v`); the page's script sorts by it. Pure.

use std::fmt::Write;

use super::escape::{Esc, clip};
use super::scene::{Client, Life, Lifetimes, Scene, Tally};
use crate::report::evidence::secs;
use crate::report::verdict::count;

/// Rows shown per table (the busiest); the rest are counted in a note.
pub const MAX_ROWS: usize = 200;

const TALLY_HEAD: &str = r#"<th data-type="num">requests</th><th data-type="num" title="4xx answers on socket.io paths">refusals</th><th data-type="num" title="Session ID unknown">sid unknown</th><th data-type="num">upgrades</th><th data-type="num">tunnels</th><th data-type="num" title="to about 6 %">median lifetime</th><th data-type="num">longest</th>"#;

fn num(out: &mut String, n: u64) {
    let _ = write!(out, r#"<td data-v="{n}">{}</td>"#, count(n));
}

/// A lifetime known to its bin (about 6 %): two significant figures, no more.
fn rough(ms: f64) -> String {
    if ms < 1000.0 {
        format!("≈ {ms:.0} ms")
    } else if ms < 10_000.0 {
        format!("≈ {:.1} s", ms / 1000.0)
    } else if ms < 100_000.0 {
        format!("≈ {:.0} s", ms / 1000.0)
    } else {
        format!("≈ {}", secs(ms))
    }
}

fn lifetime(out: &mut String, ms: Option<f64>, approx: bool) {
    match ms {
        Some(ms) => {
            let shown = if approx { rough(ms) } else { secs(ms) };
            let _ = write!(out, r#"<td data-v="{ms:.3}">{shown}</td>"#);
        }
        None => out.push_str(r#"<td data-v="-1">–</td>"#),
    }
}

fn tally(out: &mut String, t: &Tally) {
    num(out, t.requests);
    num(out, t.refusals);
    num(out, t.sid_refusals);
    num(out, t.upgrades);
    num(out, t.tunnels.n);
    let l: &Lifetimes = &t.tunnels;
    lifetime(out, l.median_ms(), true);
    lifetime(out, (l.n > 0).then_some(l.longest_ms), false);
}

/// The pods table, ordered by when each pod's records begin.
pub fn pods(scene: &Scene, out: &mut String) {
    let mut lanes: Vec<usize> = (0..scene.lanes.len()).collect();
    lanes.sort_by_key(|l| (scene.lanes[*l].first.unwrap_or(i64::MAX), *l));
    let _ = write!(
        out,
        r#"<table id="pods" class="sortable"><thead><tr><th data-type="text">pod</th><th data-type="num">records</th>{TALLY_HEAD}<th data-type="num">starts</th><th data-type="num">drains</th></tr></thead><tbody>"#
    );
    for l in lanes.iter().take(MAX_ROWS) {
        let info = &scene.lanes[*l];
        let life = |k: u8| {
            scene
                .lifecycle
                .iter()
                .filter(|(lane, _, w)| *lane as usize == *l && life_kind(w) == k)
                .count() as u64
        };
        let _ = write!(
            out,
            r#"<tr data-pod="{}"><td>{}</td>"#,
            Esc(&info.name),
            Esc(&info.name)
        );
        num(out, info.records);
        tally(out, &info.tally);
        num(out, life(0));
        num(out, life(1));
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
    if lanes.len() > MAX_ROWS {
        let _ = writeln!(
            out,
            r#"<p class="note">{} more pods not shown.</p>"#,
            count((lanes.len() - MAX_ROWS) as u64)
        );
    }
}

fn life_kind(w: &Life) -> u8 {
    match w {
        Life::Start => 0,
        Life::Drain { .. } => 1,
        Life::Stop { .. } => 2,
    }
}

/// The clients table: the busiest clients first.
pub fn clients(scene: &Scene, out: &mut String) {
    if scene.clients.is_empty() {
        out.push_str(
            "<p class=\"note\">No socket.io request names its client (no <code>httpRequest.remoteIp</code> or X-Forwarded-For).</p>\n",
        );
        return;
    }
    let mut rows: Vec<(&str, &Client)> = scene.clients.iter().map(|(k, c)| (&**k, c)).collect();
    rows.sort_by(|a, b| {
        b.1.tally
            .requests
            .cmp(&a.1.tally.requests)
            .then(a.0.cmp(b.0))
    });
    let _ = write!(
        out,
        r#"<table id="clients" class="sortable"><thead><tr><th data-type="text">client</th>{TALLY_HEAD}<th data-type="num">pods</th><th data-type="text">user agent (first seen)</th></tr></thead><tbody>"#
    );
    for (ip, c) in rows.iter().take(MAX_ROWS) {
        client_row(out, &Esc(ip).to_string(), c);
    }
    if scene.other_clients_n > 0 {
        client_row(out, "(other clients)", &scene.other_clients);
    }
    out.push_str("</tbody></table>\n");
    if rows.len() > MAX_ROWS {
        let _ = writeln!(
            out,
            r#"<p class="note">{} more clients not shown (fewer requests).</p>"#,
            count((rows.len() - MAX_ROWS) as u64)
        );
    }
}

/// One row; `name` is already escaped.
fn client_row(out: &mut String, name: &str, c: &Client) {
    let _ = write!(out, "<tr><td>{name}</td>");
    tally(out, &c.tally);
    num(out, u64::from(c.pods()));
    let ua = c.user_agent.as_deref().unwrap_or("");
    let _ = writeln!(
        out,
        r#"<td class="ua" title="{}">{}</td></tr>"#,
        Esc(ua),
        Esc(&clip(ua, 60))
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rough_lifetimes() {
        let cases = [
            (35.2, "≈ 35 ms"),
            (2962.667, "≈ 3.0 s"),
            (20_231.0, "≈ 20 s"),
            (400_000.0, "≈ 400.0 s"),
        ];
        for (ms, want) in cases {
            assert_eq!(rough(ms), want, "{ms}");
        }
    }
}
