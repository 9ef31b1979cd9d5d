//! The small pieces every part of the report shares: pod ids, quoted examples, distinct
//! value sets, and how a record, a status, a duration or a time is written. Pure; imports
//! no other part of the analysis.

use std::collections::HashSet;

use super::parse::{Rec, Transport};

pub type PodId = u32;

/// How many examples each piece of evidence keeps (the earliest by time).
pub const MAX_EXAMPLES: usize = 3;
/// Joined observations kept whole for the verdicts (the rest are only counted).
pub const MAX_JOINED: usize = 2048;
/// Distinct values (clients, origins) counted exactly; past this, counts are lower bounds.
pub const MAX_DISTINCT: usize = 50_000;

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

/// Distinct strings (clients, origins), exact up to [`MAX_DISTINCT`].
#[derive(Clone, Debug, Default)]
pub struct Distinct {
    set: HashSet<Box<str>>,
    pub saturated: bool,
}

impl Distinct {
    pub fn add(&mut self, v: &str) {
        if self.set.contains(v) {
            return;
        }
        if self.set.len() >= MAX_DISTINCT {
            self.saturated = true;
            return;
        }
        self.set.insert(Box::from(v));
    }

    pub fn len(&self) -> u64 {
        self.set.len() as u64
    }

    pub fn contains(&self, v: &str) -> bool {
        self.set.contains(v)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.set.iter().map(|s| &**s)
    }
}

pub fn example(r: &Rec<'_>, pod: PodId, text: String) -> Example {
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

pub fn status_text(status: u16) -> String {
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

/// `12:55:47.634` (UTC).
pub fn clock(us: i64) -> String {
    let t = super::parse::format_time(us);
    t[11..23].to_string()
}

/// Up to `n` values, sorted, then how many more.
pub fn list(d: &Distinct, n: usize) -> String {
    let mut v: Vec<&str> = d.iter().collect();
    v.sort_unstable();
    let more = v.len().saturating_sub(n);
    v.truncate(n);
    let mut s = v.join(", ");
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

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
