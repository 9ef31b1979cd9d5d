//! The load balancer section of the report: the join's aggregate and a few requests one by
//! one for people, all of it (requests capped) for scripts under `load_balancer`. Pure.

use serde_json::{Value, json};

use super::analyze::Analyzer;
use super::evidence::{secs, status_text};
use super::lb::{Family, TraceId};
use super::lb_join::{ByDetails, Kind, LbJoin, Picture, Row, join};
use super::parse::{ClosedBy, format_time};
use super::verdict::{count, of, plural};

/// Requests listed in the text report.
const SHOWN_ROWS: usize = 8;

fn by_details(list: &ByDetails) -> String {
    list.iter()
        .take(6)
        .map(|(d, s, n)| format!("{} × {d} {s}", count(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn trace_hex(t: TraceId) -> String {
    match t {
        TraceId::Id(n) => format!("{n:032x}"),
        TraceId::Missing => "(no trace)".to_string(),
        TraceId::Malformed => "(bad trace)".to_string(),
    }
}

/// One request, both ends: `trace GET /theia/socket.io/ → browser 502
/// failed_to_pick_backend (2 ms) · sockproxy: none`.
fn row_text(a: &Analyzer, r: &Row<'_>) -> String {
    let e = r.entry;
    let trace = trace_hex(e.trace);
    let mut s = format!(
        "{} {} {} → browser {} {}",
        trace.get(..8).unwrap_or(&trace),
        e.method.as_deref().unwrap_or("?"),
        e.path().unwrap_or("?"),
        status_text(e.status),
        e.details.as_deref().unwrap_or("(no statusDetails)")
    );
    if let Some(ms) = e.latency_ms {
        s.push_str(&format!(" ({})", secs(ms)));
    }
    match r.side {
        None if r.kind == Kind::NoTrace => s.push_str(" · not joined: no trace id"),
        None => s.push_str(" · no sockproxy record"),
        Some(side) => {
            s.push_str(&format!(
                " · {} {}",
                a.pod_name(side.pod),
                side.id.as_deref().unwrap_or("-")
            ));
            if let Some(st) = side.status {
                let own = if side.own_answer {
                    " (sockproxy's own)"
                } else {
                    ""
                };
                s.push_str(&format!(" sent {}{own}", status_text(st)));
            }
            if let Some((ms, by)) = side.tunnel {
                s.push_str(&format!(
                    ", tunnel closed by {} after {}",
                    by.name(),
                    secs(ms)
                ));
            }
        }
    }
    s
}

/// The rows of the text section: (label, text).
pub fn lines(a: &Analyzer) -> Vec<(&'static str, String)> {
    let j = &a.lb;
    let p = join(j, (a.first, a.last));
    let mut out = Vec::new();
    let with_trace = j.entries().len() as u64 - p.count(Kind::NoTrace);
    out.push(("entries", entries_line(j, &p)));
    let matched = p.count(Kind::Matched) + p.count(Kind::StatusDiffers);
    out.push((
        "joined",
        format!(
            "{} entries with a trace matched a sockproxy record ({} exchanges with a trace id in the records, {} without)",
            of(matched, with_trace),
            count(j.exchanges_with_trace),
            count(j.exchanges_without_trace)
        ),
    ));
    unmatched_lines(&mut out, &p, with_trace);
    if !p.status_differs.is_empty() {
        out.push(("answers", answers_line(&p, matched)));
    }
    if p.websockets.total > 0 {
        out.push(("websockets", websocket_line(&p)));
    }
    if p.changes.compared > 0 {
        out.push(("on the way", changes_line(&p)));
    }
    request_lines(&mut out, a, &p);
    out
}

fn entries_line(j: &LbJoin, p: &Picture<'_>) -> String {
    let mut head = format!(
        "{} read; {} had no trace id (not joined, never guessed)",
        count(j.entries_read),
        of(p.count(Kind::NoTrace), j.entries().len() as u64)
    );
    if j.duplicates > 0 {
        head.push_str(&format!(
            "; {} dropped (same insertId and timestamp)",
            plural(j.duplicates, "duplicate", "duplicates")
        ));
    }
    if j.other_load_balancers > 0 {
        head.push_str(&format!(
            "; {} of other load balancers (regional, network) set aside",
            plural(j.other_load_balancers, "entry", "entries")
        ));
    }
    if j.entries_not_kept > 0 {
        head.push_str(&format!(
            "; {} past the first {} not joined",
            count(j.entries_not_kept),
            count(j.entries().len() as u64)
        ));
    }
    head
}

fn answers_line(p: &Picture<'_>, matched: u64) -> String {
    let list: Vec<String> = p
        .status_differs
        .iter()
        .take(6)
        .map(|(ours, theirs, d, n)| {
            format!(
                "sockproxy {} → browser {} {d} ×{}",
                status_text(*ours),
                status_text(*theirs),
                count(*n)
            )
        })
        .collect();
    format!(
        "{} of {} joined reached the browser with another status than sockproxy sent: {}",
        count(p.count(Kind::StatusDiffers)),
        count(matched),
        list.join("; ")
    )
}

fn request_lines(out: &mut Vec<(&'static str, String)>, a: &Analyzer, p: &Picture<'_>) {
    for (i, r) in p.rows.iter().take(SHOWN_ROWS).enumerate() {
        let when = r
            .entry
            .time
            .map_or("(no time)".to_string(), super::evidence::clock);
        out.push((
            if i == 0 { "requests" } else { "" },
            format!("{when} {}", row_text(a, r)),
        ));
    }
    if p.rows_total as usize > SHOWN_ROWS {
        out.push((
            "",
            format!(
                "… {} more in --json (load_balancer.requests, first {})",
                count(p.rows_total - SHOWN_ROWS as u64),
                super::lb_join::MAX_ROWS
            ),
        ));
    }
}

fn unmatched_lines(out: &mut Vec<(&'static str, String)>, p: &Picture<'_>, with_trace: u64) {
    let never = p.count(Kind::NeverReached);
    out.push((
        "never reached",
        if never == 0 {
            format!(
                "0 of {} entries with a trace: the load balancer answered none itself",
                count(with_trace)
            )
        } else {
            format!(
                "{} entries with a trace never reached a pod's sidecar; the load balancer answered them itself: {}",
                of(never, with_trace),
                by_details(&p.never_reached)
            )
        },
    ));
    if p.count(Kind::ClientLeftUnseen) > 0 {
        out.push((
            "client left",
            format!(
                "{} reached no sidecar and the client left: {}",
                count(p.count(Kind::ClientLeftUnseen)),
                by_details(&p.client_left_unseen)
            ),
        ));
    }
    if p.count(Kind::Unexplained) > 0 {
        out.push((
            "unexplained",
            format!(
                "{} reached no sidecar and the entry does not say why (no or an unknown statusDetails): {}",
                count(p.count(Kind::Unexplained)),
                by_details(&p.unexplained)
            ),
        ));
    }
    if p.count(Kind::BackendAnsweredUnseen) > 0 {
        out.push((
            "no record",
            format!(
                "{} answered by a backend says the load balancer, but in no sockproxy record here (a pod not in the input, a path recorded only with --log-all, or a backend without sockproxy; not evidence about theia): {}",
                count(p.count(Kind::BackendAnsweredUnseen)),
                by_details(&p.backend_answered_unseen)
            ),
        ));
    }
    if p.count(Kind::OutsideRecords) > 0 {
        out.push((
            "outside",
            format!(
                "{} unmatched entries fall outside the time sockproxy's records cover (not counted above)",
                count(p.count(Kind::OutsideRecords))
            ),
        ));
    }
}

fn websocket_line(p: &Picture<'_>) -> String {
    let w = &p.websockets;
    let fams: Vec<String> = w
        .by_family
        .iter()
        .map(|(f, n)| {
            let mut s = format!("{} × {}", count(*n), family_words(*f));
            if *f == Family::BackendTimeout
                && let Some((lo, hi)) = w.timeout_ms
            {
                s.push_str(&format!(" after {}", super::lb_verdict::between(lo, hi)));
            }
            s
        })
        .collect();
    let mut s = format!(
        "{} ended at the load balancer: {}",
        count(w.total),
        fams.join(", ")
    );
    if w.with_tunnel > 0 {
        let by: Vec<String> = ClosedBy::ALL
            .iter()
            .zip(w.closed_by.iter())
            .filter(|(_, n)| **n > 0)
            .map(|(c, n)| format!("{n} by {}", c.name()))
            .collect();
        s.push_str(&format!(
            "; {} joined to a sockproxy tunnel (closed {})",
            count(w.with_tunnel),
            by.join(", ")
        ));
        if let Some((lo, hi)) = w.gap_ms {
            s.push_str(&format!(
                "; the load balancer's lifetime minus sockproxy's: {} to {}",
                signed_secs(lo),
                signed_secs(hi)
            ));
        }
    }
    if w.tunnel_open > 0 {
        s.push_str(&format!(
            "; {} upgraded with no close in the records",
            count(w.tunnel_open)
        ));
    }
    s
}

fn signed_secs(ms: f64) -> String {
    if ms < 0.0 {
        format!("−{}", secs(-ms))
    } else {
        secs(ms)
    }
}

fn family_words(f: Family) -> &'static str {
    match f {
        Family::WebsocketClosed => "websocket_closed",
        Family::BackendTimeout => "backend_timeout",
        Family::ClientLeft => "client left",
        Family::BackendBroke => "backend broke",
        _ => f.key(),
    }
}

fn changes_line(p: &Picture<'_>) -> String {
    let c = &p.changes;
    let mut parts = vec![format!("{} joined requests compared", count(c.compared))];
    if c.paths.is_empty() {
        parts.push("path unchanged".to_string());
    } else {
        let list: Vec<String> = c
            .paths
            .iter()
            .take(4)
            .map(|(from, to, n)| {
                let show = |s: &str| {
                    if s.is_empty() {
                        "(nothing)".to_string()
                    } else {
                        s.to_string()
                    }
                };
                format!("{} → {} ×{}", show(from), show(to), count(*n))
            })
            .collect();
        parts.push(format!("path prefix rewritten: {}", list.join(", ")));
        if c.path_unchanged > 0 {
            parts.push(format!("{} paths unchanged", count(c.path_unchanged)));
        }
    }
    parts.push(if c.host_differs == 0 {
        "host unchanged".to_string()
    } else {
        format!("host differs for {}", count(c.host_differs))
    });
    parts.push(if c.ua_differs == 0 {
        "user agent unchanged".to_string()
    } else {
        format!("user agent differs for {}", count(c.ua_differs))
    });
    parts.push(format!(
        "client IP: the load balancer's is the first X-Forwarded-For entry for {}, differs for {}",
        count(c.client_same),
        count(c.client_differs)
    ));
    parts.join("; ")
}

fn row_json(a: &Analyzer, r: &Row<'_>) -> Value {
    let e = r.entry;
    json!({
        "kind": r.kind.key(),
        "time": e.time.map(format_time),
        "trace": match e.trace { TraceId::Id(n) => json!(format!("{n:032x}")), _ => Value::Null },
        "method": e.method.as_deref(),
        "url": e.url.as_deref(),
        "browser_status": e.status,
        "status_details": e.details.as_deref(),
        "family": e.family.key(),
        "latency_ms": e.latency_ms,
        "server_ip": e.server_ip.as_deref(),
        "sockproxy": r.side.map(|s| json!({
            "pod": a.pod_name(s.pod),
            "id": s.id.as_deref(),
            "status": s.status,
            "own_answer": s.own_answer,
            "tunnel_ms": s.tunnel.map(|t| t.0),
            "tunnel_closed_by": s.tunnel.map(|t| t.1.name()),
        })),
    })
}

fn details_json(list: &ByDetails) -> Value {
    json!(
        list.iter()
            .map(|(d, s, n)| json!({"status_details": d, "status": s, "count": n}))
            .collect::<Vec<_>>()
    )
}

/// The `load_balancer` key of `--json`.
pub fn json(a: &Analyzer) -> Value {
    let j = &a.lb;
    let p = join(j, (a.first, a.last));
    let kinds: serde_json::Map<String, Value> = super::lb_join::KINDS
        .iter()
        .map(|k| (k.key().to_string(), json!(p.count(*k))))
        .collect();
    let w = &p.websockets;
    let c = &p.changes;
    json!({
        "entries": j.entries_read,
        "entries_not_joined_past_limit": j.entries_not_kept,
        "duplicates": j.duplicates,
        "other_load_balancers": j.other_load_balancers,
        "malformed_traces": p.malformed_traces,
        "sockproxy_exchanges_with_trace": j.exchanges_with_trace,
        "sockproxy_exchanges_without_trace": j.exchanges_without_trace,
        "join": kinds,
        "never_reached_a_pod": details_json(&p.never_reached),
        "client_left_unseen": details_json(&p.client_left_unseen),
        "unexplained": details_json(&p.unexplained),
        "backend_answered_unseen": details_json(&p.backend_answered_unseen),
        "status_differs": p.status_differs.iter().map(|(o, b, d, n)| json!({"sockproxy_status": o, "browser_status": b, "status_details": d, "count": n})).collect::<Vec<_>>(),
        "websockets": {
            "total": w.total,
            "by_family": w.by_family.iter().map(|(f, n)| (f.key().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "joined_to_tunnel": w.with_tunnel,
            "upgraded_without_close": w.tunnel_open,
            "tunnel_closed_by": ClosedBy::ALL.iter().zip(w.closed_by.iter()).map(|(c, n)| (c.name().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "lifetime_gap_ms": w.gap_ms.map(|(lo, hi)| json!({"min": lo, "max": hi})),
            "backend_timeout_ms": w.timeout_ms.map(|(lo, hi)| json!({"min": lo, "max": hi})),
        },
        "changes": {
            "compared": c.compared,
            "path_rewrites": c.paths.iter().map(|(f, t, n)| json!({"load_balancer": f, "sockproxy": t, "count": n})).collect::<Vec<_>>(),
            "path_unchanged": c.path_unchanged,
            "host_differs": c.host_differs,
            "user_agent_differs": c.ua_differs,
            "client_ip_is_first_xff": c.client_same,
            "client_ip_differs": c.client_differs,
        },
        "requests_listed": p.rows.len(),
        "requests_notable": p.rows_total,
        "requests": p.rows.iter().map(|r| row_json(a, r)).collect::<Vec<_>>(),
    })
}
