//! Writes the verdicts for people (summary first, wrapped to the terminal, colour only
//! when asked) and for scripts (JSON), and the one-line notices of `--follow`. Pure.

use serde_json::{Value, json};

use super::analyze::{Analyzer, Picture};
use super::evidence::{Example, clock};
use super::parse::{ClosedBy, Event, format_time};
use super::verdict::{Finding, Verdict};

/// How to draw: colour or not, and how wide the terminal is.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    pub colour: bool,
    pub width: usize,
}

const SHORT_TITLES: [&str; 6] = [
    "Upgrade stripped",
    "no affinity",
    "health check",
    "Origin/Host",
    "draining",
    "timeout",
];

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    fn verdict(&self, v: Verdict, pad: usize) -> String {
        let words = format!("{:<pad$}", v.words());
        match v {
            Verdict::Confirmed => self.paint("1;31", &words),
            Verdict::Isolated => self.paint("33", &words),
            Verdict::RuledOut => self.paint("32", &words),
            Verdict::NoEvidence => self.paint("2", &words),
        }
    }

    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
}

/// Word-wraps `text` to `width`, the first line after `first` and the rest after `indent`.
fn wrap(out: &mut String, first: &str, indent: usize, text: &str, width: usize) {
    let visible = |s: &str| {
        let mut n = 0;
        let mut esc = false;
        for c in s.chars() {
            match c {
                '\x1b' => esc = true,
                'm' if esc => esc = false,
                _ if esc => {}
                _ => n += 1,
            }
        }
        n
    };
    let mut line = first.to_string();
    let mut len = visible(first);
    let mut fresh = true;
    for word in text.split(' ') {
        let w = word.chars().count();
        if !fresh && len + 1 + w > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = " ".repeat(indent);
            len = indent;
            fresh = true;
        }
        if !fresh {
            line.push(' ');
            len += 1;
        }
        line.push_str(word);
        len += w;
        fresh = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// A time as shown: time of day when the records span one UTC day, else the full date.
fn when(a: &Analyzer, t: Option<i64>) -> String {
    let Some(t) = t else {
        return "(no time)".to_string();
    };
    let same_day = match (a.first, a.last) {
        (Some(f), Some(l)) => f.div_euclid(86_400_000_000) == l.div_euclid(86_400_000_000),
        _ => true,
    };
    if same_day {
        clock(t)
    } else {
        format_time(t)[..23].replace('T', " ")
    }
}

fn span(a: &Analyzer) -> String {
    match (a.first, a.last) {
        (Some(f), Some(l)) => {
            let full = |t: i64| format_time(t)[..23].replace('T', " ");
            format!(
                "{} → {} UTC ({})",
                full(f),
                if f.div_euclid(86_400_000_000) == l.div_euclid(86_400_000_000) {
                    clock(l)
                } else {
                    full(l)
                },
                duration((l - f) as f64 / 1e6)
            )
        }
        _ => "no times".to_string(),
    }
}

fn duration(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1} s")
    } else {
        // Whole seconds first, so 3 h never reads "2 h 60 min".
        let total = s.round() as u64;
        if total < 3600 {
            format!("{} min {} s", total / 60, total % 60)
        } else {
            let minutes = (total + 30) / 60;
            format!("{} h {} min", minutes / 60, minutes % 60)
        }
    }
}

fn example_line(a: &Analyzer, e: &Example) -> String {
    format!(
        "{} {} {}  {}",
        when(a, e.time),
        a.pod_name(e.pod),
        e.id.as_deref().unwrap_or("-"),
        e.text
    )
}

fn n_of(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The report for a terminal.
pub fn human(a: &Analyzer, findings: &[Finding], sources: &[String], style: Style) -> String {
    let w = style.width.max(60);
    let mut out = String::new();
    let pods = a.pods.iter().filter(|p| p.records > 0).count() as u64;
    if a.input.records == 0 {
        out.push_str(&format!(
            "sockproxy report: no records in {} ({} skipped)\n",
            sources.join(", "),
            n_of(a.input.skipped(), "line", "lines")
        ));
    } else {
        let head = format!(
            "sockproxy report: {} from {}, {}",
            n_of(a.input.records, "record", "records"),
            n_of(pods, "pod", "pods"),
            span(a)
        );
        out.push_str(&style.bold(&head));
        out.push('\n');
    }
    out.push('\n');
    let title_w = SHORT_TITLES.iter().map(|t| t.len()).max().unwrap_or(0);
    for (i, f) in findings.iter().enumerate() {
        let first = format!(
            "  {} {:<title_w$}  {} ",
            f.id,
            SHORT_TITLES[i],
            style.verdict(f.verdict, 12)
        );
        wrap(&mut out, &first, 2 + 3 + title_w + 2 + 13, &f.summary, w);
    }
    let confirmed: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.verdict == Verdict::Confirmed)
        .collect();
    let others = findings.iter().filter(|f| {
        f.verdict != Verdict::Confirmed && (!f.examples.is_empty() || !f.details.is_empty())
    });
    for f in confirmed.iter().copied().chain(others) {
        out.push('\n');
        let head = format!("{} {} · {}", f.id, f.verdict.words(), f.title);
        out.push_str(&match f.verdict {
            Verdict::Confirmed => style.paint("1;31", &head),
            _ => style.bold(&head),
        });
        out.push('\n');
        wrap(&mut out, "  ", 2, &f.summary, w);
        for d in &f.details {
            wrap(&mut out, "  ", 2, d, w);
        }
        for e in &f.examples {
            wrap(&mut out, "    ", 8, &example_line(a, e), w);
        }
        if matches!(f.verdict, Verdict::Confirmed | Verdict::Isolated) {
            wrap(
                &mut out,
                &format!("  {} ", style.paint("2", "rule:")),
                8,
                f.rule,
                w,
            );
        }
        if f.verdict == Verdict::Confirmed {
            wrap(&mut out, &format!("  {} ", style.bold("fix:")), 7, f.fix, w);
        }
    }
    out.push('\n');
    out.push_str(&style.bold("Picture"));
    out.push('\n');
    picture(&mut out, a, sources, w);
    if !a.lb.is_empty() {
        out.push('\n');
        out.push_str(&style.bold("Load balancer (its own log, joined by trace id)"));
        out.push('\n');
        for (label, text) in super::lb_render::lines(a) {
            wrap(&mut out, &format!("  {label:<13} "), 16, &text, w);
        }
    }
    out
}

fn picture(out: &mut String, a: &Analyzer, sources: &[String], w: usize) {
    let mut row = |label: &str, text: String| {
        wrap(out, &format!("  {label:<12} "), 15, &text, w);
    };
    let p = &a.picture;
    row("handshakes", handshakes_line(p));
    row("upgrades", upgrades_line(p));
    row("tunnels", tunnels_line(a));
    row("refusals", refusals_line(p));
    let also = also_line(p);
    if !also.is_empty() {
        row("also", also.join("; "));
    }
    for (i, text) in pod_lines(a).into_iter().enumerate() {
        row(if i == 0 { "pods" } else { "" }, text);
    }
    row("input", input_line(a, sources));
    let forgotten = a.sids_forgotten() + a.open_tunnels_forgotten();
    if forgotten > 0 {
        row(
            "limits",
            format!(
                "{} sessions and {} open tunnels forgotten to bound memory; joins across them are missed",
                a.sids_forgotten(),
                a.open_tunnels_forgotten()
            ),
        );
    }
}

fn handshakes_line(p: &Picture) -> String {
    format!(
        "{}: {} polling, {} websocket-only; {} refused",
        p.handshakes_polling + p.handshakes_ws_only,
        p.handshakes_polling,
        p.handshakes_ws_only,
        p.handshakes_refused
    )
}

fn upgrades_line(p: &Picture) -> String {
    let rate = if p.ws_attempts > 0 {
        format!(
            " ({:.0} %)",
            100.0 * p.upgrades as f64 / p.ws_attempts as f64
        )
    } else {
        String::new()
    };
    format!(
        "{} of {} got 101{rate}",
        p.upgrades,
        n_of(p.ws_attempts, "websocket request", "websocket requests")
    )
}

fn tunnels_line(a: &Analyzer) -> String {
    let p = &a.picture;
    let closed: u64 = p.tunnels_closed.iter().sum();
    let by: Vec<String> = ClosedBy::ALL
        .iter()
        .zip(p.tunnels_closed.iter())
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| format!("{n} by {}", c.name()))
        .collect();
    let mut t = format!("{closed} closed");
    if !by.is_empty() {
        t.push_str(&format!(" ({})", by.join(", ")));
    }
    t.push_str(&format!("; {} open at the end", a.open_tunnels()));
    if let Some(l) = p.longest_tunnel_ms {
        t.push_str(&format!("; longest {}", super::evidence::secs(l)));
    }
    t
}

fn refusals_line(p: &Picture) -> String {
    let refusals: u64 = p.refusals_by_code.iter().sum();
    let by_code: Vec<String> = p
        .refusals_by_code
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| {
            if c < 6 {
                format!(
                    "{n} × {} (code {c})",
                    crate::sio::ERROR_MESSAGES
                        .get(c)
                        .copied()
                        .unwrap_or("other")
                )
            } else {
                format!("{n} × other")
            }
        })
        .collect();
    let mut r = format!("{refusals} 4xx on socket.io paths");
    if !by_code.is_empty() {
        r.push_str(&format!(": {}", by_code.join(", ")));
    }
    r
}

/// Everything else worth a mention, one phrase each.
fn also_line(p: &Picture) -> Vec<String> {
    let mut other = Vec::new();
    if p.polls_aborted > 0 {
        other.push(n_of(
            p.polls_aborted,
            "long-poll cut by the client",
            "long-polls cut by the client",
        ));
    }
    if p.upstream_errors > 0 {
        other.push(format!(
            "{} answered by sockproxy (theia unreachable)",
            p.upstream_errors
        ));
    }
    if p.status_classes[5] > 0 {
        other.push(format!("{} × 5xx", p.status_classes[5]));
    }
    if p.records_dropped > 0 {
        other.push(format!(
            "{} records dropped by sockproxy (counts are lower bounds)",
            p.records_dropped
        ));
    }
    if p.startup_failed > 0 {
        other.push(format!("{} failed starts", p.startup_failed));
    }
    if p.client_errors > 0 {
        other.push(format!(
            "{} requests refused by sockproxy itself (client_error: malformed or oversized heads, never forwarded)",
            p.client_errors
        ));
    }
    if p.connection_limits > 0 {
        other.push(format!(
            "--max-connections reached {} time(s)",
            p.connection_limits
        ));
    }
    other
}

/// One line per pod: records, time range, handshakes, upgrades, refusals, restarts.
fn pod_lines(a: &Analyzer) -> Vec<String> {
    let name_w = a
        .pods
        .iter()
        .map(|p| p.name.chars().count())
        .max()
        .unwrap_or(0);
    let mut lines = Vec::with_capacity(a.pods.len());
    for pod in &a.pods {
        // Milliseconds only matter when the records span less than a minute.
        let short_span = a.first.zip(a.last).is_some_and(|(f, l)| l - f < 60_000_000);
        let short = |t: i64| {
            let w = when(a, Some(t));
            if short_span {
                w
            } else {
                w.split('.').next().unwrap_or("").to_string()
            }
        };
        let range = match (pod.first, pod.last) {
            (Some(f), Some(l)) => format!("{}–{}", short(f), short(l)),
            _ => "(no times)".to_string(),
        };
        let text = format!(
            "{:<name_w$} {:>6} {}  {}  {}, {}/{} upgraded, {} refused{}",
            pod.name,
            pod.records,
            if pod.records == 1 {
                "record "
            } else {
                "records"
            },
            range,
            n_of(pod.handshakes, "handshake", "handshakes"),
            pod.upgrades,
            pod.ws_attempts,
            pod.refusals,
            if pod.starts.len() > 1 {
                format!(
                    ", {}",
                    n_of(pod.starts.len() as u64 - 1, "restart", "restarts")
                )
            } else {
                String::new()
            }
        );
        lines.push(text);
    }
    lines
}

fn input_line(a: &Analyzer, sources: &[String]) -> String {
    let i = &a.input;
    let mut skipped = Vec::new();
    for (n, what) in [
        (i.not_json, "not JSON"),
        (i.invalid_json, "invalid JSON"),
        (i.truncated, "truncated"),
        (i.too_long, "too long"),
        (i.not_records, "JSON but not a record"),
    ] {
        if n > 0 {
            skipped.push(format!("{n} {what}"));
        }
    }
    format!(
        "{} from {}; {} skipped{}",
        n_of(i.records, "record", "records"),
        sources.join(", "),
        n_of(i.skipped(), "line", "lines"),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(" ({})", skipped.join(", "))
        }
    )
}

fn example_json(a: &Analyzer, e: &Example) -> Value {
    json!({
        "time": e.time.map(format_time),
        "pod": a.pod_name(e.pod),
        "id": e.id,
        "text": e.text,
    })
}

fn finding_json(a: &Analyzer, f: &Finding) -> Value {
    let counts: serde_json::Map<String, Value> = f
        .counts
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({
        "id": f.id,
        "title": f.title,
        "verdict": f.verdict.key(),
        "summary": f.summary,
        "details": f.details,
        "counts": counts,
        "examples": f.examples.iter().map(|e| example_json(a, e)).collect::<Vec<_>>(),
        "rule": f.rule,
        "fix": f.fix,
    })
}

/// The report for scripts.
pub fn json(a: &Analyzer, findings: &[Finding], sources: &[String]) -> Value {
    let p = &a.picture;
    let closed_by: serde_json::Map<String, Value> = ClosedBy::ALL
        .iter()
        .zip(p.tunnels_closed.iter())
        .map(|(c, n)| (c.name().to_string(), json!(n)))
        .collect();
    let refusals: serde_json::Map<String, Value> = p
        .refusals_by_code
        .iter()
        .enumerate()
        .map(|(c, n)| {
            let key = if c < 6 {
                c.to_string()
            } else {
                "other".to_string()
            };
            (key, json!(n))
        })
        .collect();
    let mut v = json!({
        "confirmed": findings.iter().filter(|f| f.verdict == Verdict::Confirmed).map(|f| f.id).collect::<Vec<_>>(),
        "hypotheses": findings.iter().map(|f| finding_json(a, f)).collect::<Vec<_>>(),
        "picture": {
            "first": a.first.map(format_time),
            "last": a.last.map(format_time),
            "pods": pods_json(a),
            "handshakes": {
                "polling": p.handshakes_polling,
                "websocket_only": p.handshakes_ws_only,
                "refused": p.handshakes_refused,
            },
            "upgrades": {
                "websocket_requests": p.ws_attempts,
                "succeeded": p.upgrades,
                "rate": if p.ws_attempts > 0 { json!(p.upgrades as f64 / p.ws_attempts as f64) } else { Value::Null },
            },
            "tunnels": {
                "closed_by": closed_by,
                "open_at_end": a.open_tunnels(),
                "closed_without_upgrade": p.closes_without_upgrade,
                "longest_ms": p.longest_tunnel_ms,
            },
            "refusals_by_code": refusals,
            "long_polls_cut": p.polls_aborted,
            "upstream_errors": p.upstream_errors,
            "records_dropped": p.records_dropped,
            "startup_failed": p.startup_failed,
            "client_errors": p.client_errors,
            "connection_limits": p.connection_limits,
        },
        "input": input_json(a, sources),
    });
    v["load_balancer"] = super::lb_render::json(a);
    v
}

/// Each pod's counts, for `--json`.
fn pods_json(a: &Analyzer) -> Vec<Value> {
    a.pods
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "records": p.records,
                "first": p.first.map(format_time),
                "last": p.last.map(format_time),
                "handshakes": p.handshakes,
                "websocket_requests": p.ws_attempts,
                "upgrades": p.upgrades,
                "refusals": p.refusals,
                "server_errors": p.server_errors,
                "tunnels_closed": p.tunnels_closed,
                "starts": p.starts.len(),
                "drains": p.drains.len(),
            })
        })
        .collect()
}

/// What the input held, for `--json`.
fn input_json(a: &Analyzer, sources: &[String]) -> Value {
    let i = &a.input;
    let by_event: serde_json::Map<String, Value> = Event::ALL
        .iter()
        .zip(i.by_event.iter())
        .filter(|(_, n)| **n > 0)
        .map(|(e, n)| (e.name().to_string(), json!(n)))
        .collect();
    json!({
    "sources": sources,
    "records": i.records,
    "by_event": by_event,
    "skipped": {
        "total": i.skipped(),
        "not_json": i.not_json,
        "invalid_json": i.invalid_json,
        "truncated": i.truncated,
        "too_long": i.too_long,
        "not_a_record": i.not_records,
    },
    "sessions_forgotten": a.sids_forgotten(),
    "open_tunnels_forgotten": a.open_tunnels_forgotten(),
    })
}

/// `--follow`: one line when a verdict changes.
pub fn change_line(
    a: &Analyzer,
    at: Option<i64>,
    from: Verdict,
    f: &Finding,
    style: Style,
) -> String {
    // One line, however long: easy to grep and to tell apart as the stream goes by.
    format!(
        "{} {} {} → {} {}\n",
        when(a, at),
        f.id,
        from.words(),
        style.verdict(f.verdict, 0),
        f.summary
    )
}

/// `--follow --json`: the same as a JSON line.
pub fn change_json(a: &Analyzer, at: Option<i64>, from: Verdict, f: &Finding) -> Value {
    json!({
        "event": "verdict_changed",
        "time": at.map(format_time),
        "hypothesis": f.id,
        "from": from.key(),
        "to": f.verdict.key(),
        "summary": f.summary,
        "examples": f.examples.iter().map(|e| example_json(a, e)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_carry_over() {
        assert_eq!(duration(59.94), "59.9 s");
        assert_eq!(duration(119.6), "2 min 0 s");
        assert_eq!(duration(3599.6), "1 h 0 min");
        assert_eq!(duration(10_797.5), "3 h 0 min");
        assert_eq!(duration(5_430.0), "1 h 31 min");
    }

    #[test]
    fn wrapping() {
        // (first, indent, text, width, expected)
        let cases = [
            ("> ", 2, "one two three", 80, "> one two three\n"),
            ("> ", 2, "one two three", 9, "> one two\n  three\n"),
            ("> ", 4, "aaaaaaaaaaaa bb", 8, "> aaaaaaaaaaaa\n    bb\n"),
            (
                "\x1b[1mX\x1b[0m ",
                2,
                "ab cd",
                5,
                "\x1b[1mX\x1b[0m ab\n  cd\n",
            ),
            ("", 0, "", 10, "\n"),
        ];
        for (first, indent, text, width, want) in cases {
            let mut out = String::new();
            wrap(&mut out, first, indent, text, width);
            assert_eq!(out, want, "{text:?} at {width}");
        }
    }

    #[test]
    fn durations() {
        let cases = [(0.2, "0.2 s"), (75.0, "1 min 15 s"), (7260.0, "2 h 1 min")];
        for (s, want) in cases {
            assert_eq!(duration(s), want);
        }
    }

    #[test]
    fn colour_only_when_asked() {
        let plain = Style {
            colour: false,
            width: 80,
        };
        let tty = Style {
            colour: true,
            width: 80,
        };
        assert_eq!(plain.verdict(Verdict::Confirmed, 0), "CONFIRMED");
        assert_eq!(
            tty.verdict(Verdict::Confirmed, 0),
            "\x1b[1;31mCONFIRMED\x1b[0m"
        );
        assert_eq!(
            tty.verdict(Verdict::RuledOut, 10),
            "\x1b[32mruled out \x1b[0m"
        );
    }
}
