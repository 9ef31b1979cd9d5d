//! H4, Origin/Host rewritten: its state, its fold over records and its rule. Pure.
//!
//! Theia (≥ 1.73) refuses a handshake whose Origin's host:port differs from Host: 403 on
//! polling, a raw 400 `Forbidden` on websocket (engine.io code 4). When a hop rewrites Host
//! (nginx `proxy_set_header Host localhost`, or `$host`, which drops the port), every
//! browser's handshake is refused. A page on another site is refused too, rightly: that is
//! one client or origin among many, not the path. A Forbidden where Origin matches Host is
//! another check (Theia's connection token), not this one.

use std::collections::{HashMap, HashSet};

use super::evidence::{Distinct, Examples, PodId, describe, example, list};
use super::parse::{Event, Flags, Rec};
use super::verdict::{Finding, Verdict, count, of, plural, share_at_least};

pub const RULE: &str = "confirmed when handshakes refused Forbidden with Origin ≠ Host (a pair that never got through) are at least 20 % of the requests that carried an Origin (refused, and handshakes, POSTs and upgrades that passed) and come from at least 2 clients or half of those clients; isolated when fewer (a page on another site); ruled out when handshakes or other requests with an Origin succeeded and none was refused that way";
const FIX: &str = "keep the browser's Host and Origin end to end (nginx `proxy_set_header Host $http_host`, no Origin rewrite), or list the public host in THEIA_HOSTS";

const SHARE: f64 = 0.2;
const CLIENT_SHARE: f64 = 0.5;
const MIN_CLIENTS: u64 = 2;
/// (Origin, Host) pairs kept, refused and passed each.
const MAX_PAIRS: usize = 256;
/// Distinct refused origins kept by name.
const MAX_ORIGINS: usize = 64;

#[derive(Clone, Debug, Default)]
pub struct H4 {
    /// Refused, flagged `origin_host_mismatch`.
    pub refused_mismatch: u64,
    /// Refused, Origin's host:port differs from Host only by the port Host lacks.
    pub refused_port: u64,
    /// Refused with Origin and Host in agreement, or no Origin.
    pub refused_other: u64,
    pub refused_403: u64,
    pub refused_400: u64,
    /// Flagged `origin_host_mismatch`, but answered 200/101 anyway.
    pub mismatch_passed: u64,
    /// Handshakes with an Origin that succeeded (200 polling, 101 websocket-only).
    pub origin_ok: u64,
    /// Any request with an Origin equal to Host that succeeded (browsers send Origin on
    /// POSTs and websocket upgrades, not on same-origin GETs): the check passed.
    pub matching_ok: u64,
    pub clients_with_origin: Distinct,
    pub clients_refused: Distinct,
    /// Refused origin → count.
    pub refused_origins: HashMap<Box<str>, u64>,
    /// Refused (Origin, Host) pairs → count, and pairs that differ yet got through: the
    /// Origin check is the same for the same pair every time, so a refusal of a pair that
    /// also passed was another check (Theia's per-process connection token).
    pub refused_pairs: HashMap<(Box<str>, Box<str>), u64>,
    pub passed_pairs: HashSet<(Box<str>, Box<str>)>,
    pub examples: Examples,
    pub other_examples: Examples,
}

impl H4 {
    pub fn fold(&mut self, r: &Rec<'_>, pod: PodId, status: u16, maybe_refused: bool) {
        let forbidden = r.flags.has(Flags::FORBIDDEN)
            || r.error_code == Some(4)
            || (r.transport.is_some() && status == 403);
        let mismatch = r.flags.has(Flags::ORIGIN_HOST_MISMATCH);
        let client = r.remote_ip.unwrap_or("?");
        if forbidden && maybe_refused {
            let port_only =
                !mismatch && r.origin.is_some_and(|o| origin_differs_strictly(o, r.host));
            let text = format!(
                "{}; origin={} host={}",
                describe(r),
                r.origin.unwrap_or("(none)"),
                r.host.unwrap_or("(none)")
            );
            if mismatch || port_only {
                if mismatch {
                    self.refused_mismatch += 1;
                } else {
                    self.refused_port += 1;
                }
                if status == 403 {
                    self.refused_403 += 1;
                } else if status == 400 {
                    self.refused_400 += 1;
                }
                self.clients_with_origin.add(client);
                self.clients_refused.add(client);
                let pair = (
                    Box::from(r.origin.unwrap_or("")),
                    Box::from(r.host.unwrap_or("")),
                );
                if let Some(n) = self.refused_pairs.get_mut(&pair) {
                    *n += 1;
                } else if self.refused_pairs.len() < MAX_PAIRS {
                    self.refused_pairs.insert(pair, 1);
                }
                let origin = r.origin.unwrap_or("?");
                if let Some(n) = self.refused_origins.get_mut(origin) {
                    *n += 1;
                } else if self.refused_origins.len() < MAX_ORIGINS {
                    self.refused_origins.insert(Box::from(origin), 1);
                }
                self.examples.offer(r.time, || example(r, pod, text));
            } else {
                self.refused_other += 1;
                self.other_examples.offer(r.time, || example(r, pod, text));
            }
        } else if r.origin.is_some()
            && !mismatch
            && r.transport.is_some()
            && matches!(status, 200..=299 | 101)
            && !r.origin.is_some_and(|o| origin_differs_strictly(o, r.host))
        {
            self.matching_ok += 1;
            self.clients_with_origin.add(client);
        }
        // engine.io runs its allowRequest (Theia's Origin check) on handshakes only.
        if let (Some(origin), false) = (r.origin, forbidden && maybe_refused)
            && is_handshake(r, status)
            && (mismatch || origin_differs_strictly(origin, r.host))
            && self.passed_pairs.len() < MAX_PAIRS
        {
            // An Origin/Host pair that differs and still got through: the check passes it.
            self.passed_pairs
                .insert((Box::from(origin), Box::from(r.host.unwrap_or(""))));
        }
        if !(forbidden && maybe_refused) && r.origin.is_some() && is_handshake(r, status) {
            // Theia checks Origin on handshakes only: later requests of a session say nothing.
            self.origin_ok += 1;
            self.clients_with_origin.add(client);
            if mismatch {
                self.mismatch_passed += 1;
            }
        }
    }

    pub fn verdict(&self) -> Finding {
        let token: u64 = self
            .refused_pairs
            .iter()
            .filter(|(pair, _)| self.passed_pairs.contains(*pair))
            .map(|(_, n)| *n)
            .sum();
        let n = (self.refused_mismatch + self.refused_port).saturating_sub(token);
        let refused_other = self.refused_other + token;
        // Browsers send Origin on POSTs and upgrades, not on a same-origin polling GET:
        // the requests that passed with Origin equal to Host count in the denominator too.
        let with_origin = n + self.origin_ok + self.matching_ok;
        let clients = self.clients_with_origin.len();
        let refused_clients = self.clients_refused.len();
        let origin_list = self.refused_origins();
        let widespread = refused_clients >= MIN_CLIENTS
            || share_at_least(refused_clients, clients, CLIENT_SHARE);
        let mut f = if n > 0 && share_at_least(n, with_origin, SHARE) && widespread {
            self.confirmed(n, with_origin, &origin_list)
        } else if n > 0 {
            Finding::new(
                3,
                Verdict::Isolated,
                format!(
                    "{} handshakes with an Origin refused where Origin ≠ Host, from {} ({}): a page on another site, refused as it should be; {} succeeded",
                    of(n, with_origin),
                    plural(refused_clients, "client", "clients"),
                    list(&self.clients_refused, 3),
                    count(self.origin_ok)
                ),
                RULE,
                FIX,
            )
        } else {
            self.none_refused()
        };
        if f.verdict == Verdict::Isolated {
            f.details.push(format!("refused origins: {origin_list}"));
        }
        if refused_other > 0 {
            f.details.push(format!(
                "{} refused Forbidden with Origin matching Host, absent, or a pair that also got through: another check (Theia's connection-token cookie?), not this one",
                plural(refused_other, "request", "requests")
            ));
        }
        f.counts = vec![
            ("refused_origin_host_mismatch", self.refused_mismatch),
            ("refused_port_only", self.refused_port),
            ("refused_other", refused_other),
            ("refused_pair_also_passed", token),
            ("origin_ok", self.origin_ok),
            ("origin_matching_ok", self.matching_ok),
            ("mismatch_passed", self.mismatch_passed),
            ("clients_with_origin", clients),
            ("clients_refused", refused_clients),
        ];
        f.examples = if n > 0 {
            self.examples.0.clone()
        } else {
            self.other_examples.0.clone()
        };
        f
    }

    /// The refused origins, the most refused first: `https://a ×12, …`.
    fn refused_origins(&self) -> String {
        let mut origins: Vec<(&str, u64)> = self
            .refused_origins
            .iter()
            .map(|(o, n)| (&**o, *n))
            .collect();
        origins.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        origins
            .iter()
            .take(3)
            .map(|(o, n)| format!("{o} ×{}", count(*n)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Refused Forbidden for Origin ≠ Host, often and widely enough to act on.
    fn confirmed(&self, n: u64, with_origin: u64, origin_list: &str) -> Finding {
        let clients = self.clients_with_origin.len();
        let refused_clients = self.clients_refused.len();
        let mut kinds = Vec::new();
        if self.refused_403 > 0 {
            kinds.push(format!("{} × 403 polling", count(self.refused_403)));
        }
        if self.refused_400 > 0 {
            kinds.push(format!("{} × 400 websocket", count(self.refused_400)));
        }
        let mut f = Finding::new(
            3,
            Verdict::Confirmed,
            format!(
                "{} handshakes with an Origin refused Forbidden where Origin ≠ Host{}, from {} of {}",
                of(n, with_origin),
                if kinds.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", kinds.join(", "))
                },
                plural(refused_clients, "client", "clients"),
                count(clients)
            ),
            RULE,
            FIX,
        );
        if self.refused_port > 0 {
            f.details.push(format!(
                "{} of them differ only by the port that Host lacks (nginx's $host drops it; Theia compares host:port)",
                count(self.refused_port)
            ));
        }
        f.details.push(format!("refused origins: {origin_list}"));
        f
    }

    /// None refused for Origin ≠ Host: ruled out when requests with an Origin passed.
    fn none_refused(&self) -> Finding {
        if self.origin_ok > 0 || self.matching_ok > 0 {
            let mut f = Finding::new(
                3,
                Verdict::RuledOut,
                format!(
                    "{} and {} with Origin equal to Host got through (browsers send Origin on POSTs and upgrades); none refused Forbidden for an Origin/Host difference",
                    plural(
                        self.origin_ok,
                        "handshake with an Origin",
                        "handshakes with an Origin"
                    ),
                    plural(self.matching_ok, "request", "requests")
                ),
                RULE,
                FIX,
            );
            if self.mismatch_passed > 0 {
                f.details.push(format!(
                "{} passed although Origin's host differs from Host (no same-origin check upstream)",
                count(self.mismatch_passed)
            ));
            }
            f
        } else {
            Finding::new(
                3,
                Verdict::NoEvidence,
                "no handshake with an Origin in the records".to_string(),
                RULE,
                FIX,
            )
        }
    }
}

/// A handshake that succeeded: a polling handshake's 200, or a websocket-only 101.
fn is_handshake(r: &Rec<'_>, status: u16) -> bool {
    (r.handshake && status == 200) || (r.event == Event::Upgrade && r.sid.is_none())
}

/// Whether Origin's `host[:port]` differs from Host once a default port is dropped from
/// both — stricter than the `origin_host_mismatch` flag, which ignores Origin's port when
/// Host has none (Theia compares them exactly).
pub fn origin_differs_strictly(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else {
        return true;
    };
    let (scheme, rest) = origin.split_once("://").unwrap_or(("", origin));
    let authority = rest.split('/').next().unwrap_or(rest);
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" | "wss" => ":443",
        "http" | "ws" => ":80",
        _ => "",
    };
    let norm = |a: &str| {
        let a = a.to_ascii_lowercase();
        match a.strip_suffix(default) {
            Some(stripped) if !default.is_empty() => stripped.to_string(),
            _ => a,
        }
    };
    norm(authority) != norm(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_origin_comparison() {
        let cases = [
            ("http://127.0.0.1:43265", Some("127.0.0.1"), true),
            ("http://127.0.0.1:43265", Some("127.0.0.1:43265"), false),
            ("https://ide.example.com", Some("ide.example.com"), false),
            (
                "https://ide.example.com:443",
                Some("ide.example.com"),
                false,
            ),
            (
                "https://IDE.example.com",
                Some("ide.example.com:443"),
                false,
            ),
            ("http://ide.example.com", Some("ide.example.com:80"), false),
            ("http://k8s-ingress.internal", Some("127.0.0.1"), true),
            (
                "http://127.0.0.1:40441",
                Some("coditect-combined-service"),
                true,
            ),
            ("null", Some("ide.example.com"), true),
            ("https://ide.example.com", None, true),
        ];
        for (origin, host, want) in cases {
            assert_eq!(
                origin_differs_strictly(origin, host),
                want,
                "{origin} vs {host:?}"
            );
        }
    }
}
