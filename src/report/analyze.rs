//! Folds records, in any order, into bounded state: counts per pod and overall, the joins
//! (a sid's handshake with its later requests on any pod; a tunnel with its close) and
//! what each hypothesis' rule reads. Pure.

use std::collections::HashMap;

use super::parse::{ClosedBy, Event, Flags, Outcome, Rec, Transport};
use super::recent::Recent;

pub type PodId = u32;

/// How many examples each piece of evidence keeps (the earliest by time).
pub const MAX_EXAMPLES: usize = 3;
/// Sessions remembered for the cross-pod join (the least recently used are forgotten).
pub const MAX_SIDS: usize = 100_000;
/// Upgrades waiting for their `tunnel_closed` (the oldest are forgotten).
pub const MAX_OPEN_TUNNELS: usize = 50_000;
/// Distinct pods tracked by name; the rest share one bucket.
pub const MAX_PODS: usize = 1024;
/// Joined observations kept whole for the verdicts (the rest are only counted).
pub const MAX_JOINED: usize = 2048;
/// Start/drain times kept per pod.
const MAX_LIFECYCLE: usize = 64;

/// One record quoted as evidence.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub time: Option<i64>,
    pub pod: PodId,
    pub id: Option<String>,
    pub text: String,
}

/// The earliest few examples (by time; records without one come last, in input order).
#[derive(Clone, Debug, Default)]
pub struct Examples(pub Vec<Example>);

impl Examples {
    pub fn offer(&mut self, time: Option<i64>, make: impl FnOnce() -> Example) {
        let key = |t: Option<i64>| t.unwrap_or(i64::MAX);
        if self.0.len() >= MAX_EXAMPLES {
            match self.0.last() {
                Some(last) if key(time) < key(last.time) => {
                    self.0.pop();
                }
                _ => return,
            }
        }
        let e = make();
        let at = self.0.partition_point(|x| key(x.time) <= key(e.time));
        self.0.insert(at, e);
    }
}

#[derive(Clone, Debug, Default)]
pub struct PodStats {
    pub name: String,
    pub records: u64,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub handshakes: u64,
    pub ws_attempts: u64,
    pub upgrades: u64,
    /// 4xx answers on socket.io paths.
    pub refusals: u64,
    /// 5xx answers and exchanges that got no answer from theia.
    pub server_errors: u64,
    pub tunnels_closed: u64,
    /// `listening` times (the first is the start; later ones are restarts).
    pub starts: Vec<i64>,
    pub drains: Vec<i64>,
}

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
}

/// H1: websocket requests without Upgrade, or Upgrade without `Connection: upgrade`.
#[derive(Clone, Debug, Default)]
pub struct H1 {
    pub missing_upgrade: u64,
    pub missing_connection: u64,
    /// Of those, how many got a 400, and how many of those were engine.io code 3.
    pub got_400: u64,
    pub code3: u64,
    /// Upgrades (101) whose request carried Upgrade and `Connection: upgrade`.
    pub upgraded_with_headers: u64,
    pub examples: Examples,
}

/// A sid issued on one pod and used on another.
#[derive(Clone, Debug, PartialEq)]
pub struct Cross {
    pub sid: String,
    pub issued_pod: PodId,
    pub issued_at: Option<i64>,
    pub pod: PodId,
    pub at: Option<i64>,
    pub id: Option<String>,
    pub refused: bool,
    pub what: String,
}

/// A sid refused ("Session ID unknown") on the pod that issued it.
#[derive(Clone, Debug, PartialEq)]
pub struct SamePod {
    pub sid: String,
    pub pod: PodId,
    pub issued_at: Option<i64>,
    pub at: Option<i64>,
    pub id: Option<String>,
    /// A long-poll of this sid cut on this pod before the refusal: (when, how long it was held).
    pub cut_poll: Option<(Option<i64>, f64)>,
}

/// H2 (and the joins H5 and H6 read): sids by the pod that issued them.
#[derive(Clone, Debug, Default)]
pub struct H2 {
    pub issued: u64,
    /// Sessions whose later requests all stayed on the issuing pod.
    pub stayed: u64,
    /// Later requests (and upgrades) of a session on the pod that issued it.
    pub stayed_uses: u64,
    pub crosses: Vec<Cross>,
    pub crosses_not_kept: u64,
    pub same_pod: Vec<SamePod>,
    pub same_pod_not_kept: u64,
    /// Sids refused with `Session ID unknown` that no record shows being issued.
    pub unjoined: u64,
    pub unjoined_examples: Vec<(String, Example)>,
    pub sid_unknown: u64,
    /// `Session ID unknown` refusals on a pod other than the one that issued the sid.
    pub foreign_refusals: u64,
}

/// H3: health-check requests and what they got.
#[derive(Clone, Debug, Default)]
pub struct H3 {
    pub checks: u64,
    pub ok: u64,
    pub failed: u64,
    /// (agent, path, status) → count, the first few distinct.
    pub outcomes: Vec<(String, String, u16, u64)>,
    pub examples: Examples,
}

/// H4: refusals (403 / code 4 / `Forbidden`) and whether Origin and Host disagreed.
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
    pub examples: Examples,
    pub other_examples: Examples,
}

/// H5: shutdowns, what they cut, and 5xx from sockproxy itself.
#[derive(Clone, Debug, Default)]
pub struct H5 {
    pub drains: u64,
    pub stops: u64,
    pub stops_cut_short: u64,
    pub shutdown_tunnels: u64,
    /// Sum of `stopped.tunnels_closed_by_shutdown`.
    pub stopped_tunnels: u64,
    pub shutdown_requests: u64,
    pub examples: Examples,
    /// Exchanges sockproxy answered itself (theia unreachable): pod, time, example.
    pub upstream_failures: Vec<(PodId, Option<i64>, Example)>,
    pub upstream_failures_not_kept: u64,
}

/// Log-spaced bins of lifetimes from 1 s: each bin is 0.25 % wider than the last.
pub const BIN_RATIO: f64 = 1.0025;
pub const BINS: usize = 4900;
/// Shorter lifetimes say nothing about a load balancer's timeout (GKE's minimum is 1 s).
pub const MIN_LIFETIME_MS: f64 = 1000.0;

pub fn bin_of(ms: f64) -> usize {
    ((ms / 1000.0).ln() / BIN_RATIO.ln())
        .floor()
        .clamp(0.0, (BINS - 1) as f64) as usize
}

/// H6: lifetimes of tunnels that ended on their own and of long-polls cut by the client.
#[derive(Clone, Debug)]
pub struct H6 {
    pub tunnels: Vec<u32>,
    pub polls: Vec<u32>,
    pub min_ms: Vec<f32>,
    pub max_ms: Vec<f32>,
    pub examples: HashMap<u32, Examples>,
    pub longest_tunnel: Option<(f64, Example)>,
}

impl Default for H6 {
    fn default() -> H6 {
        H6 {
            tunnels: vec![0; BINS],
            polls: vec![0; BINS],
            min_ms: vec![f32::INFINITY; BINS],
            max_ms: vec![0.0; BINS],
            examples: HashMap::new(),
            longest_tunnel: None,
        }
    }
}

/// What a request was, compactly, to describe it later.
#[derive(Clone, Copy, Debug)]
struct What {
    /// 0 other, 1 GET, 2 POST.
    method: u8,
    transport: Option<Transport>,
    status: u16,
    code: Option<i16>,
}

impl What {
    fn of(r: &Rec<'_>) -> What {
        What {
            method: match r.method {
                Some("GET") => 1,
                Some("POST") => 2,
                _ => 0,
            },
            transport: r.transport,
            status: r.status.unwrap_or(0),
            code: r.error_code.map(|c| c.clamp(-1, 99) as i16),
        }
    }

    fn describe(self) -> String {
        let t = self.transport.map_or("-", Transport::name);
        let method = ["?", "GET", "POST"][usize::from(self.method.min(2))];
        let mut s = format!("{method} {t} {}", status_text(self.status));
        if let Some(c) = self.code {
            let m = crate::sio::ERROR_MESSAGES
                .get(c as usize)
                .copied()
                .unwrap_or("error");
            s.push_str(&format!(" {m} (code {c})"));
        }
        s
    }
}

/// One use of a sid, as kept in the join table.
#[derive(Clone, Debug)]
struct Hit {
    pod: PodId,
    at: Option<i64>,
    id: Option<Box<str>>,
    refused: bool,
    what: What,
    /// Refusals of this sid on this pod so far.
    refusals: u32,
    /// Uses of this sid on this pod so far.
    uses: u32,
}

/// One use of a sid, borrowed from the record at hand.
#[derive(Clone, Copy)]
struct HitRef<'a> {
    pod: PodId,
    at: Option<i64>,
    id: Option<&'a str>,
    refused: bool,
    what: What,
}

impl Hit {
    fn as_ref(&self) -> HitRef<'_> {
        HitRef {
            pod: self.pod,
            at: self.at,
            id: self.id.as_deref(),
            refused: self.refused,
            what: self.what,
        }
    }
}

const CROSSED: u8 = 1;
const STAYED: u8 = 2;
const UNJOINED: u8 = 4;
const SAME_POD_NOTED: u8 = 8;

#[derive(Clone, Debug, Default)]
struct SidEntry {
    issued: Option<(PodId, Option<i64>)>,
    /// The first hit on each of up to two pods (a refusal replaces a plain hit).
    seen: [Option<Hit>; 2],
    cut_poll: Option<(PodId, Option<i64>, f64)>,
    state: u8,
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
    pub h1: H1,
    pub h2: H2,
    pub h3: H3,
    pub h4: H4,
    pub h5: H5,
    pub h6: H6,
    sids: Recent<Box<str>, SidEntry>,
    open_tunnels: Recent<(PodId, Box<str>), ()>,
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
            h1: H1::default(),
            h2: H2::default(),
            h3: H3::default(),
            h4: H4::default(),
            h5: H5::default(),
            h6: H6::default(),
            sids: Recent::new(MAX_SIDS / 2),
            open_tunnels: Recent::new(MAX_OPEN_TUNNELS / 2),
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
        self.sids.forgotten
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
        self.pods.get(pod as usize).map_or("?", |p| p.name.as_str())
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
        self.pods.push(PodStats {
            name: name.to_string(),
            ..PodStats::default()
        });
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
        if let Some(t) = r.time {
            p.first = Some(p.first.map_or(t, |f| f.min(t)));
            p.last = Some(p.last.map_or(t, |l| l.max(t)));
        }
        match r.event {
            Event::Request | Event::Upgrade => self.exchange(r, pod),
            Event::TunnelClosed => self.tunnel_closed(r, pod),
            Event::Listening => {
                if let Some(t) = r.time {
                    push_capped(&mut self.pods[pod as usize].starts, t);
                }
            }
            Event::Draining => {
                self.h5.drains += 1;
                if let Some(t) = r.time {
                    push_capped(&mut self.pods[pod as usize].drains, t);
                }
                if r.open_tunnels.unwrap_or(0) > 0 {
                    let text = format!(
                        "draining with {} tunnel(s) open, deadline {}s",
                        r.open_tunnels.unwrap_or(0),
                        r.deadline_s.map_or("?".to_string(), |d| format!("{d}"))
                    );
                    self.h5.examples.offer(r.time, || example(r, pod, text));
                }
            }
            Event::Stopped => {
                self.h5.stops += 1;
                let cut = r.tunnels_closed_by_shutdown.unwrap_or(0);
                self.h5.stopped_tunnels += cut;
                if r.drained == Some(false) || cut > 0 {
                    self.h5.stops_cut_short += 1;
                    let text =
                        format!("stopped, drain cut short: {cut} tunnel(s) closed by shutdown");
                    self.h5.examples.offer(r.time, || example(r, pod, text));
                }
            }
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
        {
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
        }
        if is_ws {
            self.picture.ws_attempts += 1;
        }
        if upgraded {
            self.picture.upgrades += 1;
            if let Some(id) = r.id {
                self.open_tunnel(pod, id);
            }
        }
        if sio && r.sid.is_none() || r.handshake {
            // A handshake attempt: a polling GET without sid, or a websocket-only upgrade.
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
        let upstream_failed =
            r.flags.has(Flags::UPSTREAM_UNREACHABLE) || r.upstream_error.is_some();
        if upstream_failed {
            self.picture.upstream_errors += 1;
        }

        self.h1(r, pod, upgraded);
        self.sessions(r, pod, aborted_poll);
        self.h3(r, pod, status);
        self.h4(r, pod, status, refused || status == 403);
        if r.outcome == Outcome::Shutdown {
            self.h5.shutdown_requests += 1;
            let text = format!("{} cut by the drain deadline", describe(r));
            self.h5.examples.offer(r.time, || example(r, pod, text));
        }
        if upstream_failed {
            if self.h5.upstream_failures.len() < MAX_JOINED {
                let text = format!(
                    "{} (sockproxy answered: {})",
                    describe(r),
                    r.upstream_error.unwrap_or("theia unreachable")
                );
                let e = example(r, pod, text);
                self.h5.upstream_failures.push((pod, r.time, e));
            } else {
                self.h5.upstream_failures_not_kept += 1;
            }
        }
        if let Some(ms) = r
            .duration_ms
            .filter(|ms| aborted_poll && *ms >= MIN_LIFETIME_MS)
        {
            let text = format!("long-poll cut by the client after {}", secs(ms));
            self.lifetime(ms, false, r, pod, text);
        }
    }

    fn h1(&mut self, r: &Rec<'_>, pod: PodId, upgraded: bool) {
        let missing_upgrade = r.flags.has(Flags::UPGRADE_HEADER_MISSING);
        let missing_connection = r.flags.has(Flags::CONNECTION_UPGRADE_MISSING);
        if missing_upgrade || missing_connection {
            let h = &mut self.h1;
            if missing_upgrade {
                h.missing_upgrade += 1;
            } else {
                h.missing_connection += 1;
            }
            if r.status == Some(400) {
                h.got_400 += 1;
                if r.error_code == Some(3) {
                    h.code3 += 1;
                }
            }
            let text = format!(
                "{}; upgrade={} connection={}",
                describe(r),
                r.upgrade.unwrap_or("(none)"),
                r.connection.unwrap_or("(none)")
            );
            h.examples.offer(r.time, || example(r, pod, text));
        } else if upgraded && r.upgrade.is_some() {
            self.h1.upgraded_with_headers += 1;
        }
    }

    fn h3(&mut self, r: &Rec<'_>, pod: PodId, status: u16) {
        if !r.flags.has(Flags::HEALTH_CHECK) {
            return;
        }
        let h = &mut self.h3;
        h.checks += 1;
        let ok = (200..400).contains(&status);
        if ok {
            h.ok += 1;
        } else {
            h.failed += 1;
        }
        let agent = r
            .user_agent
            .and_then(|ua| ua.split_whitespace().next())
            .unwrap_or("?");
        let path = r.path.unwrap_or("?");
        let known = h
            .outcomes
            .iter()
            .position(|(a, p, s, _)| a == agent && p == path && *s == status);
        match known {
            Some(i) => h.outcomes[i].3 += 1,
            None if h.outcomes.len() < 8 => {
                h.outcomes
                    .push((agent.to_string(), path.to_string(), status, 1))
            }
            None => {}
        }
        if !ok {
            let text = format!(
                "{agent} {} {} → {}",
                r.method.unwrap_or("?"),
                path,
                status_text(status)
            );
            h.examples.offer(r.time, || example(r, pod, text));
        }
    }

    fn h4(&mut self, r: &Rec<'_>, pod: PodId, status: u16, maybe_refused: bool) {
        let forbidden = r.flags.has(Flags::FORBIDDEN)
            || r.error_code == Some(4)
            || (r.transport.is_some() && status == 403);
        let mismatch = r.flags.has(Flags::ORIGIN_HOST_MISMATCH);
        let h = &mut self.h4;
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
                    h.refused_mismatch += 1;
                } else {
                    h.refused_port += 1;
                }
                if status == 403 {
                    h.refused_403 += 1;
                } else if status == 400 {
                    h.refused_400 += 1;
                }
                h.examples.offer(r.time, || example(r, pod, text));
            } else {
                h.refused_other += 1;
                h.other_examples.offer(r.time, || example(r, pod, text));
            }
        } else if r.origin.is_some() && is_handshake(r, status) {
            // Theia checks Origin on handshakes only: later requests of a session say nothing.
            h.origin_ok += 1;
            if mismatch {
                h.mismatch_passed += 1;
            }
        }
    }

    /// The sid join: who issued each sid, where it was used and refused after.
    fn sessions(&mut self, r: &Rec<'_>, pod: PodId, aborted_poll: bool) {
        let Some(sid) = r.sid else {
            return;
        };
        let refused = r.flags.has(Flags::SID_UNKNOWN) || r.error_code == Some(1);
        if refused {
            self.h2.sid_unknown += 1;
        }
        if r.handshake {
            if r.status == Some(200) {
                self.issued(sid, pod, r.time);
            }
            return;
        }
        let hit = HitRef {
            pod,
            at: r.time,
            id: r.id,
            refused,
            what: What::of(r),
        };
        let entry = self
            .sids
            .entry(sid, |s: &str| Box::from(s), SidEntry::default);
        if aborted_poll && entry.cut_poll.is_none() {
            entry.cut_poll = Some((pod, r.time, r.duration_ms.unwrap_or(0.0)));
        }
        // Keep the first hit per pod, a refusal over a plain hit.
        let slot = entry
            .seen
            .iter()
            .position(|h| h.as_ref().is_some_and(|h| h.pod == pod))
            .or_else(|| entry.seen.iter().position(Option::is_none));
        if let Some(i) = slot {
            let refusals = entry.seen[i].as_ref().map_or(0, |h| h.refusals) + u32::from(refused);
            let uses = entry.seen[i].as_ref().map_or(0, |h| h.uses) + 1;
            let keep_old = entry.seen[i]
                .as_ref()
                .is_some_and(|old| old.refused || !refused);
            if !keep_old {
                entry.seen[i] = Some(Hit {
                    pod,
                    at: r.time,
                    id: r.id.map(Box::from),
                    refused,
                    what: hit.what,
                    refusals,
                    uses,
                });
            } else if let Some(old) = entry.seen[i].as_mut() {
                old.refusals = refusals;
                old.uses = uses;
            }
        }
        match entry.issued {
            Some((issued_pod, issued_at)) => {
                if refused && issued_pod != pod {
                    self.h2.foreign_refusals += 1;
                }
                if issued_pod == pod {
                    self.h2.stayed_uses += 1;
                }
                join(&mut self.h2, sid, entry, issued_pod, issued_at, hit);
            }
            None if refused && entry.state & UNJOINED == 0 => {
                entry.state |= UNJOINED;
                self.h2.unjoined += 1;
                if self.h2.unjoined_examples.len() < MAX_EXAMPLES {
                    let e = example(r, pod, describe(r));
                    self.h2.unjoined_examples.push((sid.to_string(), e));
                }
            }
            None => {}
        }
    }

    fn issued(&mut self, sid: &str, pod: PodId, at: Option<i64>) {
        self.h2.issued += 1;
        let entry = self
            .sids
            .entry(sid, |s: &str| Box::from(s), SidEntry::default);
        if entry.issued.is_some() {
            return;
        }
        entry.issued = Some((pod, at));
        if entry.state & UNJOINED != 0 {
            entry.state &= !UNJOINED;
            self.h2.unjoined = self.h2.unjoined.saturating_sub(1);
        }
        let hits = entry.seen.clone();
        for hit in hits.iter().flatten() {
            if hit.pod != pod {
                self.h2.foreign_refusals += u64::from(hit.refusals);
            } else {
                self.h2.stayed_uses += u64::from(hit.uses);
            }
            join(&mut self.h2, sid, entry, pod, at, hit.as_ref());
        }
    }

    fn open_tunnel(&mut self, pod: PodId, id: &str) {
        self.open_tunnels
            .entry(&(pod, Box::from(id)), |k| k.clone(), || ());
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
        if !matched {
            self.picture.closes_without_upgrade += 1;
        }
        if r.url_has_sid == Some(false) && !matched {
            // A websocket-only session whose upgrade is not in the records: still a handshake.
            self.picture.handshakes_ws_only += 1;
            self.pods[pod as usize].handshakes += 1;
        }
        let ms = r.duration_ms.unwrap_or(0.0);
        if by == ClosedBy::Shutdown {
            self.h5.shutdown_tunnels += 1;
            let text = format!("tunnel closed by shutdown after {}", secs(ms));
            self.h5.examples.offer(r.time, || example(r, pod, text));
            return;
        }
        if self.picture.longest_tunnel_ms.is_none_or(|l| ms > l) {
            self.picture.longest_tunnel_ms = Some(ms);
        }
        if matches!(by, ClosedBy::Client | ClosedBy::Upstream | ClosedBy::Error) {
            let text = format!("tunnel closed by {} after {}", by.name(), secs(ms));
            if self.h6.longest_tunnel.as_ref().is_none_or(|(l, _)| ms > *l) {
                self.h6.longest_tunnel = Some((ms, example(r, pod, text.clone())));
            }
            if ms >= MIN_LIFETIME_MS {
                self.lifetime(ms, true, r, pod, text);
            }
        }
    }

    fn lifetime(&mut self, ms: f64, tunnel: bool, r: &Rec<'_>, pod: PodId, text: String) {
        let b = bin_of(ms);
        let h = &mut self.h6;
        if tunnel {
            h.tunnels[b] += 1;
        } else {
            h.polls[b] += 1;
        }
        h.min_ms[b] = h.min_ms[b].min(ms as f32);
        h.max_ms[b] = h.max_ms[b].max(ms as f32);
        h.examples
            .entry(b as u32)
            .or_default()
            .offer(r.time, || example(r, pod, text));
    }
}

/// Records what one use of a sid (`hit`) says, given the pod that issued it.
fn join(
    h2: &mut H2,
    sid: &str,
    entry: &mut SidEntry,
    issued_pod: PodId,
    issued_at: Option<i64>,
    hit: HitRef<'_>,
) {
    if hit.pod != issued_pod {
        if entry.state & CROSSED == 0 {
            if entry.state & STAYED != 0 {
                h2.stayed = h2.stayed.saturating_sub(1);
            }
            entry.state |= CROSSED;
            if h2.crosses.len() < MAX_JOINED {
                h2.crosses.push(Cross {
                    sid: sid.to_string(),
                    issued_pod,
                    issued_at,
                    pod: hit.pod,
                    at: hit.at,
                    id: hit.id.map(str::to_string),
                    refused: hit.refused,
                    what: hit.what.describe(),
                });
            } else {
                h2.crosses_not_kept += 1;
            }
        }
        return;
    }
    if entry.state & (STAYED | CROSSED) == 0 {
        entry.state |= STAYED;
        h2.stayed += 1;
    }
    if hit.refused && entry.state & SAME_POD_NOTED == 0 {
        entry.state |= SAME_POD_NOTED;
        if h2.same_pod.len() < MAX_JOINED {
            let cut_poll = entry
                .cut_poll
                .filter(|(p, t, _)| *p == hit.pod && t.zip(hit.at).is_none_or(|(c, r)| c <= r))
                .map(|(_, t, d)| (t, d));
            h2.same_pod.push(SamePod {
                sid: sid.to_string(),
                pod: hit.pod,
                issued_at,
                at: hit.at,
                id: hit.id.map(str::to_string),
                cut_poll,
            });
        } else {
            h2.same_pod_not_kept += 1;
        }
    }
}

/// A handshake that succeeded: a polling handshake's 200, or a websocket-only 101.
fn is_handshake(r: &Rec<'_>, status: u16) -> bool {
    (r.handshake && status == 200) || (r.event == Event::Upgrade && r.sid.is_none())
}

fn push_capped(v: &mut Vec<i64>, t: i64) {
    if v.len() < MAX_LIFECYCLE {
        v.push(t);
    }
}

fn example(r: &Rec<'_>, pod: PodId, text: String) -> Example {
    Example {
        time: r.time,
        pod,
        id: r.id.map(str::to_string),
        text,
    }
}

/// `GET websocket 400 Bad request (code 3)`, `POST polling 200`, `GET /health 404`.
pub fn describe(r: &Rec<'_>) -> String {
    let method = r.method.unwrap_or("?");
    let what = match r.transport {
        Some(t @ (Transport::Polling | Transport::Websocket)) => t.name(),
        _ => r.path.unwrap_or("?"),
    };
    let mut s = format!("{method} {what} {}", status_text(r.status.unwrap_or(0)));
    if let Some(m) = r.error_message {
        s.push(' ');
        s.push_str(m);
        if let Some(c) = r.error_code {
            s.push_str(&format!(" (code {c})"));
        }
    }
    if r.handshake {
        s.push_str(" (handshake)");
    }
    s
}

fn status_text(status: u16) -> String {
    if status == 0 {
        "no answer".to_string()
    } else {
        status.to_string()
    }
}

/// `2.963 s`, `20.2 s`, `412 ms`.
pub fn secs(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 10_000.0 {
        format!("{:.3} s", ms / 1000.0)
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
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

    #[test]
    fn examples_keep_the_earliest() {
        let mk = |t: Option<i64>| Example {
            time: t,
            pod: 0,
            id: None,
            text: format!("{t:?}"),
        };
        type Times<'a> = &'a [Option<i64>];
        let cases: &[(Times, Times)] = &[
            (&[Some(5), Some(1), Some(3)], &[Some(1), Some(3), Some(5)]),
            (
                &[Some(5), Some(4), Some(3), Some(2), Some(1)],
                &[Some(1), Some(2), Some(3)],
            ),
            (&[None, Some(9), None, Some(1)], &[Some(1), Some(9), None]),
            (
                &[Some(1), Some(1), Some(1), Some(1)],
                &[Some(1), Some(1), Some(1)],
            ),
        ];
        for (offered, kept) in cases {
            let mut ex = Examples::default();
            for t in *offered {
                ex.offer(*t, || mk(*t));
            }
            let got: Vec<Option<i64>> = ex.0.iter().map(|e| e.time).collect();
            assert_eq!(&got, kept, "{offered:?}");
        }
    }

    #[test]
    fn bins() {
        let cases = [
            (1000.0, 0),
            (999.0, 0),
            (1002.6, 1),
            (2943.0, 432),
            (3000.0, 439),
            (1e12, BINS - 1),
        ];
        for (ms, want) in cases {
            assert_eq!(bin_of(ms), want, "{ms}");
        }
    }

    #[test]
    fn seconds() {
        let cases = [
            (412.4, "412 ms"),
            (2962.667, "2.963 s"),
            (20231.3, "20.2 s"),
        ];
        for (ms, want) in cases {
            assert_eq!(secs(ms), want);
        }
    }
}
