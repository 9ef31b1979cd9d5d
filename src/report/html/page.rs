//! The page around the drawings: head (style, security policy), the verdicts with their
//! evidence and fixes (the text report's, taken as they are), the sections and the script.
//! Pure.

use std::fmt::Write;

use super::escape::{Esc, base64};
use super::scene::{Fate, MarkKind, Scene, Series};
use super::{histogram, tables, timeline};
use crate::report::analyze::Analyzer;
use crate::report::evidence::Example;
use crate::report::parse::format_time;
use crate::report::render;
use crate::report::verdict::{Finding, Verdict, count};

const STYLE: &str = include_str!("page.css");
/// Sorting and hover only: the page reads the same without it.
const SCRIPT: &str = include_str!("page.js");

/// The whole page for these verdicts (`findings`, as the text report gives them) and what
/// `scene` folded from the same records.
pub fn page(a: &Analyzer, findings: &[Finding], scene: &Scene, sources: &[String]) -> String {
    let mut out = String::with_capacity(256 * 1024);
    head(&mut out, a, findings);
    intro(&mut out, a, sources);
    verdicts(&mut out, a, findings);
    // The drawing that shows a confirmed (or isolated) cut-off comes first: that is the
    // shape to see at a glance.
    let h6_found = findings
        .iter()
        .any(|f| f.id == "H6" && matches!(f.verdict, Verdict::Confirmed | Verdict::Isolated));
    if h6_found {
        lifetimes_section(&mut out, a, findings, scene);
        timeline_section(&mut out, scene);
    } else {
        timeline_section(&mut out, scene);
        lifetimes_section(&mut out, a, findings, scene);
    }
    out.push_str("<section id=\"pods-section\"><h2>Pods</h2>\n");
    tables::pods(scene, &mut out);
    out.push_str("</section>\n<section id=\"clients-section\"><h2>Clients</h2>\n");
    tables::clients(scene, &mut out);
    out.push_str("</section>\n");
    text_section(&mut out, a, findings, sources);
    let _ = write!(
        out,
        "</main>\n<div id=\"hover\" role=\"status\" hidden></div>\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    );
    out
}

/// The policy lets only this page's own script run, and nothing load: even a value that
/// escaped escaping could not run or reach the network.
fn policy() -> String {
    let hash = ring::digest::digest(&ring::digest::SHA256, SCRIPT.as_bytes());
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{}'",
        base64(hash.as_ref())
    )
}

fn head(out: &mut String, a: &Analyzer, findings: &[Finding]) {
    let confirmed: Vec<&str> = findings
        .iter()
        .filter(|f| f.verdict == Verdict::Confirmed)
        .map(|f| f.id)
        .collect();
    let title = format!(
        "sockproxy report: {} · {} records",
        if confirmed.is_empty() {
            "nothing confirmed".to_string()
        } else {
            format!("{} confirmed", confirmed.join(", "))
        },
        count(a.input.records)
    );
    let _ = write!(
        out,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="sockproxy {}">
<title>{}</title>
<style>{STYLE}</style>
</head>
<body>
<main>
"#,
        policy(),
        env!("CARGO_PKG_VERSION"),
        Esc(&title)
    );
}

fn span(a: &Analyzer) -> String {
    match (a.first, a.last) {
        (Some(f), Some(l)) => format!(
            "{} → {} UTC ({})",
            &format_time(f)[..23].replace('T', " "),
            &format_time(l)[..23].replace('T', " "),
            crate::report::evidence::secs((l - f) as f64 / 1000.0)
        ),
        _ => "no times".to_string(),
    }
}

fn intro(out: &mut String, a: &Analyzer, sources: &[String]) {
    let pods = a.pods.iter().filter(|p| p.records > 0).count() as u64;
    let _ = writeln!(
        out,
        r#"<header><h1>sockproxy report</h1><p class="lead">{} records from {} pod{}, {}; {} lines skipped. Sources: {}.</p></header>"#,
        count(a.input.records),
        count(pods),
        if pods == 1 { "" } else { "s" },
        Esc(&span(a)),
        count(a.input.skipped()),
        Esc(&sources.join(", "))
    );
}

fn verdicts(out: &mut String, a: &Analyzer, findings: &[Finding]) {
    out.push_str("<section id=\"verdicts\"><h2>Verdicts</h2>\n<table class=\"verdicts\"><tbody>\n");
    for f in findings {
        let _ = writeln!(
            out,
            r##"<tr data-id="{}" data-verdict="{}"><th><a href="#{}">{}</a></th><td>{}</td><td><span class="badge v-{}">{}</span></td><td>{}</td></tr>"##,
            f.id,
            f.verdict.key(),
            f.id,
            f.id,
            Esc(f.title),
            f.verdict.key(),
            f.verdict.words(),
            Esc(&f.summary)
        );
    }
    out.push_str("</tbody></table>\n");
    // As the text report: the confirmed first, then the others that have evidence.
    let confirmed = findings.iter().filter(|f| f.verdict == Verdict::Confirmed);
    let others = findings.iter().filter(|f| {
        f.verdict != Verdict::Confirmed && (!f.examples.is_empty() || !f.details.is_empty())
    });
    for f in confirmed.chain(others) {
        finding(out, a, f);
    }
    out.push_str("</section>\n");
}

fn finding(out: &mut String, a: &Analyzer, f: &Finding) {
    let open = matches!(f.verdict, Verdict::Confirmed | Verdict::Isolated);
    let _ = writeln!(
        out,
        r#"<details id="{}" class="finding v-{}"{}><summary><span class="badge v-{}">{}</span> {} · {}</summary><p>{}</p>"#,
        f.id,
        f.verdict.key(),
        if open { " open" } else { "" },
        f.verdict.key(),
        f.verdict.words(),
        f.id,
        Esc(f.title),
        Esc(&f.summary)
    );
    if !f.details.is_empty() {
        out.push_str("<ul class=\"details\">");
        for d in &f.details {
            let _ = write!(out, "<li>{}</li>", Esc(d));
        }
        out.push_str("</ul>\n");
    }
    if !f.examples.is_empty() {
        out.push_str("<table class=\"examples\"><tbody>");
        for e in &f.examples {
            example(out, a, e);
        }
        out.push_str("</tbody></table>\n");
    }
    if open {
        let _ = writeln!(out, r#"<p class="rule"><b>rule:</b> {}</p>"#, Esc(f.rule));
    }
    if f.verdict == Verdict::Confirmed {
        let _ = writeln!(out, r#"<p class="fix"><b>fix:</b> {}</p>"#, Esc(f.fix));
    }
    out.push_str("</details>\n");
}

fn example(out: &mut String, a: &Analyzer, e: &Example) {
    let _ = write!(
        out,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        e.time.map_or("(no time)".to_string(), format_time),
        Esc(a.pod_name(e.pod)),
        Esc(e.id.as_deref().unwrap_or("-")),
        Esc(&e.text)
    );
}

fn swatch(out: &mut String, class: &str, words: &str) {
    let _ = write!(
        out,
        r#"<span class="key"><i class="{class}"></i>{}</span>"#,
        Esc(words)
    );
}

fn timeline_section(out: &mut String, scene: &Scene) {
    out.push_str("<section id=\"timeline-section\"><h2>Timeline</h2>\n");
    let drawn = scene.sessions.len() as u64;
    let every = scene.sample_every();
    let sample = if every > 1 {
        format!(
            "; 1 session in {every} is drawn, chosen by sid hash (about {} in all)",
            count(drawn * every)
        )
    } else {
        String::new()
    };
    let marks: u64 = scene.marks.len() as u64 + scene.marks_not_kept;
    let _ = writeln!(
        out,
        r#"<p class="note">Pods are lanes, in the order their records begin. Each bar is a session (one sid) on the pod that issued it, from its first request to its last request or tunnel end: {} bar{}{sample}. Each ▼ is a refused socket.io request ({} in all); a dashed line leads from it back to the session it refused. ◆ marks a pod's start (green), drain (orange, with the drain window shaded) and stop (grey); the strip under a lane shows its health checks. Hover anything for its record's fields.</p>"#,
        count(drawn),
        if drawn == 1 { "" } else { "s" },
        count(marks)
    );
    out.push_str("<div class=\"scroll\">\n");
    timeline::svg(scene, out);
    out.push_str("</div>\n<p class=\"legend\"><b>sessions</b>");
    for f in Fate::ALL {
        swatch(out, &format!("f-{}", f.key()), f.words());
    }
    out.push_str("</p>\n<p class=\"legend\"><b>refusals ▼</b>");
    for k in MarkKind::ALL {
        swatch(out, &format!("m-{}", k.key()), k.words());
    }
    out.push_str("</p>\n<p class=\"legend\"><b>pods ◆</b>");
    swatch(out, "life-start", "start (listening)");
    swatch(out, "life-drain", "drain (SIGTERM) and its window");
    swatch(out, "life-stop", "stop");
    swatch(out, "hc-ok", "health checks passing");
    swatch(out, "hc-fail", "health checks failing");
    out.push_str("</p>\n");
    let hidden = scene.lanes.len().saturating_sub(timeline::MAX_DRAWN_LANES);
    let mut notes = Vec::new();
    if hidden > 0 {
        notes.push(format!(
            "{hidden} pods with the fewest records are not drawn"
        ));
    }
    if scene.marks_not_kept > 0 {
        notes.push(format!(
            "{} refusals past the first {} are counted, not drawn",
            count(scene.marks_not_kept),
            count(scene.marks.len() as u64)
        ));
    }
    if scene.health_not_kept > 0 {
        notes.push(format!(
            "{} health checks are counted, not drawn",
            count(scene.health_not_kept)
        ));
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "<p class=\"note\">{}.</p>", Esc(&notes.join("; ")));
    }
    out.push_str("</section>\n");
}

fn lifetimes_section(out: &mut String, a: &Analyzer, findings: &[Finding], scene: &Scene) {
    out.push_str("<section id=\"lifetimes-section\"><h2>Tunnel lifetimes</h2>\n");
    let cluster = a.h6.cluster(&a.pods);
    let h6 = findings.iter().find(|f| f.id == "H6");
    let note = match (&cluster, h6) {
        (Some(_), Some(f)) => format!(
            "How long each tunnel lived, on a log scale, stacked by who ended it. The red line is where H6 ({}) finds lifetimes piling up just under one value: the front's cut-off.",
            f.verdict.words()
        ),
        _ => "How long each tunnel lived, on a log scale, stacked by who ended it. H6 finds no pile of lifetimes under one value: no cut-off to mark.".to_string(),
    };
    let _ = writeln!(
        out,
        "<p class=\"note\">{}</p>\n<div class=\"scroll\">",
        Esc(&note)
    );
    if let Some(h6) = h6 {
        histogram::svg(scene, cluster.as_ref(), h6, out);
    }
    out.push_str("</div>\n<p class=\"legend\"><b>lifetimes</b>");
    for s in Series::ALL {
        swatch(out, &format!("s-{}", s.key()), s.words());
    }
    out.push_str("</p>\n</section>\n");
}

fn text_section(out: &mut String, a: &Analyzer, findings: &[Finding], sources: &[String]) {
    let style = render::Style {
        colour: false,
        width: 100,
    };
    let text = render::human(a, findings, sources, style);
    let _ = writeln!(
        out,
        "<section id=\"text\"><details><summary>The text report</summary><pre>{}</pre></details></section>",
        Esc(&text)
    );
}
