//! Writes a probe [`Report`](super::Report) for people (a step list and a verdict) or
//! for scripts (one JSON document).

use std::fmt::Write;

use super::Report;
use super::steps::{Session, Step};

/// The JSON document: every session, every step, the first failure and the affinity.
pub fn json(report: &Report) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("the report is plain data");
    s.push('\n');
    s
}

/// The human report: the steps of one session (the first failing one, else the first),
/// one line per further session when there are several, then the verdict.
pub fn human(report: &Report) -> String {
    let mut out = String::new();
    let origin = match &report.origin {
        Some(o) => format!("Origin {o}"),
        None => "no Origin".to_string(),
    };
    let cookies = if report.affinity.cookies_sent {
        "cookies sent back"
    } else {
        "no cookies sent"
    };
    let _ = writeln!(
        out,
        "sockproxy probe {} (EIO {}, {origin}, {cookies})",
        report.url, report.eio
    );
    let shown = report
        .sessions
        .iter()
        .find(|s| !s.ok)
        .or(report.sessions.first());
    if report.sessions.len() > 1 {
        for s in &report.sessions {
            session_line(&mut out, s);
        }
        affinity(&mut out, report);
        if let Some(s) = shown {
            let _ = writeln!(out, "\nsession {}:", s.session);
        }
    }
    if let Some(s) = shown {
        for step in &s.steps {
            step_lines(&mut out, step);
        }
        if !s.skipped.is_empty() {
            let names: Vec<&str> = s.skipped.iter().map(|n| n.as_str()).collect();
            let _ = writeln!(out, "  skip  {}", names.join(", "));
        }
    }
    verdict(&mut out, report);
    out
}

fn session_line(out: &mut String, s: &Session) {
    let pods = if s.pods.is_empty() {
        "-".to_string()
    } else {
        s.pods.join(" -> ")
    };
    let outcome = match &s.failure {
        None => "ok  ".to_string(),
        Some(f) => {
            let h = f
                .hypothesis
                .map(|h| format!(" ({h:?})"))
                .unwrap_or_default();
            format!("FAIL at {}{h}", f.step.as_str())
        }
    };
    let _ = writeln!(
        out,
        "  session {:<3} {outcome}  sid {}  pods {pods}  {:.1} ms",
        s.session,
        s.sid.as_deref().unwrap_or("-"),
        s.ms
    );
}

fn affinity(out: &mut String, report: &Report) {
    let a = &report.affinity;
    let by = match a.by {
        "x-pod-name" => "by X-Pod-Name",
        _ => "no X-Pod-Name: judged by \"Session ID unknown\" refusals",
    };
    let pods: Vec<String> = a
        .handshake_pods
        .iter()
        .map(|c| format!("{} x{}", c.pod, c.handshakes))
        .collect();
    let _ = writeln!(
        out,
        "affinity: {}/{} sessions stayed on one pod ({by}); handshakes on {}; {}",
        a.stayed,
        a.sessions,
        if pods.is_empty() {
            "unknown pods".to_string()
        } else {
            pods.join(", ")
        },
        match (a.cookies_set.is_empty(), a.cookies_sent) {
            (true, _) => "no cookies set".to_string(),
            (false, true) => format!("cookies set: {}, sent back", a.cookies_set.join(", ")),
            (false, false) => format!(
                "cookies set: {}, not sent back (--no-cookies)",
                a.cookies_set.join(", ")
            ),
        }
    );
}

fn step_lines(out: &mut String, step: &Step) {
    let mark = if step.ok { "ok  " } else { "FAIL" };
    let status = step
        .status
        .map(|s| s.to_string())
        .unwrap_or_else(|| "-".into());
    let _ = writeln!(
        out,
        "  {mark}  {:<10}{status:>3}  {:>7} ms  {}",
        step.step.as_str(),
        format!("{:.1}", step.ms),
        step.request
    );
    let indent = "        ";
    if let Some(d) = &step.detail {
        let _ = writeln!(out, "{indent}{d}");
    }
    let h = &step.headers;
    let mut seen = Vec::new();
    for (name, value) in [
        ("upgrade", &h.upgrade),
        ("connection", &h.connection),
        ("x-pod-name", &h.x_pod_name),
        ("via", &h.via),
    ] {
        if let Some(v) = value {
            seen.push(format!("{name}: {v}"));
        }
    }
    for c in &h.set_cookie {
        seen.push(format!("set-cookie: {c}"));
    }
    if !step.cookies_sent.is_empty() {
        seen.push(format!("cookies sent: {}", step.cookies_sent.join(", ")));
    }
    if let Some(t) = &step.trace {
        seen.push(format!("trace {t}"));
    }
    if !seen.is_empty() {
        let _ = writeln!(out, "{indent}{}", seen.join("  |  "));
    }
}

fn verdict(out: &mut String, report: &Report) {
    let Some(f) = &report.failure else {
        let steps: usize = report.sessions.iter().map(|s| s.steps.len()).sum();
        let ms: f64 = report.sessions.iter().map(|s| s.ms).sum();
        let _ = writeln!(
            out,
            "PASS: every step passed ({} session{}, {steps} steps, {:.1} ms)",
            report.sessions.len(),
            if report.sessions.len() == 1 { "" } else { "s" },
            ms
        );
        return;
    };
    let failed = report.sessions.iter().filter(|s| !s.ok).count();
    let which = if report.sessions.len() > 1 {
        format!(
            " ({failed} of {} sessions failed; first: session {})",
            report.sessions.len(),
            f.session
        )
    } else {
        String::new()
    };
    let r = &f.report;
    match r.hypothesis {
        Some(h) => {
            let _ = writeln!(
                out,
                "FAIL at step {}: {h:?} {}{which}",
                r.step.as_str(),
                h.title()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "FAIL at step {}: not one of H1-H6{which}",
                r.step.as_str()
            );
        }
    }
    let _ = writeln!(out, "  why: {}", r.why);
    if let Some(fix) = r.fix {
        let _ = writeln!(out, "  fix: {fix}");
    }
    for h in r.hypotheses.iter().skip(1) {
        let _ = writeln!(out, "  or {h:?} ({}); fix: {}", h.title(), h.fix());
    }
}
