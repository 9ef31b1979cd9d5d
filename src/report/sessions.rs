//! The session join, which H2, H5 and H6 read: which pod issued each sid, where the sid was
//! used (and refused) afterwards, and what those moves mean once the pods' lifecycles are
//! known (a move while the issuing pod was up vs after it drained or restarted). Pure.

use super::evidence::{Example, MAX_EXAMPLES, MAX_JOINED, PodId, clock, describe, example};
use super::parse::{Flags, Rec, Transport};
use super::pods::PodStats;
use super::recent::Recent;

/// Sessions remembered for the cross-pod join (the least recently used are forgotten).
pub const MAX_SIDS: usize = 100_000;

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
        let mut s = format!("{method} {t} {}", super::evidence::status_text(self.status));
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
    /// The latest use on this pod.
    last_at: Option<i64>,
    /// The earliest refusal on this pod (whatever order the records came in).
    refused_at: Option<i64>,
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
            // A refusal is judged at its own time (after a restart? after a cut poll?).
            at: if self.refused {
                self.refused_at.or(self.at)
            } else {
                self.at
            },
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

impl SidEntry {
    /// Notes one use of the sid: keeps the first hit per pod, a refusal over a plain hit,
    /// and counts the uses and refusals.
    fn note(&mut self, hit: HitRef<'_>) {
        let slot = self
            .seen
            .iter()
            .position(|h| h.as_ref().is_some_and(|h| h.pod == hit.pod))
            .or_else(|| self.seen.iter().position(Option::is_none));
        if let Some(i) = slot {
            let refusals = self.seen[i].as_ref().map_or(0, |h| h.refusals) + u32::from(hit.refused);
            let uses = self.seen[i].as_ref().map_or(0, |h| h.uses) + 1;
            let old = self.seen[i].as_ref();
            let keep_old = old.is_some_and(|old| old.refused || !hit.refused);
            let first_at = min_time(hit.at, old.and_then(|h| h.at));
            let last_at = hit.at.max(old.and_then(|h| h.last_at));
            let old_refused_at = old.and_then(|h| h.refused_at);
            let refused_at = if hit.refused {
                min_time(hit.at, old_refused_at)
            } else {
                old_refused_at
            };
            if !keep_old {
                self.seen[i] = Some(Hit {
                    pod: hit.pod,
                    at: first_at,
                    id: hit.id.map(Box::from),
                    refused: hit.refused,
                    what: hit.what,
                    refusals,
                    uses,
                    last_at,
                    refused_at,
                });
            } else if let Some(old) = self.seen[i].as_mut() {
                old.refusals = refusals;
                old.uses = uses;
                old.at = first_at;
                old.last_at = last_at;
                old.refused_at = refused_at;
            }
        }
    }
}

/// Sids by the pod that issued them, and where they went.
#[derive(Debug)]
pub struct Sessions {
    pub issued: u64,
    /// What the joins found: sessions that stayed, moved, or were refused at home.
    pub joined: Joined,
    /// Later requests (and upgrades) of a session on the pod that issued it.
    pub stayed_uses: u64,
    /// Sids refused with `Session ID unknown` that no record shows being issued.
    pub unjoined: u64,
    pub unjoined_examples: Vec<(String, Example)>,
    pub sid_unknown: u64,
    /// `Session ID unknown` refusals on a pod other than the one that issued the sid.
    pub foreign_refusals: u64,
    sids: Recent<Box<str>, SidEntry>,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions {
            issued: 0,
            joined: Joined::default(),
            stayed_uses: 0,
            unjoined: 0,
            unjoined_examples: Vec::new(),
            sid_unknown: 0,
            foreign_refusals: 0,
            sids: Recent::new(MAX_SIDS / 2),
        }
    }
}

/// Cross-pod uses and same-pod refusals sorted by cause, once lifecycles are known.
pub struct Moved<'a> {
    /// Used on another pod while the issuing pod was still up: H2.
    pub affinity: Vec<&'a Cross>,
    /// Used on another pod after the issuing pod drained, restarted or went away: H5.
    pub after_drain: Vec<&'a Cross>,
    /// Refused on the issuing pod after it restarted: H5.
    pub after_restart: Vec<&'a SamePod>,
    /// Refused on the issuing pod after a long-poll of it was cut: H6 (or any cut).
    pub after_cut_poll: Vec<&'a SamePod>,
}

impl Moved<'_> {
    /// Sessions that came back after a shutdown and were refused (the client-visible part).
    pub fn refused_after_shutdown(&self) -> u64 {
        self.after_drain.iter().filter(|c| c.refused).count() as u64
            + self.after_restart.len() as u64
    }
}

impl Sessions {
    pub fn forgotten(&self) -> u64 {
        self.sids.forgotten
    }

    /// Sessions seen again after their handshake (on any pod).
    pub fn seen_again(&self) -> u64 {
        self.joined.stayed + self.joined.crosses.len() as u64 + self.joined.crosses_not_kept
    }

    /// Sorts the moves by cause with each pod's starts, drains and last record.
    pub fn moved<'a>(&'a self, pods: &[PodStats]) -> Moved<'a> {
        // Whether one of `times` falls between `from` and `to`, give or take the skew.
        let within = |times: &[i64], from: Option<i64>, to: Option<i64>, skew: i64| match (from, to)
        {
            (Some(f), Some(t)) => times.iter().any(|x| *x > f - skew && *x <= t + skew),
            _ => false,
        };
        let mut m = Moved {
            affinity: Vec::new(),
            after_drain: Vec::new(),
            after_restart: Vec::new(),
            after_cut_poll: Vec::new(),
        };
        for c in &self.joined.crosses {
            let p = &pods[c.issued_pod as usize];
            let skew = p.skew_to(&pods[c.pod as usize]);
            // The issuing pod went on serving this very session after the move (beyond what
            // the two pods' clocks may disagree by): it was up.
            let moved_at = self
                .uses_on(&c.sid, c.pod)
                .and_then(|(first, _)| first)
                .or(c.at);
            let served_after = self
                .uses_on(&c.sid, c.issued_pod)
                .and_then(|(_, last)| last)
                .zip(moved_at)
                .is_some_and(|(l, t)| l > t + skew);
            if served_after {
                m.affinity.push(c);
                continue;
            }
            let restarted = match (c.issued_at, c.at) {
                (Some(f), Some(t)) => p.starts.iter().any(|x| *x > f && *x <= t + skew),
                _ => false,
            };
            let gone = match (p.last, c.at) {
                (Some(last), Some(t)) => last < t - skew,
                _ => false,
            };
            if within(&p.drains, c.issued_at, c.at, skew) || restarted || gone {
                m.after_drain.push(c);
            } else {
                m.affinity.push(c);
            }
        }
        for s in &self.joined.same_pod {
            let p = &pods[s.pod as usize];
            let restarted = match (s.issued_at, s.at) {
                (Some(f), Some(t)) => p.starts.iter().any(|x| *x > f && *x <= t),
                _ => false,
            };
            if restarted {
                m.after_restart.push(s);
            } else if s.cut_poll.is_some() {
                m.after_cut_poll.push(s);
            }
        }
        m
    }

    /// The first and latest use of `sid` on `pod`, while the join still remembers it
    /// (whatever order the records came in).
    fn uses_on(&self, sid: &str, pod: PodId) -> Option<(Option<i64>, Option<i64>)> {
        self.sids
            .get(sid)?
            .seen
            .iter()
            .flatten()
            .find(|h| h.pod == pod)
            .map(|h| (h.at, h.last_at))
    }

    /// Folds one exchange in: a handshake issues its sid; a later request joins it.
    pub fn fold(&mut self, r: &Rec<'_>, pod: PodId, aborted_poll: bool) {
        let Some(sid) = r.sid else {
            return;
        };
        let refused = r.flags.has(Flags::SID_UNKNOWN) || r.error_code == Some(1);
        if refused {
            self.sid_unknown += 1;
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
        entry.note(hit);
        let tally = &mut self.joined;
        match entry.issued {
            Some((issued_pod, issued_at)) => {
                if refused && issued_pod != pod {
                    self.foreign_refusals += 1;
                }
                if issued_pod == pod {
                    self.stayed_uses += 1;
                }
                tally.join(sid, entry, issued_pod, issued_at, hit);
            }
            None if refused && entry.state & UNJOINED == 0 => {
                entry.state |= UNJOINED;
                self.unjoined += 1;
                if self.unjoined_examples.len() < MAX_EXAMPLES {
                    let e = example(r, pod, describe(r));
                    self.unjoined_examples.push((sid.to_string(), e));
                }
            }
            None => {}
        }
    }

    fn issued(&mut self, sid: &str, pod: PodId, at: Option<i64>) {
        self.issued += 1;
        let entry = self
            .sids
            .entry(sid, |s: &str| Box::from(s), SidEntry::default);
        if entry.issued.is_some() {
            return;
        }
        entry.issued = Some((pod, at));
        if entry.state & UNJOINED != 0 {
            entry.state &= !UNJOINED;
            self.unjoined = self.unjoined.saturating_sub(1);
        }
        let hits = entry.seen.clone();
        let tally = &mut self.joined;
        for hit in hits.iter().flatten() {
            if hit.pod != pod {
                self.foreign_refusals += u64::from(hit.refusals);
            } else {
                self.stayed_uses += u64::from(hit.uses);
            }
            tally.join(sid, entry, pod, at, hit.as_ref());
        }
    }
}

/// What the joins found (kept apart from the sid table, so a join can update it while it
/// holds an entry of the table).
#[derive(Debug, Default)]
pub struct Joined {
    /// Sessions whose later requests all stayed on the issuing pod.
    pub stayed: u64,
    /// Of those, per issuing pod (for "pods that served at the same time").
    pub stayed_by_pod: Vec<u64>,
    pub crosses: Vec<Cross>,
    pub crosses_not_kept: u64,
    pub same_pod: Vec<SamePod>,
    pub same_pod_not_kept: u64,
}

impl Joined {
    /// Records what one use of a sid (`hit`) says, given the pod that issued it.
    fn join(
        &mut self,
        sid: &str,
        entry: &mut SidEntry,
        issued_pod: PodId,
        issued_at: Option<i64>,
        hit: HitRef<'_>,
    ) {
        let by_pod = |v: &mut Vec<u64>| {
            let i = issued_pod as usize;
            if v.len() <= i {
                v.resize(i + 1, 0);
            }
            i
        };
        if hit.pod != issued_pod {
            if entry.state & CROSSED == 0 {
                if entry.state & STAYED != 0 {
                    self.stayed = self.stayed.saturating_sub(1);
                    let i = by_pod(&mut self.stayed_by_pod);
                    self.stayed_by_pod[i] = self.stayed_by_pod[i].saturating_sub(1);
                }
                entry.state |= CROSSED;
                if self.crosses.len() < MAX_JOINED {
                    self.crosses.push(Cross {
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
                    self.crosses_not_kept += 1;
                }
            }
            return;
        }
        if entry.state & (STAYED | CROSSED) == 0 {
            entry.state |= STAYED;
            self.stayed += 1;
            let i = by_pod(&mut self.stayed_by_pod);
            self.stayed_by_pod[i] += 1;
        }
        if hit.refused && entry.state & SAME_POD_NOTED == 0 {
            entry.state |= SAME_POD_NOTED;
            if self.same_pod.len() < MAX_JOINED {
                let cut_poll = entry
                    .cut_poll
                    .filter(|(p, t, _)| *p == hit.pod && t.zip(hit.at).is_none_or(|(c, r)| c <= r))
                    .map(|(_, t, d)| (t, d));
                self.same_pod.push(SamePod {
                    sid: sid.to_string(),
                    pod: hit.pod,
                    issued_at,
                    at: hit.at,
                    id: hit.id.map(str::to_string),
                    cut_poll,
                });
            } else {
                self.same_pod_not_kept += 1;
            }
        }
    }
}

/// The earlier of two times; a missing time loses.
fn min_time(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A cross-pod use as evidence.
pub fn cross_example(pod_name: impl Fn(PodId) -> String, c: &Cross) -> Example {
    Example {
        time: c.at,
        pod: c.pod,
        id: c.id.clone(),
        text: format!(
            "sid {} issued on {}{} → {}",
            c.sid,
            pod_name(c.issued_pod),
            c.issued_at
                .map_or(String::new(), |t| format!(" at {}", clock(t))),
            c.what
        ),
    }
}
