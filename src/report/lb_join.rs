//! The load balancer's entries (`lb`) joined to sockproxy's records by trace id: which
//! requests never reached a pod's sidecar, which answers changed between theia and the
//! browser, websocket lifetimes seen from both ends, what changed on the way. Both sides
//! are kept (bounded) as they come, in any order and from any file; the join is made when
//! the report is written. Pure.
//!
//! The join is on the 32-hex trace id only (LB-LOGS §4 rule 1): the load balancer's
//! `trace`, sockproxy's `trace` (from the `X-Cloud-Trace-Context` the load balancer set).
//! An entry without a trace is counted and never matched by time or address.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use super::evidence::PodId;
use super::lb::{self, Entry, Family, Reach, TraceId};
use super::parse::{ClosedBy, Event, Flags, Outcome, Rec};

/// Load balancer entries kept for the join; past this they are only counted.
pub const MAX_ENTRIES: usize = 200_000;
/// sockproxy exchanges kept by trace id; past this they are only counted.
pub const MAX_TRACES: usize = 300_000;
/// Distinct `(insertId, timestamp)` pairs remembered to drop duplicates.
const MAX_SEEN_IDS: usize = 400_000;
/// Distinct paths remembered by name (the rest compare by hash only).
const MAX_PATHS: usize = 1024;
/// Requests listed one by one (in the JSON, and a few in the text).
pub const MAX_ROWS: usize = 200;

/// sockproxy's end of one trace: its exchange and, for an upgrade, its tunnel.
#[derive(Clone, Debug, Default)]
pub struct Side {
    pub pod: PodId,
    pub id: Option<Box<str>>,
    pub time: Option<i64>,
    /// What sockproxy sent towards the browser; `None` when only the tunnel's close is in
    /// the records.
    pub status: Option<u16>,
    pub outcome: Option<Outcome>,
    /// sockproxy answered itself (theia unreachable or silent).
    pub own_answer: bool,
    pub flags: Flags,
    path: Option<u32>,
    path_hash: u64,
    host_hash: Option<u64>,
    ua_hash: Option<u64>,
    /// sockproxy's `httpRequest.remoteIp`: the first `X-Forwarded-For` entry.
    client_hash: Option<u64>,
    /// (lifetime in ms, who closed it).
    pub tunnel: Option<(f64, ClosedBy)>,
    /// Exchange records that carried this trace (more than one: a client reused it).
    pub exchanges: u32,
}

/// Both sides as read so far.
#[derive(Debug, Default)]
pub struct LbJoin {
    entries: Vec<Entry>,
    /// Load balancer entries read (duplicates not counted).
    pub entries_read: u64,
    /// Read but past [`MAX_ENTRIES`]: counted, not joined.
    pub entries_not_kept: u64,
    /// Same `insertId` and `timestamp` as one read before (overlapping exports).
    pub duplicates: u64,
    /// Entries of other load balancers (regional ALB, network LBs), set aside.
    pub other_load_balancers: u64,
    seen: HashSet<(Box<str>, i64)>,
    sides: HashMap<u128, Side>,
    paths: Vec<Box<str>>,
    path_index: HashMap<Box<str>, u32>,
    /// sockproxy exchanges (request, upgrade) with a trace id.
    pub exchanges_with_trace: u64,
    /// sockproxy exchanges without one (sent straight to the pod, or a client the load
    /// balancer did not front).
    pub exchanges_without_trace: u64,
    /// Exchanges past [`MAX_TRACES`]: counted, not joined.
    pub exchanges_not_kept: u64,
}

fn hash(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

impl LbJoin {
    /// Whether any load balancer entry was read.
    pub fn is_empty(&self) -> bool {
        self.entries_read == 0 && self.other_load_balancers == 0
    }

    /// The entries kept for the join.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// sockproxy's side of a trace.
    pub fn side(&self, trace: u128) -> Option<&Side> {
        self.sides.get(&trace)
    }

    /// A path remembered by [`Side`]: its text, if kept.
    pub fn path_of(&self, side: &Side) -> Option<&str> {
        side.path
            .and_then(|i| self.paths.get(i as usize))
            .map(|p| &**p)
    }

    /// Takes what [`lb::parse`] made of a JSON object that was not a record; false when
    /// it was no load balancer entry at all.
    pub fn offer(&mut self, parsed: lb::Parsed) -> bool {
        match parsed {
            lb::Parsed::NotLoadBalancer => false,
            lb::Parsed::OtherLoadBalancer => {
                self.other_load_balancers += 1;
                true
            }
            lb::Parsed::Entry(e) => {
                self.entry(*e);
                true
            }
        }
    }

    fn entry(&mut self, e: Entry) {
        if let (Some(id), Some(t)) = (e.insert_id.as_ref(), e.time) {
            let key = (id.clone(), t);
            if self.seen.contains(&key) {
                self.duplicates += 1;
                return;
            }
            if self.seen.len() < MAX_SEEN_IDS {
                self.seen.insert(key);
            }
        }
        self.entries_read += 1;
        if self.entries.len() < MAX_ENTRIES {
            self.entries.push(e);
        } else {
            self.entries_not_kept += 1;
        }
    }

    /// Takes sockproxy's side from one record (request, upgrade, tunnel_closed).
    pub fn record(&mut self, r: &Rec<'_>, pod: PodId) {
        let exchange = matches!(r.event, Event::Request | Event::Upgrade);
        if !exchange && r.event != Event::TunnelClosed {
            return;
        }
        let TraceId::Id(trace) = lb::trace_id(r.trace) else {
            if exchange {
                self.exchanges_without_trace += 1;
            }
            return;
        };
        if exchange {
            self.exchanges_with_trace += 1;
        }
        if !self.sides.contains_key(&trace) && self.sides.len() >= MAX_TRACES {
            if exchange {
                self.exchanges_not_kept += 1;
            }
            return;
        }
        let path = r.path.map(|p| self.path_id(p));
        let side = self.sides.entry(trace).or_default();
        if exchange {
            side.exchanges += 1;
            if side.exchanges > 1 {
                // A reused trace: the first exchange stands for it (none is guessed).
                return;
            }
            fill_exchange(side, r, pod, path);
        } else if side.tunnel.is_none() {
            side.tunnel = Some((r.duration_ms.unwrap_or(0.0), r.closed_by));
            if side.status.is_none() {
                side.pod = pod;
                side.id = r.id.map(Box::from);
            }
        }
    }

    fn path_id(&mut self, p: &str) -> u32 {
        if let Some(i) = self.path_index.get(p) {
            return *i;
        }
        if self.paths.len() >= MAX_PATHS {
            return u32::MAX;
        }
        let i = self.paths.len() as u32;
        self.paths.push(Box::from(p));
        self.path_index.insert(Box::from(p), i);
        i
    }
}

fn fill_exchange(side: &mut Side, r: &Rec<'_>, pod: PodId, path: Option<u32>) {
    side.pod = pod;
    side.id = r.id.map(Box::from);
    side.time = r.time;
    side.status = Some(r.status.unwrap_or(0));
    side.outcome = Some(r.outcome);
    side.own_answer = r.flags.has(Flags::UPSTREAM_UNREACHABLE)
        || (r.upstream_error.is_some() && r.status.is_none_or(|s| s == 0 || s >= 500));
    side.flags = r.flags;
    side.path = path.filter(|p| *p != u32::MAX);
    side.path_hash = r.path.map_or(0, hash);
    side.host_hash = r.host.map(|h| hash(&h.to_ascii_lowercase()));
    side.ua_hash = r.user_agent.map(hash);
    side.client_hash = r.remote_ip.map(hash);
}

/// What one load balancer entry became in the join.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// No trace id: counted, not joined.
    NoTrace,
    /// Matched, same status both ends.
    Matched,
    /// Matched, the browser got another status than sockproxy sent.
    StatusDiffers,
    /// No sidecar record, and the load balancer says no backend was involved.
    NeverReached,
    /// No sidecar record; the client left.
    ClientLeftUnseen,
    /// No sidecar record, and the entry does not say why (no or an unknown
    /// `statusDetails`).
    Unexplained,
    /// No sidecar record, but the load balancer says a backend answered: a pod or path
    /// not in sockproxy's records (another pod, no `--log-all`, sampling).
    BackendAnsweredUnseen,
    /// No sidecar record, outside the time the records cover.
    OutsideRecords,
}

impl Kind {
    pub fn key(self) -> &'static str {
        match self {
            Kind::NoTrace => "no_trace",
            Kind::Matched => "matched",
            Kind::StatusDiffers => "status_differs",
            Kind::NeverReached => "never_reached_a_pod",
            Kind::ClientLeftUnseen => "client_left_unseen",
            Kind::Unexplained => "unexplained",
            Kind::BackendAnsweredUnseen => "backend_answered_unseen",
            Kind::OutsideRecords => "outside_records",
        }
    }
}

/// How far outside the records' first and last time an entry still counts as inside.
const SPAN_SLACK_US: i64 = 30_000_000;

/// The kind of `e` given its match.
/// `span`: the first and last time in the records.
pub fn kind_of(e: &Entry, side: Option<&Side>, span: (Option<i64>, Option<i64>)) -> Kind {
    let TraceId::Id(_) = e.trace else {
        return Kind::NoTrace;
    };
    if let Some(s) = side {
        return match s.status {
            Some(st) if st != e.status => Kind::StatusDiffers,
            _ => Kind::Matched,
        };
    }
    let inside = match (e.time, span.0, span.1) {
        (Some(t), Some(f), Some(l)) => t >= f - SPAN_SLACK_US && t <= l + SPAN_SLACK_US,
        (None, _, _) => true,
        _ => false,
    };
    if !inside {
        return Kind::OutsideRecords;
    }
    match (e.family.reach(), e.family) {
        (Reach::No, _) => Kind::NeverReached,
        (_, Family::ClientLeft) => Kind::ClientLeftUnseen,
        (_, Family::Missing | Family::Unknown) => Kind::Unexplained,
        _ => Kind::BackendAnsweredUnseen,
    }
}

/// One entry and its match: a row of the per-request listing.
#[derive(Clone, Debug)]
pub struct Row<'a> {
    pub entry: &'a Entry,
    pub side: Option<&'a Side>,
    pub kind: Kind,
}

/// (statusDetails, browser status) → count, most frequent first.
pub type ByDetails = Vec<(String, u16, u64)>;

/// Websockets as the load balancer ended them, against sockproxy's tunnels.
#[derive(Clone, Debug, Default)]
pub struct Websockets {
    /// Entries with status 101, by family.
    pub by_family: Vec<(Family, u64)>,
    pub total: u64,
    /// Joined to a `tunnel_closed`.
    pub with_tunnel: u64,
    /// Upgrades whose tunnel close is not in the records (still open at the end).
    pub tunnel_open: u64,
    /// Load balancer lifetime − sockproxy's, over those joined: min, max (ms).
    pub gap_ms: Option<(f64, f64)>,
    pub closed_by: [u64; ClosedBy::ALL.len()],
    /// `backend_timeout` lifetimes (101), min and max (ms).
    pub timeout_ms: Option<(f64, f64)>,
}

/// What changed between the browser's request (as the load balancer logged it) and
/// sockproxy's record of it.
#[derive(Clone, Debug, Default)]
pub struct Changes {
    pub compared: u64,
    /// (load balancer path, sockproxy path, count): the differing prefixes, e.g.
    /// `/theia` → ``.
    pub paths: Vec<(String, String, u64)>,
    pub path_unchanged: u64,
    pub host_differs: u64,
    pub ua_differs: u64,
    /// The load balancer's client IP is the first `X-Forwarded-For` entry sockproxy got.
    pub client_same: u64,
    pub client_differs: u64,
}

/// The joined picture.
#[derive(Clone, Debug, Default)]
pub struct Picture<'a> {
    pub kinds: [u64; 8],
    pub never_reached: ByDetails,
    pub client_left_unseen: ByDetails,
    pub unexplained: ByDetails,
    pub backend_answered_unseen: ByDetails,
    /// (sockproxy's status, browser's status, statusDetails, count).
    pub status_differs: Vec<(u16, u16, String, u64)>,
    pub websockets: Websockets,
    pub changes: Changes,
    pub malformed_traces: u64,
    /// Notable rows (not plain matches), earliest first, at most [`MAX_ROWS`].
    pub rows: Vec<Row<'a>>,
    pub rows_total: u64,
}

pub const KINDS: [Kind; 8] = [
    Kind::NoTrace,
    Kind::Matched,
    Kind::StatusDiffers,
    Kind::NeverReached,
    Kind::ClientLeftUnseen,
    Kind::Unexplained,
    Kind::BackendAnsweredUnseen,
    Kind::OutsideRecords,
];

impl Picture<'_> {
    pub fn count(&self, k: Kind) -> u64 {
        self.kinds[KINDS.iter().position(|x| *x == k).unwrap_or(0)]
    }
}

fn bump(list: &mut ByDetails, e: &Entry) {
    let d = e.details.as_deref().unwrap_or("(none)");
    match list.iter_mut().find(|(n, s, _)| n == d && *s == e.status) {
        Some(x) => x.2 += 1,
        None => list.push((d.to_string(), e.status, 1)),
    }
}

/// Joins every kept entry to sockproxy's side.
/// `span`: the first and last time in the records.
pub fn join(j: &LbJoin, span: (Option<i64>, Option<i64>)) -> Picture<'_> {
    let mut p = Picture::default();
    let mut rows = Vec::new();
    for e in &j.entries {
        let side = match e.trace {
            TraceId::Id(t) => j.sides.get(&t),
            TraceId::Malformed => {
                p.malformed_traces += 1;
                None
            }
            TraceId::Missing => None,
        };
        let kind = kind_of(e, side, span);
        p.kinds[KINDS.iter().position(|x| *x == kind).unwrap_or(0)] += 1;
        match kind {
            Kind::NeverReached => bump(&mut p.never_reached, e),
            Kind::ClientLeftUnseen => bump(&mut p.client_left_unseen, e),
            Kind::Unexplained => bump(&mut p.unexplained, e),
            Kind::BackendAnsweredUnseen => bump(&mut p.backend_answered_unseen, e),
            Kind::StatusDiffers => differs(&mut p, e, side),
            _ => {}
        }
        if e.websocket() {
            websocket(&mut p.websockets, e, side);
        }
        if let Some(s) = side {
            changes(&mut p.changes, j, e, s);
        }
        if !matches!(kind, Kind::Matched | Kind::OutsideRecords) || e.websocket() {
            p.rows_total += 1;
            rows.push(Row {
                entry: e,
                side,
                kind,
            });
        }
    }
    for list in [
        &mut p.never_reached,
        &mut p.client_left_unseen,
        &mut p.unexplained,
        &mut p.backend_answered_unseen,
    ] {
        list.sort_by(|x, y| y.2.cmp(&x.2).then_with(|| x.0.cmp(&y.0)));
    }
    p.status_differs.sort_by_key(|x| std::cmp::Reverse(x.3));
    p.changes.paths.sort_by_key(|x| std::cmp::Reverse(x.2));
    rows.sort_by_key(|r| r.entry.time.unwrap_or(i64::MAX));
    rows.truncate(MAX_ROWS);
    p.rows = rows;
    p
}

fn differs(p: &mut Picture<'_>, e: &Entry, side: Option<&Side>) {
    let theirs = side.and_then(|s| s.status).unwrap_or(0);
    let d = e.details.as_deref().unwrap_or("(none)");
    match p
        .status_differs
        .iter_mut()
        .find(|(s, b, n, _)| *s == theirs && *b == e.status && n == d)
    {
        Some(x) => x.3 += 1,
        None => p.status_differs.push((theirs, e.status, d.to_string(), 1)),
    }
}

fn websocket(w: &mut Websockets, e: &Entry, side: Option<&Side>) {
    w.total += 1;
    match w.by_family.iter_mut().find(|(f, _)| *f == e.family) {
        Some(x) => x.1 += 1,
        None => w.by_family.push((e.family, 1)),
    }
    w.by_family.sort_by_key(|x| std::cmp::Reverse(x.1));
    let widen = |r: &mut Option<(f64, f64)>, v: f64| {
        *r = Some(r.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
    };
    if e.family == Family::BackendTimeout
        && let Some(ms) = e.latency_ms
    {
        widen(&mut w.timeout_ms, ms);
    }
    let Some(s) = side else {
        return;
    };
    match s.tunnel {
        Some((ms, by)) => {
            w.with_tunnel += 1;
            w.closed_by[ClosedBy::ALL.iter().position(|c| *c == by).unwrap_or(0)] += 1;
            if let Some(lb_ms) = e.latency_ms {
                widen(&mut w.gap_ms, lb_ms - ms);
            }
        }
        None if s.status == Some(101) => w.tunnel_open += 1,
        None => {}
    }
}

fn changes(c: &mut Changes, j: &LbJoin, e: &Entry, s: &Side) {
    if s.status.is_none() {
        return;
    }
    c.compared += 1;
    if let Some(lb_path) = e.path() {
        if hash(lb_path) == s.path_hash {
            c.path_unchanged += 1;
        } else {
            let ours = j.path_of(s).unwrap_or("?");
            let (from, to) = differing_prefixes(lb_path, ours);
            match c.paths.iter().position(|(f, t, _)| *f == from && *t == to) {
                Some(i) => c.paths[i].2 += 1,
                None if c.paths.len() < 16 => c.paths.push((from, to, 1)),
                None => {}
            }
        }
    }
    if let (Some(h), Some(ours)) = (e.host(), s.host_hash)
        && hash(&h.to_ascii_lowercase()) != ours
    {
        c.host_differs += 1;
    }
    if let Some(ua) = e.user_agent.as_deref()
        && Some(hash(ua)) != s.ua_hash
    {
        c.ua_differs += 1;
    }
    if let (Some(ip), Some(ours)) = (e.remote_ip.as_deref(), s.client_hash) {
        if hash(ip) == ours {
            c.client_same += 1;
        } else {
            c.client_differs += 1;
        }
    }
}

/// `/theia/socket.io/` and `/socket.io/` → (`/theia`, ``): the parts before the longest
/// common ending.
pub fn differing_prefixes(a: &str, b: &str) -> (String, String) {
    let common = a
        .bytes()
        .rev()
        .zip(b.bytes().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (mut ea, mut eb) = (a.len() - common, b.len() - common);
    // Cut at a character boundary, and keep whole path segments.
    while !a.is_char_boundary(ea) || !b.is_char_boundary(eb) {
        ea += 1;
        eb += 1;
    }
    while ea < a.len() && a.as_bytes()[ea] != b'/' {
        ea += 1;
        eb += 1;
    }
    (a[..ea].to_string(), b[..eb.min(b.len())].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let cases = [
            ("/theia/socket.io/", "/socket.io/", ("/theia", "")),
            ("/a/x/socket.io/", "/b/socket.io/", ("/a/x", "/b")),
            ("/same", "/same", ("", "")),
            ("/ab/c", "/b/c", ("/ab", "/b")),
            ("/x", "/y", ("/x", "/y")),
        ];
        for (a, b, (wa, wb)) in cases {
            assert_eq!(
                differing_prefixes(a, b),
                (wa.to_string(), wb.to_string()),
                "{a} {b}"
            );
        }
    }
}
