//! What the page draws, folded from the records in bounded memory: a sample of sessions
//! (chosen by sid hash, so a kept session keeps all its records), refusal marks, each pod's
//! starts, drains and stops, health checks, tunnel lifetimes, and per-pod and per-client
//! tallies. It draws; it never decides a verdict. Pure.

use std::collections::HashMap;

use crate::report::parse::{ClosedBy, Event, Flags, Outcome, Rec, Transport};

/// A pod as the page knows it (its own numbering, by name).
pub type Lane = u32;

/// Sessions kept for drawing; past this the sample thins (1 in 2, 1 in 4 … by sid hash).
pub const MAX_SESSIONS: usize = 4000;
/// Refusals kept one by one; past this they are only counted.
pub const MAX_MARKS: usize = 50_000;
/// Starts, drains and stops kept.
pub const MAX_LIFECYCLE: usize = 10_000;
/// Seconds with health checks kept (per pod); past this they are only counted.
pub const MAX_HEALTH_SECONDS: usize = 200_000;
/// Pods tracked by name; the rest share one lane.
pub const MAX_LANES: usize = 1024;
/// Clients tracked by address; the rest share one row.
pub const MAX_CLIENTS: usize = 5000;
/// Pods one session is followed on.
const MAX_SPANS: usize = 4;
/// User agents are shown up to this many characters.
const MAX_UA_CHARS: usize = 120;

/// Lifetime bins: 20 per decade from 1 ms, 9 decades (to about 11 days).
pub const BINS_PER_DECADE: f64 = 20.0;
pub const LIFE_BINS: usize = 180;

/// The bin of a lifetime of `ms` (shorter than 1 ms: the first; longer: the last).
pub fn life_bin(ms: f64) -> usize {
    if ms.is_nan() || ms <= 1.0 {
        return 0;
    }
    ((ms.log10() * BINS_PER_DECADE).floor() as usize).min(LIFE_BINS - 1)
}

/// The lower edge of bin `b`, in ms.
pub fn bin_start_ms(b: usize) -> f64 {
    10f64.powf(b as f64 / BINS_PER_DECADE)
}

/// How a lifetime ended, one series of the histogram each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Series {
    /// A tunnel the client side ended (the browser, or a hop in front: the LB's timeout).
    Client,
    /// A tunnel theia ended.
    Upstream,
    /// A tunnel sockproxy's drain ended.
    Shutdown,
    /// sockproxy's idle timeout, or unknown.
    Other,
    /// A long-poll the client side gave up on.
    PollCut,
}

impl Series {
    pub const ALL: [Series; 5] = [
        Series::Client,
        Series::Upstream,
        Series::Shutdown,
        Series::Other,
        Series::PollCut,
    ];

    fn of(by: ClosedBy) -> Series {
        match by {
            ClosedBy::Client | ClosedBy::Error => Series::Client,
            ClosedBy::Upstream => Series::Upstream,
            ClosedBy::Shutdown => Series::Shutdown,
            ClosedBy::IdleTimeout | ClosedBy::Unknown => Series::Other,
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Series::Client => "client",
            Series::Upstream => "upstream",
            Series::Shutdown => "shutdown",
            Series::Other => "other",
            Series::PollCut => "poll",
        }
    }

    pub fn words(self) -> &'static str {
        match self {
            Series::Client => "tunnels ended by the client side (browser or LB)",
            Series::Upstream => "tunnels ended by theia",
            Series::Shutdown => "tunnels cut by sockproxy's drain",
            Series::Other => "tunnels ended otherwise (idle timeout, unknown)",
            Series::PollCut => "long-polls cut by the client side",
        }
    }
}

/// Lifetimes by bin, and the longest.
#[derive(Clone, Debug)]
pub struct Lifetimes {
    pub bins: Box<[u32; LIFE_BINS]>,
    pub n: u64,
    pub longest_ms: f64,
}

impl Default for Lifetimes {
    fn default() -> Lifetimes {
        Lifetimes {
            bins: Box::new([0; LIFE_BINS]),
            n: 0,
            longest_ms: 0.0,
        }
    }
}

impl Lifetimes {
    pub fn add(&mut self, ms: f64) {
        self.bins[life_bin(ms)] += 1;
        self.n += 1;
        if ms > self.longest_ms {
            self.longest_ms = ms;
        }
    }

    /// The median, to its bin (the geometric middle of the bin that holds it).
    pub fn median_ms(&self) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let half = self.n.div_ceil(2);
        let mut seen = 0u64;
        for (b, c) in self.bins.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= half {
                let mid = (bin_start_ms(b) * bin_start_ms(b + 1)).sqrt();
                return Some(mid.min(self.longest_ms));
            }
        }
        None
    }
}

/// Requests, refusals, upgrades and lifetimes of one pod or one client.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// `request` and `upgrade` records.
    pub requests: u64,
    /// 4xx answers on socket.io paths (as the text report counts refusals).
    pub refusals: u64,
    /// Of those, "Session ID unknown".
    pub sid_refusals: u64,
    pub upgrades: u64,
    /// Tunnel lifetimes (`tunnel_closed`).
    pub tunnels: Lifetimes,
}

/// One pod's lane.
#[derive(Clone, Debug, Default)]
pub struct LaneInfo {
    pub name: String,
    pub records: u64,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub tally: Tally,
}

/// One client (the load balancer's `remoteIp`, else the first X-Forwarded-For entry).
#[derive(Clone, Debug, Default)]
pub struct Client {
    pub tally: Tally,
    /// Pods that answered it (up to 64 lanes, as a bit set; more count as one bit).
    pub lanes: u64,
    pub user_agent: Option<String>,
}

impl Client {
    pub fn pods(&self) -> u32 {
        self.lanes.count_ones()
    }
}

/// A session's records on one pod.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub lane: Lane,
    pub start: i64,
    pub end: i64,
    pub records: u32,
}

/// One sampled session: every record of its sid.
#[derive(Clone, Debug)]
pub struct Session {
    pub sid: Box<str>,
    pub hash: u64,
    /// Where the handshake was answered, when it is in the records.
    pub issued: Option<Lane>,
    pub spans: Vec<Span>,
    /// The id of its earliest record.
    pub first_id: Option<(i64, Box<str>)>,
    pub client: Option<Box<str>>,
    pub requests: u32,
    pub upgraded: bool,
    pub refused: bool,
    pub poll_cut: bool,
    /// How its tunnels ended (a bit per [`ClosedBy::ALL`] entry).
    pub closed_by: u8,
    pub longest_tunnel_ms: Option<f64>,
}

/// What the colour of a session's bar says, the first that applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// A tunnel of it was cut by sockproxy's drain.
    Shutdown,
    /// Its sid was refused ("Session ID unknown") somewhere.
    Refused,
    /// A tunnel of it was ended by the client side (browser or LB), or a long-poll cut.
    ClientCut,
    /// Upgraded, and open at the end or ended by theia.
    Upgraded,
    /// Polling only.
    Polling,
}

impl Fate {
    pub const ALL: [Fate; 5] = [
        Fate::Upgraded,
        Fate::Polling,
        Fate::ClientCut,
        Fate::Shutdown,
        Fate::Refused,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Fate::Shutdown => "shutdown",
            Fate::Refused => "refused",
            Fate::ClientCut => "cut",
            Fate::Upgraded => "upgraded",
            Fate::Polling => "polling",
        }
    }

    pub fn words(self) -> &'static str {
        match self {
            Fate::Shutdown => "cut by shutdown (drain)",
            Fate::Refused => "sid refused (Session ID unknown)",
            Fate::ClientCut => "cut by the client side (browser or LB)",
            Fate::Upgraded => "upgraded (open, or ended by theia)",
            Fate::Polling => "polling only",
        }
    }
}

fn closed_bit(by: ClosedBy) -> u8 {
    1 << ClosedBy::ALL.iter().position(|c| *c == by).unwrap_or(0)
}

impl Session {
    pub fn fate(&self) -> Fate {
        let has = |by: ClosedBy| self.closed_by & closed_bit(by) != 0;
        if has(ClosedBy::Shutdown) {
            Fate::Shutdown
        } else if self.refused {
            Fate::Refused
        } else if has(ClosedBy::Client) || has(ClosedBy::Error) || self.poll_cut {
            Fate::ClientCut
        } else if self.upgraded {
            Fate::Upgraded
        } else {
            Fate::Polling
        }
    }

    /// The pod its bar is drawn on: where it was issued, else where it was seen first.
    pub fn home(&self) -> Option<&Span> {
        self.issued
            .and_then(|l| self.spans.iter().find(|s| s.lane == l))
            .or_else(|| self.spans.iter().min_by_key(|s| s.start))
    }

    pub fn ended_by(&self) -> Vec<&'static str> {
        ClosedBy::ALL
            .iter()
            .filter(|c| self.closed_by & closed_bit(**c) != 0)
            .map(|c| c.name())
            .collect()
    }
}

/// Why a socket.io request was refused, as its mark shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MarkKind {
    /// "Session ID unknown" for a sid another pod issued (`sid_not_issued_here`).
    SidElsewhere,
    /// "Session ID unknown" for a sid this pod issued (after a restart, a cut poll).
    SidHere,
    /// Any other 4xx (Bad request, Forbidden …).
    Other,
}

impl MarkKind {
    pub const ALL: [MarkKind; 3] = [MarkKind::SidElsewhere, MarkKind::SidHere, MarkKind::Other];

    pub fn key(self) -> &'static str {
        match self {
            MarkKind::SidElsewhere => "elsewhere",
            MarkKind::SidHere => "here",
            MarkKind::Other => "other",
        }
    }

    pub fn words(self) -> &'static str {
        match self {
            MarkKind::SidElsewhere => "sid refused on a pod that did not issue it",
            MarkKind::SidHere => "sid refused on the pod that issued it",
            MarkKind::Other => "other refusal (4xx)",
        }
    }
}

/// One refused socket.io request.
#[derive(Clone, Debug)]
pub struct Mark {
    pub lane: Lane,
    pub time: i64,
    pub kind: MarkKind,
    pub sid_hash: Option<u64>,
    pub status: u16,
    pub code: Option<i64>,
    pub id: Option<Box<str>>,
}

/// A pod's lifecycle event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Life {
    Start,
    /// `draining`, with its deadline.
    Drain {
        deadline: Option<i64>,
    },
    Stop {
        drained: Option<bool>,
        cut: Option<u64>,
    },
}

/// Everything the page draws.
#[derive(Debug, Default)]
pub struct Scene {
    pub lanes: Vec<LaneInfo>,
    lane_index: HashMap<Box<str>, Lane>,
    last_lane: Lane,
    /// The earliest start and latest end of anything drawn (µs).
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub sessions: HashMap<u64, Session>,
    /// Sids are kept when their hash is at most `u64::MAX >> sample_shift`.
    pub sample_shift: u32,
    pub marks: Vec<Mark>,
    pub marks_not_kept: u64,
    pub lifecycle: Vec<(Lane, i64, Life)>,
    /// Health checks by (lane, second): how many passed, how many failed.
    pub health: HashMap<(Lane, i64), [u32; 2]>,
    pub health_not_kept: u64,
    /// Lifetimes by how they ended (indexed by [`Series`]).
    lifetimes: [Lifetimes; Series::ALL.len()],
    pub clients: HashMap<Box<str>, Client>,
    /// Clients past [`MAX_CLIENTS`], together.
    pub other_clients: Client,
    pub other_clients_n: u64,
}

/// FNV-1a, then a finaliser so the high bits (the sample's) mix well: stable across runs
/// and builds, unlike std's hasher keys.
pub fn sid_hash(sid: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sid.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Where a record's exchange began: its time less its duration.
fn start_of(r: &Rec<'_>, t: i64) -> i64 {
    let ms = r.duration_ms.filter(|d| d.is_finite() && *d >= 0.0);
    t - ms.map_or(0, |d| (d.min(1e10) * 1000.0) as i64)
}

impl Scene {
    pub fn new() -> Scene {
        Scene::default()
    }

    /// The lifetimes of one series.
    pub fn lifetimes_of(&self, series: Series) -> &Lifetimes {
        &self.lifetimes[series as usize]
    }

    fn series(&mut self, series: Series) -> &mut Lifetimes {
        &mut self.lifetimes[series as usize]
    }

    /// How many sessions stand for one drawn (1, 2, 4 …).
    pub fn sample_every(&self) -> u64 {
        1u64 << self.sample_shift.min(63)
    }

    fn lane(&mut self, name: &str) -> Lane {
        if let Some(l) = self.lanes.get(self.last_lane as usize)
            && l.name == name
        {
            return self.last_lane;
        }
        let name = match self.lane_index.get(name) {
            Some(&l) => {
                self.last_lane = l;
                return l;
            }
            None if self.lanes.len() >= MAX_LANES - 1 => "(other pods)",
            None => name,
        };
        if let Some(&l) = self.lane_index.get(name) {
            return l;
        }
        let l = self.lanes.len() as Lane;
        self.lanes.push(LaneInfo {
            name: name.to_string(),
            ..LaneInfo::default()
        });
        self.lane_index.insert(Box::from(name), l);
        self.last_lane = l;
        l
    }

    fn seen(&mut self, from: i64, to: i64) {
        self.first = Some(self.first.map_or(from, |f| f.min(from)));
        self.last = Some(self.last.map_or(to, |l| l.max(to)));
    }

    /// Folds one record in; `pod` is its pod's name (the record's, or the file's).
    pub fn record(&mut self, r: &Rec<'_>, pod: &str) {
        let lane = self.lane(pod);
        {
            let info = &mut self.lanes[lane as usize];
            info.records += 1;
            if let Some(t) = r.time {
                info.first = Some(info.first.map_or(t, |f| f.min(t)));
                info.last = Some(info.last.map_or(t, |l| l.max(t)));
            }
        }
        if let Some(t) = r.time {
            self.seen(start_of(r, t), t);
        }
        match r.event {
            Event::Request | Event::Upgrade => self.exchange(r, lane),
            Event::TunnelClosed => self.tunnel_closed(r, lane),
            Event::Listening => self.life(lane, r.time, Life::Start),
            Event::Draining => {
                let deadline = r
                    .deadline_s
                    .filter(|d| d.is_finite() && *d >= 0.0)
                    .zip(r.time)
                    .map(|(d, t)| t + (d.min(86_400.0) * 1e6) as i64);
                self.life(lane, r.time, Life::Drain { deadline });
            }
            Event::Stopped => self.life(
                lane,
                r.time,
                Life::Stop {
                    drained: r.drained,
                    cut: r.tunnels_closed_by_shutdown,
                },
            ),
            _ => {}
        }
    }

    fn life(&mut self, lane: Lane, t: Option<i64>, what: Life) {
        if let Some(t) = t
            && self.lifecycle.len() < MAX_LIFECYCLE
        {
            self.lifecycle.push((lane, t, what));
        }
    }

    fn exchange(&mut self, r: &Rec<'_>, lane: Lane) {
        let status = r.status.unwrap_or(0);
        let sio = r.transport.is_some();
        let refused = sio && (400..500).contains(&status);
        let sid_refused = refused && (r.flags.has(Flags::SID_UNKNOWN) || r.error_code == Some(1));
        let upgraded = r.event == Event::Upgrade;
        let count = |t: &mut Tally| {
            t.requests += 1;
            t.refusals += u64::from(refused);
            t.sid_refusals += u64::from(sid_refused);
            t.upgrades += u64::from(upgraded);
        };
        count(&mut self.lanes[lane as usize].tally);
        if sio && let Some(ip) = r.remote_ip {
            let c = self.client(ip);
            count(&mut c.tally);
            c.lanes |= 1u64 << lane.min(63);
            if c.user_agent.is_none()
                && let Some(ua) = r.user_agent
            {
                c.user_agent = Some(ua.chars().take(MAX_UA_CHARS).collect());
            }
        }
        if r.flags.has(Flags::HEALTH_CHECK) {
            self.health_check(r, lane, status);
        }
        if refused {
            self.mark(r, lane, status, sid_refused);
        }
        // As the analyzer counts them (`analyze.rs`): a long-poll the client side gave up on.
        let poll_cut = r.flags.has(Flags::POLL_ABORTED)
            || (r.transport == Some(Transport::Polling)
                && r.method == Some("GET")
                && r.sid.is_some()
                && !r.handshake
                && r.outcome == Outcome::ClientAborted);
        if poll_cut && let Some(ms) = r.duration_ms.filter(|d| d.is_finite()) {
            self.series(Series::PollCut).add(ms);
        }
        if let Some(sid) = r.sid {
            let handshake_ok = r.handshake && status == 200;
            self.session(sid, r, lane, |s| {
                s.requests += 1;
                s.upgraded |= upgraded;
                s.refused |= sid_refused;
                s.poll_cut |= poll_cut;
                if handshake_ok {
                    s.issued = Some(lane);
                }
            });
        }
    }

    fn tunnel_closed(&mut self, r: &Rec<'_>, lane: Lane) {
        let ms = r.duration_ms.filter(|d| d.is_finite() && *d >= 0.0);
        if let Some(ms) = ms {
            self.series(Series::of(r.closed_by)).add(ms);
            self.lanes[lane as usize].tally.tunnels.add(ms);
            if let Some(ip) = r.remote_ip {
                self.client(ip).tally.tunnels.add(ms);
            }
        }
        if let Some(sid) = r.sid {
            let bit = closed_bit(r.closed_by);
            // A websocket-only session: its sid shows first here, issued by this pod.
            let ws_only = r.url_has_sid == Some(false);
            self.session(sid, r, lane, |s| {
                s.upgraded = true;
                s.closed_by |= bit;
                if let Some(ms) = ms {
                    s.longest_tunnel_ms = Some(s.longest_tunnel_ms.map_or(ms, |l| l.max(ms)));
                }
                if ws_only && s.issued.is_none() {
                    s.issued = Some(lane);
                }
            });
        }
    }

    fn client(&mut self, ip: &str) -> &mut Client {
        if !self.clients.contains_key(ip) {
            if self.clients.len() >= MAX_CLIENTS {
                self.other_clients_n += 1;
                return &mut self.other_clients;
            }
            self.clients.insert(Box::from(ip), Client::default());
        }
        self.clients.get_mut(ip).expect("just inserted")
    }

    fn health_check(&mut self, r: &Rec<'_>, lane: Lane, status: u16) {
        let Some(t) = r.time else {
            return;
        };
        let key = (lane, t.div_euclid(1_000_000));
        let ok = (200..400).contains(&status);
        if !self.health.contains_key(&key) && self.health.len() >= MAX_HEALTH_SECONDS {
            self.health_not_kept += 1;
            return;
        }
        self.health.entry(key).or_default()[usize::from(!ok)] += 1;
    }

    fn mark(&mut self, r: &Rec<'_>, lane: Lane, status: u16, sid_refused: bool) {
        let Some(time) = r.time else {
            self.marks_not_kept += 1;
            return;
        };
        if self.marks.len() >= MAX_MARKS {
            self.marks_not_kept += 1;
            return;
        }
        let kind = if !sid_refused {
            MarkKind::Other
        } else if r.flags.has(Flags::SID_NOT_ISSUED_HERE) {
            MarkKind::SidElsewhere
        } else {
            MarkKind::SidHere
        };
        self.marks.push(Mark {
            lane,
            time,
            kind,
            sid_hash: r.sid.map(sid_hash),
            status,
            code: r.error_code,
            id: r.id.map(Box::from),
        });
    }

    /// Applies `update` to the session of `sid` when the sample keeps it.
    fn session(&mut self, sid: &str, r: &Rec<'_>, lane: Lane, update: impl FnOnce(&mut Session)) {
        let hash = sid_hash(sid);
        if hash > u64::MAX >> self.sample_shift {
            return;
        }
        if !self.sessions.contains_key(&hash) && self.sessions.len() >= MAX_SESSIONS {
            self.thin();
            if hash > u64::MAX >> self.sample_shift {
                return;
            }
        }
        let s = self.sessions.entry(hash).or_insert_with(|| Session {
            sid: Box::from(sid),
            hash,
            issued: None,
            spans: Vec::new(),
            first_id: None,
            client: None,
            requests: 0,
            upgraded: false,
            refused: false,
            poll_cut: false,
            closed_by: 0,
            longest_tunnel_ms: None,
        });
        if let Some(t) = r.time {
            let from = start_of(r, t);
            let full = s.spans.len() >= MAX_SPANS;
            match s.spans.iter_mut().find(|sp| sp.lane == lane) {
                Some(sp) => {
                    sp.start = sp.start.min(from);
                    sp.end = sp.end.max(t);
                    sp.records += 1;
                }
                None if !full => s.spans.push(Span {
                    lane,
                    start: from,
                    end: t,
                    records: 1,
                }),
                None => {}
            }
            if let Some(id) = r.id
                && s.first_id.as_ref().is_none_or(|(at, _)| from < *at)
            {
                s.first_id = Some((from, Box::from(id)));
            }
        }
        if s.client.is_none() {
            s.client = r.remote_ip.map(Box::from);
        }
        update(s);
    }

    /// Halves the sample: keeps the sessions whose hash is in the lower half of what was kept.
    fn thin(&mut self) {
        while self.sessions.len() >= MAX_SESSIONS && self.sample_shift < 63 {
            self.sample_shift += 1;
            let limit = u64::MAX >> self.sample_shift;
            self.sessions.retain(|h, _| *h <= limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::parse::{Parsed, parse};

    fn fold(lines: &[String]) -> Scene {
        let mut s = Scene::new();
        for line in lines {
            let Parsed::Record(raw) = parse(line.as_bytes()) else {
                panic!("not a record: {line}");
            };
            let r = Rec::of(&raw).expect("a record");
            s.record(&r, r.pod.unwrap_or("?"));
        }
        s
    }

    #[test]
    fn lifetime_bins() {
        let cases = [
            (0.2, 0),
            (1.0, 0),
            (10.0, 20),
            (1000.0, 60),
            (2962.0, 69),
            (3000.0, 69),
            (30_000.0, 89),
            (1e12, LIFE_BINS - 1),
        ];
        for (ms, want) in cases {
            assert_eq!(life_bin(ms), want, "{ms}");
        }
    }

    #[test]
    fn medians() {
        // (lifetimes, the median's bounds)
        type Case<'a> = (&'a [f64], Option<(f64, f64)>);
        let cases: &[Case] = &[
            (&[], None),
            (&[3000.0], Some((2818.0, 3000.0))),
            (&[100.0, 3000.0, 3001.0], Some((2818.0, 3001.0))),
            (&[20_000.0, 20_000.0, 5.0], Some((17_782.0, 20_000.0))),
        ];
        for (ms, want) in cases {
            let mut l = Lifetimes::default();
            for m in *ms {
                l.add(*m);
            }
            let got = l.median_ms();
            match (got, want) {
                (None, None) => {}
                (Some(g), Some((lo, hi))) => assert!(g >= *lo && g <= *hi, "{ms:?}: {g}"),
                _ => panic!("{ms:?}: {got:?}"),
            }
        }
    }

    const T: &str = "2026-11-25T12:00";

    fn line(pod: &str, sec: u32, fields: &str) -> String {
        format!(r#"{{"time":"{T}:{sec:02}.000000Z","pod":"{pod}",{fields}}}"#)
    }

    #[test]
    fn a_session_moves_and_is_refused() {
        let hs = r#""event":"request","id":"1","method":"GET","sio":{"transport":"polling","sid":"S","handshake":true},"status":200,"duration_ms":500"#;
        let refused = r#""event":"request","id":"2","method":"GET","sio":{"transport":"polling","sid":"S","handshake":false},"status":400,"sio_error":{"code":1,"message":"Session ID unknown"},"flags":["sid_unknown","sid_not_issued_here"]"#;
        let s = fold(&[line("a", 1, hs), line("b", 3, refused)]);
        assert_eq!(s.lanes.len(), 2);
        let session = s.sessions.values().next().expect("one session");
        assert_eq!(s.sessions.len(), 1);
        assert_eq!(session.issued, Some(0));
        assert_eq!(session.fate(), Fate::Refused);
        let home = session.home().expect("a home span");
        assert_eq!((home.lane, home.end - home.start), (0, 500_000));
        assert_eq!(s.marks.len(), 1);
        assert_eq!(s.marks[0].kind, MarkKind::SidElsewhere);
        assert_eq!(s.marks[0].sid_hash, Some(sid_hash("S")));
        assert_eq!(s.lanes[1].tally.refusals, 1);
        assert_eq!(s.lanes[1].tally.sid_refusals, 1);
    }

    #[test]
    fn fates() {
        let up = r#""event":"upgrade","id":"u","method":"GET","sio":{"transport":"websocket","sid":"S"},"status":101"#;
        let closed = |by: &str| {
            format!(
                r#""event":"tunnel_closed","id":"u","sio":{{"sid":"S"}},"duration_ms":3000,"closed_by":"{by}""#
            )
        };
        let cases = [
            (vec![up.to_string()], Fate::Upgraded),
            (vec![up.to_string(), closed("upstream")], Fate::Upgraded),
            (vec![up.to_string(), closed("client")], Fate::ClientCut),
            (vec![up.to_string(), closed("error")], Fate::ClientCut),
            (vec![up.to_string(), closed("shutdown")], Fate::Shutdown),
        ];
        for (records, want) in cases {
            let lines: Vec<String> = records.iter().map(|f| line("a", 5, f)).collect();
            let s = fold(&lines);
            let session = s.sessions.values().next().expect("one session");
            assert_eq!(session.fate(), want, "{records:?}");
        }
    }

    #[test]
    fn the_sample_thins_by_hash_and_keeps_whole_sessions() {
        let n = MAX_SESSIONS * 3;
        let mut s = Scene::new();
        for round in 0..2 {
            for i in 0..n {
                let l = line(
                    "a",
                    round,
                    &format!(
                        r#""event":"request","id":"{i}","method":"GET","sio":{{"transport":"polling","sid":"sid{i}","handshake":{}}},"status":200"#,
                        round == 0
                    ),
                );
                let Parsed::Record(raw) = parse(l.as_bytes()) else {
                    panic!("{l}");
                };
                s.record(&Rec::of(&raw).expect("a record"), "a");
            }
        }
        assert!(s.sessions.len() < MAX_SESSIONS, "{}", s.sessions.len());
        assert!(s.sample_shift >= 2, "{}", s.sample_shift);
        let limit = u64::MAX >> s.sample_shift;
        for session in s.sessions.values() {
            assert!(session.hash <= limit);
            assert_eq!(session.requests, 2, "{}: both records kept", session.sid);
        }
        // About n / 2^shift remain: the sample is the sids under the limit, not the first ones.
        let expected = n as f64 / s.sample_every() as f64;
        let got = s.sessions.len() as f64;
        assert!(
            (got - expected).abs() < expected * 0.2,
            "{got} vs {expected}"
        );
    }
}
