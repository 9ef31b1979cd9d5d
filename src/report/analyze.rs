//! Folds records, in any order, into bounded state: counts per pod and overall, each pod's
//! lifecycle (starts, drains, when theia answered), and hands each record to the session
//! join and to every hypothesis' own fold (`sessions`, `h1` … `h6`). Pure.

use std::collections::HashMap;

use super::evidence::{Distinct, PodId};
use super::parse::{ClosedBy, Event, Flags, Outcome, Rec, Transport};
use super::pods::{self, CLOCK_SKEW_US, PodStats};
use super::recent::Recent;
use super::{h1, h3, h4, h5, h6, lb_join, sessions};

/// Upgrades waiting for their `tunnel_closed` (the oldest are forgotten).
pub const MAX_OPEN_TUNNELS: usize = 50_000;
/// Distinct pods tracked by name; the rest share one bucket.
pub const MAX_PODS: usize = 1024;
/// Start/drain times kept per pod.
const MAX_LIFECYCLE: usize = 64;
/// sockproxy's default `--drain-timeout`, for a `draining` record without `deadline_s`.
const DEFAULT_DRAIN_S: f64 = 25.0;
/// What the input held besides records.
#[derive(Clone, Debug, Default)]
pub struct InputStats {
    pub records: u64,
    pub by_event: [u64; Event::ALL.len()],
    pub not_json: u64,
    pub invalid_json: u64,
    pub truncated: u64,
    pub too_long: u64,
    pub not_records: u64,
}

impl InputStats {
    pub fn skipped(&self) -> u64 {
        self.not_json + self.invalid_json + self.truncated + self.too_long + self.not_records
    }
}

/// Why a line was not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skipped {
    NotJson,
    InvalidJson,
    Truncated,
    TooLong,
    NotRecord,
}

/// Handshakes, upgrades, tunnels and refusals overall.
#[derive(Clone, Debug, Default)]
pub struct Picture {
    pub handshakes_polling: u64,
    pub handshakes_ws_only: u64,
    /// Handshake attempts (no sid) that got something other than 200/101.
    pub handshakes_refused: u64,
    pub ws_attempts: u64,
    pub upgrades: u64,
    pub tunnels_closed: [u64; ClosedBy::ALL.len()],
    /// `tunnel_closed` without its `upgrade` in the records (opened before they start).
    pub closes_without_upgrade: u64,
    pub longest_tunnel_ms: Option<f64>,
    /// By engine.io code 0..=5, then "other or none".
    pub refusals_by_code: [u64; 7],
    /// No answer, 1xx .. 5xx.
    pub status_classes: [u64; 6],
    pub polls_aborted: u64,
    pub upstream_errors: u64,
    pub records_dropped: u64,
    pub startup_failed: u64,
    /// Requests sockproxy refused itself (`client_error`: 400/431, head timeouts).
    pub client_errors: u64,
    /// Times `--max-connections` was reached (`connection_limit`).
    pub connection_limits: u64,
    /// Distinct clients (the load balancer's `remoteIp`) of socket.io requests.
    pub clients: Distinct,
}

/// Everything the report knows so far.
#[derive(Debug)]
pub struct Analyzer {
    pub input: InputStats,
    pub pods: Vec<PodStats>,
    pod_index: HashMap<String, PodId>,
    last_pod: PodId,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub picture: Picture,
    pub sessions: sessions::Sessions,
    pub h1: h1::H1,
    pub h3: h3::H3,
    pub h4: h4::H4,
    pub h5: h5::H5,
    pub h6: h6::H6,
    /// The load balancer's entries and sockproxy's side of each trace (`lb_join`).
    pub lb: lb_join::LbJoin,
    open_tunnels: Recent<(PodId, Box<str>), ()>,
    /// `tunnel_closed` records read before their `upgrade` (newest-first exports).
    /// (value: whether the close counted a websocket-only handshake).
    closed_early: Recent<(PodId, Box<str>), bool>,
}

impl Default for Analyzer {
    fn default() -> Analyzer {
        Analyzer {
            input: InputStats::default(),
            pods: Vec::new(),
            pod_index: HashMap::new(),
            last_pod: 0,
            first: None,
            last: None,
            picture: Picture::default(),
            sessions: sessions::Sessions::default(),
            h1: h1::H1::default(),
            h3: h3::H3::default(),
            h4: h4::H4::default(),
            h5: h5::H5::default(),
            h6: h6::H6::default(),
            lb: lb_join::LbJoin::default(),
            open_tunnels: Recent::new(MAX_OPEN_TUNNELS / 2),
            closed_early: Recent::new(MAX_OPEN_TUNNELS / 2),
        }
    }
}

impl Analyzer {
    pub fn new() -> Analyzer {
        Analyzer::default()
    }

    /// Tunnels whose `upgrade` is in the records but not their `tunnel_closed`.
    pub fn open_tunnels(&self) -> u64 {
        self.open_tunnels.len() as u64
    }

    /// Sessions dropped from the join table to bound memory.
    pub fn sids_forgotten(&self) -> u64 {
        self.sessions.forgotten()
    }

    /// Upgrades dropped while waiting for their close, to bound memory.
    pub fn open_tunnels_forgotten(&self) -> u64 {
        self.open_tunnels.forgotten
    }

    pub fn skipped(&mut self, why: Skipped) {
        let i = &mut self.input;
        match why {
            Skipped::NotJson => i.not_json += 1,
            Skipped::InvalidJson => i.invalid_json += 1,
            Skipped::Truncated => i.truncated += 1,
            Skipped::TooLong => i.too_long += 1,
            Skipped::NotRecord => i.not_records += 1,
        }
    }

    pub fn pod_name(&self, pod: PodId) -> &str {
        pods::name(&self.pods, pod)
    }

    fn pod_id(&mut self, name: &str) -> PodId {
        // Records of one pod usually come in runs.
        if let Some(p) = self.pods.get(self.last_pod as usize)
            && p.name == name
        {
            return self.last_pod;
        }
        if let Some(&id) = self.pod_index.get(name) {
            self.last_pod = id;
            return id;
        }
        let name = if self.pods.len() >= MAX_PODS - 1 {
            "(other pods)"
        } else {
            name
        };
        if let Some(&id) = self.pod_index.get(name) {
            return id;
        }
        let id = self.pods.len() as PodId;
        self.pods.push(PodStats::named(name));
        self.pod_index.insert(name.to_string(), id);
        self.last_pod = id;
        id
    }

    /// Folds one record in; `fallback_pod` names its pod when the record does not.
    pub fn record(&mut self, r: &Rec<'_>, fallback_pod: &str) {
        let pod = self.pod_id(r.pod.unwrap_or(fallback_pod));
        self.input.records += 1;
        self.input.by_event[Event::ALL.iter().position(|e| *e == r.event).unwrap_or(0)] += 1;
        if let Some(t) = r.time {
            self.first = Some(self.first.map_or(t, |f| f.min(t)));
            self.last = Some(self.last.map_or(t, |l| l.max(t)));
        }
        let p = &mut self.pods[pod as usize];
        p.records += 1;
        if p.ip.is_none()
            && let Some(ip) = r.pod_ip
        {
            p.ip = Some(Box::from(ip));
        }
        if let Some(t) = r.time {
            p.first = Some(p.first.map_or(t, |f| f.min(t)));
            p.last = Some(p.last.map_or(t, |l| l.max(t)));
        }
        self.lb.record(r, pod);
        match r.event {
            Event::Request | Event::Upgrade => self.exchange(r, pod),
            Event::TunnelClosed => self.tunnel_closed(r, pod),
            Event::Listening => {
                if let Some(t) = r.time {
                    push_capped(&mut self.pods[pod as usize].starts, t);
                }
            }
            Event::Draining => {
                if let Some(t) = r.time {
                    let p = &mut self.pods[pod as usize];
                    push_capped(&mut p.drains, t);
                    if p.drain_windows.len() < MAX_LIFECYCLE {
                        let deadline = r.deadline_s.filter(|d| d.is_finite() && *d >= 0.0);
                        let us = (deadline.unwrap_or(DEFAULT_DRAIN_S).min(86_400.0) * 1e6) as i64;
                        // From a little before the record: as a native sidecar, sockproxy
                        // gets SIGTERM only after theia has begun closing.
                        p.drain_windows
                            .push((t - CLOCK_SKEW_US, t + us + CLOCK_SKEW_US));
                    }
                }
                self.h5.draining(r, pod);
            }
            Event::Stopped => self.h5.stopped(r, pod),
            Event::RecordsDropped => self.picture.records_dropped += r.count.unwrap_or(0),
            Event::StartupFailed => self.picture.startup_failed += 1,
            Event::ClientError => self.picture.client_errors += 1,
            Event::ConnectionLimit => self.picture.connection_limits += 1,
            Event::Other => {}
        }
    }

    fn exchange(&mut self, r: &Rec<'_>, pod: PodId) {
        let status = r.status.unwrap_or(0);
        let upgraded = r.event == Event::Upgrade;
        let class = if status == 0 {
            0
        } else {
            (status / 100).clamp(1, 5) as usize
        };
        self.picture.status_classes[class] += 1;
        let is_ws = r.transport == Some(Transport::Websocket);
        let sio = r.transport.is_some();
        let refused = sio && (400..500).contains(&status);
        // sockproxy's own 502/504 (or no answer) mean theia failed it; its own 4xx (405 for
        // CONNECT, 400 for chunked twice) refuse the client and say nothing about theia.
        let upstream_failed = r.flags.has(Flags::UPSTREAM_UNREACHABLE)
            || (r.upstream_error.is_some() && (status == 0 || status >= 500));
        self.pod_counts(r, pod, status, refused, upstream_failed);
        if sio && let Some(ip) = r.remote_ip {
            self.picture.clients.add(ip);
        }
        if is_ws {
            self.picture.ws_attempts += 1;
        }
        if upgraded {
            self.picture.upgrades += 1;
            self.pair_upgrade(r, pod);
        }
        if sio && r.sid.is_none() || r.handshake {
            self.handshake(r, pod, status, upgraded);
        }
        if refused {
            let code = r.error_code.filter(|c| (0..=5).contains(c)).unwrap_or(6);
            self.picture.refusals_by_code[code as usize] += 1;
        }
        let aborted_poll = r.flags.has(Flags::POLL_ABORTED)
            || (r.transport == Some(Transport::Polling)
                && r.method == Some("GET")
                && r.sid.is_some()
                && !r.handshake
                && r.outcome == Outcome::ClientAborted);
        if aborted_poll {
            self.picture.polls_aborted += 1;
        }
        if upstream_failed {
            self.picture.upstream_errors += 1;
        }

        self.h1.fold(r, pod);
        self.sessions.fold(r, pod, aborted_poll);
        self.h3.fold(r, pod, status);
        self.h4.fold(r, pod, status, refused || status == 403);
        self.h5.fold(
            r,
            pod,
            upstream_failed,
            r.flags.has(Flags::UPSTREAM_UNREACHABLE),
        );
        if aborted_poll {
            self.h6.poll_cut(r, pod);
        }
    }

    /// The pod's own counts of one exchange, and when theia answered on it.
    fn pod_counts(
        &mut self,
        r: &Rec<'_>,
        pod: PodId,
        status: u16,
        refused: bool,
        upstream_failed: bool,
    ) {
        let (is_ws, upgraded) = (
            r.transport == Some(Transport::Websocket),
            r.event == Event::Upgrade,
        );
        let p = &mut self.pods[pod as usize];
        if is_ws {
            p.ws_attempts += 1;
        }
        if upgraded {
            p.upgrades += 1;
        }
        if refused {
            p.refusals += 1;
        }
        if status >= 500 || r.outcome == Outcome::UpstreamError {
            p.server_errors += 1;
        }
        if status > 0
            && !upstream_failed
            && let Some(t) = r.time
        {
            p.answered(t);
        }
    }

    /// An `upgrade` waits for its `tunnel_closed`, or completes one read before it.
    fn pair_upgrade(&mut self, r: &Rec<'_>, pod: PodId) {
        if let Some(id) = r.id {
            let key = (pod, Box::from(id));
            if let Some(counted) = self.closed_early.remove(&key) {
                // Its close came first: the pair is whole, and counted once.
                self.picture.closes_without_upgrade =
                    self.picture.closes_without_upgrade.saturating_sub(1);
                if counted {
                    self.picture.handshakes_ws_only =
                        self.picture.handshakes_ws_only.saturating_sub(1);
                    let p = &mut self.pods[pod as usize];
                    p.handshakes = p.handshakes.saturating_sub(1);
                }
            } else {
                self.open_tunnels.entry(&key, |k| k.clone(), || ());
            }
        }
    }

    /// A handshake attempt: a polling GET without sid, or a websocket-only upgrade.
    fn handshake(&mut self, r: &Rec<'_>, pod: PodId, status: u16, upgraded: bool) {
        if r.handshake && status == 200 {
            self.picture.handshakes_polling += 1;
            self.pods[pod as usize].handshakes += 1;
        } else if upgraded {
            self.picture.handshakes_ws_only += 1;
            self.pods[pod as usize].handshakes += 1;
        } else if status != 200 && r.method == Some("GET") {
            self.picture.handshakes_refused += 1;
        }
    }

    fn tunnel_closed(&mut self, r: &Rec<'_>, pod: PodId) {
        self.pods[pod as usize].tunnels_closed += 1;
        let by = r.closed_by;
        self.picture.tunnels_closed[ClosedBy::ALL
            .iter()
            .position(|c| *c == by)
            .unwrap_or(ClosedBy::ALL.len() - 1)] += 1;
        let matched =
            r.id.is_some_and(|id| self.open_tunnels.remove(&(pod, Box::from(id))).is_some());
        let ws_only = r.url_has_sid == Some(false) && !matched;
        if ws_only {
            // A websocket-only session whose upgrade is not in the records: still a handshake.
            self.picture.handshakes_ws_only += 1;
            self.pods[pod as usize].handshakes += 1;
        }
        if !matched {
            self.picture.closes_without_upgrade += 1;
            if let Some(id) = r.id {
                *self
                    .closed_early
                    .entry(&(pod, Box::from(id)), |k| k.clone(), || false) = ws_only;
            }
        }
        let ms = r.duration_ms.unwrap_or(0.0);
        if by == ClosedBy::Shutdown {
            self.h5.tunnel_cut(r, pod, ms);
            return;
        }
        if self.picture.longest_tunnel_ms.is_none_or(|l| ms > l) {
            self.picture.longest_tunnel_ms = Some(ms);
        }
        self.h6.tunnel_closed(r, pod, ms);
    }
}

fn push_capped(v: &mut Vec<i64>, t: i64) {
    if v.len() < MAX_LIFECYCLE {
        v.push(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockproxy_refusing_a_client_is_not_theia_failing() {
        use super::super::parse::{Parsed, parse};
        let lines = [
            (
                r#"{"time":"2026-11-25T12:00:01.000000Z","event":"request","pod":"a","id":"1","method":"CONNECT","path":"x:443","status":405,"upstream_error":"CONNECT is not proxied","outcome":"upstream_error"}"#,
                0,
            ),
            (
                r#"{"time":"2026-11-25T12:00:02.000000Z","event":"request","pod":"a","id":"2","method":"GET","path":"/socket.io/","sio":{"transport":"polling"},"status":502,"upstream_error":"connect: connection refused","outcome":"upstream_error","flags":["upstream_unreachable"]}"#,
                1,
            ),
            (
                r#"{"time":"2026-11-25T12:00:03.000000Z","event":"request","pod":"a","id":"3","method":"GET","path":"/socket.io/","sio":{"transport":"polling"},"status":504,"upstream_error":"no answer within 30s","outcome":"upstream_error"}"#,
                2,
            ),
        ];
        let mut a = Analyzer::new();
        for (line, want) in lines {
            let Parsed::Record(raw) = parse(line.as_bytes()) else {
                panic!("not a record: {line}");
            };
            a.record(&super::super::parse::Rec::of(&raw).expect("a record"), "?");
            assert_eq!(a.picture.upstream_errors, want, "{line}");
            assert_eq!(a.h5.upstream_failures.len() as u64, want, "{line}");
        }
    }
}
