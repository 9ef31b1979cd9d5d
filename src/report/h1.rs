//! H1, Upgrade headers stripped: its state, its fold over records and its rule. Pure.
//!
//! The protocol fact it rests on: a browser's websocket attempt always carries
//! `Sec-WebSocket-Key` and `Sec-WebSocket-Version` (RFC 6455 §4.1), and those are
//! end-to-end headers that proxies pass on. `Upgrade` and `Connection` are hop-by-hop:
//! every hop must pass them on by hand (nginx: `proxy_set_header`). So a request that has
//! the key but reached theia without `Upgrade` (or without `upgrade` in `Connection`)
//! proves a hop stripped them; one without the key is not a browser's upgrade at all
//! (scanners, bots), and says nothing about the path. A request that reached theia as
//! HTTP/1.0 cannot upgrade either: nginx's default `proxy_http_version` is 1.0.

use super::evidence::{Distinct, Examples, PodId, describe, example, list};
use super::parse::{Event, Flags, Rec, Transport};
use super::pods::{self, PodStats};
use super::verdict::{Finding, Verdict, count, of, plural, share_at_least};

pub const RULE: &str = "confirmed when browser websocket attempts (with Sec-WebSocket-Key) reached theia without Upgrade or `Connection: upgrade` from at least half of the clients that attempted one (and ≥ 20 % of all attempts), or for at least half of one pod's attempts from ≥ 2 clients (≥ 2 attempts either way); isolated when fewer; requests without Sec-WebSocket-Key are not browsers and never count";
const FIX: &str = "pass Upgrade and Connection through every hop: nginx `proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade;` (GKE's load balancer forwards websockets by itself)";

/// Share of the attempting clients (or of one pod's attempts) that must show stripping.
const SHARE: f64 = 0.5;
/// Share of all browser attempts that must be stripped as well.
const ATTEMPT_SHARE: f64 = 0.2;
/// Stripped attempts needed before the share counts.
const MIN_STRIPPED: u64 = 2;

/// One pod's browser attempts, and who lost the headers there.
#[derive(Clone, Debug, Default)]
pub struct PodTally {
    pub attempts: u64,
    pub stripped: u64,
    /// The first client whose attempt was stripped on this pod, and whether another did.
    pub first_client: Option<Box<str>>,
    pub several_clients: bool,
}

#[derive(Clone, Debug, Default)]
pub struct H1 {
    /// Browser websocket attempts: websocket requests with Sec-WebSocket-Key, or upgraded.
    pub attempts: u64,
    /// Upgrades (101).
    pub upgraded: u64,
    /// Browser attempts that arrived without Upgrade or without `Connection: upgrade`.
    pub stripped: u64,
    pub missing_upgrade: u64,
    pub missing_connection: u64,
    /// Of the stripped: arrived as HTTP/1.0 (nginx's default `proxy_http_version 1.0`).
    pub http10: u64,
    /// Of the stripped: arrived with `Connection: close` (what nginx sends when no
    /// `proxy_set_header Connection` is configured).
    pub connection_close: u64,
    pub got_400: u64,
    pub code3: u64,
    /// Websocket requests with neither Upgrade nor Sec-WebSocket-Key: not a browser.
    pub not_browser: u64,
    pub clients_attempting: Distinct,
    pub clients_stripped: Distinct,
    /// Per pod (indexed by `PodId`).
    pub by_pod: Vec<PodTally>,
    pub examples: Examples,
    pub not_browser_examples: Examples,
}

impl H1 {
    pub fn fold(&mut self, r: &Rec<'_>, pod: PodId) {
        if r.transport != Some(Transport::Websocket) {
            return;
        }
        let upgraded = r.event == Event::Upgrade;
        let missing_upgrade = r.flags.has(Flags::UPGRADE_HEADER_MISSING) || r.upgrade.is_none();
        let missing_connection = !missing_upgrade
            && (r.flags.has(Flags::CONNECTION_UPGRADE_MISSING)
                || !r.connection.is_some_and(crate::flags::has_upgrade_token));
        let stripped = !upgraded && (missing_upgrade || missing_connection);
        if !upgraded && !r.ws_key {
            if r.upgrade.is_none() {
                self.not_browser += 1;
                let text = format!(
                    "{}; no Upgrade, no Sec-WebSocket-Key; user-agent {}",
                    describe(r),
                    r.user_agent.unwrap_or("(none)")
                );
                self.not_browser_examples
                    .offer(r.time, || example(r, pod, text));
            }
            return;
        }
        self.attempts += 1;
        let client = r.remote_ip.unwrap_or("?");
        self.clients_attempting.add(client);
        let i = pod as usize;
        if self.by_pod.len() <= i {
            self.by_pod.resize_with(i + 1, PodTally::default);
        }
        self.by_pod[i].attempts += 1;
        if upgraded {
            self.upgraded += 1;
            return;
        }
        if !stripped {
            return;
        }
        self.stripped += 1;
        let t = &mut self.by_pod[i];
        t.stripped += 1;
        match &t.first_client {
            None => t.first_client = Some(Box::from(client)),
            Some(first) => t.several_clients |= **first != *client,
        }
        self.clients_stripped.add(client);
        if missing_upgrade {
            self.missing_upgrade += 1;
        } else {
            self.missing_connection += 1;
        }
        if r.protocol == Some("HTTP/1.0") {
            self.http10 += 1;
        }
        if r.connection
            .is_some_and(|c| c.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
        {
            self.connection_close += 1;
        }
        if r.status == Some(400) {
            self.got_400 += 1;
            if r.error_code == Some(3) {
                self.code3 += 1;
            }
        }
        let text = format!(
            "{}; upgrade={} connection={} client {client}",
            describe(r),
            r.upgrade.unwrap_or("(none)"),
            r.connection.unwrap_or("(none)")
        );
        self.examples.offer(r.time, || example(r, pod, text));
    }

    /// The pod whose attempts were stripped at least half the time, from more than one
    /// client (one client's proxy can land on a new pod first), if any.
    fn stripping_pod(&self) -> Option<(usize, u64, u64)> {
        self.by_pod
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.stripped >= MIN_STRIPPED
                    && share_at_least(t.stripped, t.attempts, SHARE)
                    && t.several_clients
            })
            .max_by_key(|(_, t)| t.stripped)
            .map(|(i, t)| (i, t.stripped, t.attempts))
    }

    pub fn verdict(&self, pods: &[PodStats]) -> Finding {
        let clients = self.clients_attempting.len();
        let stripped_clients = self.clients_stripped.len();
        let what = match (self.missing_upgrade > 0, self.missing_connection > 0) {
            (true, false) => "without Upgrade",
            (false, _) => "with Upgrade but no `Connection: upgrade`",
            (true, true) => "without Upgrade or without `Connection: upgrade`",
        };
        let headline = format!(
            "{} browser websocket attempts (from {} of {}) arrived {what}",
            of(self.stripped, self.attempts),
            plural(stripped_clients, "client", "clients"),
            count(clients),
        );
        // Both shares: where every client shows up under one address (no X-Forwarded-For),
        // the client share alone would make one client's proxy look like everyone's.
        let by_clients = self.stripped >= MIN_STRIPPED
            && share_at_least(stripped_clients, clients, SHARE)
            && share_at_least(self.stripped, self.attempts, ATTEMPT_SHARE);
        let pod = self.stripping_pod();
        let mut f = if self.stripped > 0 && (by_clients || pod.is_some()) {
            self.confirmed(headline, by_clients, pod, pods)
        } else if self.stripped > 0 {
            self.isolated(headline)
        } else {
            self.unstripped()
        };
        self.side_notes(&mut f);
        f.counts = vec![
            ("browser_ws_attempts", self.attempts),
            ("upgraded", self.upgraded),
            // The name before `upgraded` (kept for scripts that read it).
            ("upgraded_with_headers", self.upgraded),
            ("stripped", self.stripped),
            ("upgrade_header_missing", self.missing_upgrade),
            ("connection_upgrade_missing", self.missing_connection),
            ("http10", self.http10),
            ("connection_close", self.connection_close),
            ("refused_400", self.got_400),
            ("code_3", self.code3),
            ("clients_attempting", clients),
            ("clients_stripped", stripped_clients),
            ("not_browser", self.not_browser),
        ];
        f.examples = if self.stripped > 0 {
            self.examples.0.clone()
        } else {
            self.not_browser_examples.0.clone()
        };
        f
    }

    /// Stripped for enough clients, or on one pod: `pod` is the pod that strips most.
    fn confirmed(
        &self,
        headline: String,
        by_clients: bool,
        pod: Option<(usize, u64, u64)>,
        pods: &[PodStats],
    ) -> Finding {
        let mut s = headline;
        if self.got_400 > 0 {
            s.push_str(&format!(
                "; {} got 400{}",
                count(self.got_400),
                if self.code3 > 0 {
                    format!(" ({} × code 3 Bad request)", count(self.code3))
                } else {
                    String::new()
                }
            ));
        }
        let mut f = Finding::new(0, Verdict::Confirmed, s, RULE, FIX);
        if let (false, Some((p, s, n))) = (by_clients, pod) {
            f.details.push(format!(
                "on {}: {} attempts stripped — that pod's path (its nginx?) drops the headers",
                pods::name(pods, p as u32),
                of(s, n)
            ));
        }
        if self.upgraded > 0 {
            f.details.push(format!(
                "{} did arrive with both headers and got 101: some path keeps them, another drops them",
                plural(self.upgraded, "upgrade", "upgrades")
            ));
        }
        f
    }

    /// Stripped, but for too few attempts or clients.
    fn isolated(&self, headline: String) -> Finding {
        let why = if self.stripped < MIN_STRIPPED {
            format!(
                "one attempt is too few to act on; {} upgraded",
                count(self.upgraded)
            )
        } else {
            format!(
                "{} upgraded: the path to theia keeps the headers, a proxy on those clients' side drops them",
                count(self.upgraded)
            )
        };
        let mut f = Finding::new(
            0,
            Verdict::Isolated,
            format!("{headline}; {why}"),
            RULE,
            FIX,
        );
        f.details.push(format!(
            "clients whose attempts lost the headers: {}",
            list(&self.clients_stripped, 5)
        ));
        f
    }

    /// Nothing stripped: ruled out when attempts upgraded, else no evidence.
    fn unstripped(&self) -> Finding {
        if self.upgraded > 0 {
            Finding::new(
                0,
                Verdict::RuledOut,
                format!(
                    "{} of {} browser websocket attempts came with Upgrade and `Connection: upgrade` and got 101",
                    count(self.upgraded),
                    count(self.attempts)
                ),
                RULE,
                FIX,
            )
        } else if self.attempts > 0 {
            Finding::new(
                0,
                Verdict::NoEvidence,
                format!(
                    "{} seen, none upgraded and none without Upgrade",
                    plural(
                        self.attempts,
                        "browser websocket attempt",
                        "browser websocket attempts"
                    )
                ),
                RULE,
                FIX,
            )
        } else {
            Finding::new(
                0,
                Verdict::NoEvidence,
                "no browser websocket attempt in the records".to_string(),
                RULE,
                FIX,
            )
        }
    }

    /// What else the stripped attempts show (HTTP/1.0, `Connection: close`, non-browsers).
    fn side_notes(&self, f: &mut Finding) {
        if self.http10 > 0 {
            f.details.push(format!(
                "{} reached theia as HTTP/1.0, which cannot upgrade: nginx's default `proxy_http_version 1.0` (set `proxy_http_version 1.1`)",
                plural(self.http10, "stripped attempt", "stripped attempts")
            ));
        }
        if self.connection_close > 0 {
            f.details.push(format!(
                "{} arrived with `Connection: close`: nginx sends that when `proxy_set_header Connection` is missing, and its `$connection_upgrade` map sends it when Upgrade was lost before nginx",
                plural(self.connection_close, "stripped attempt", "stripped attempts")
            ));
        }
        if self.not_browser > 0 {
            f.details.push(format!(
                "{} without Upgrade and without Sec-WebSocket-Key: not a browser's upgrade (scanners, bots), not counted",
                plural(self.not_browser, "websocket request", "websocket requests")
            ));
        }
    }
}
