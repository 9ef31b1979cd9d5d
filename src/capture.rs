//! Picks the logged request/response headers, keeps order and repeats, redacts secrets. Pure.
//!
//! Capture only reads: nothing here changes what is forwarded.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde::ser::{Serialize, SerializeMap, Serializer};

use std::borrow::Cow;

use crate::limits::{MAX_LOGGED_HEADER_BYTES, MAX_LOGGED_REPEATS, MAX_LOGGED_VALUE_BYTES};

/// Request headers always present in a record, `null` when absent (contract §2).
pub const REQUEST_ALWAYS: [HeaderName; 6] = [
    header::UPGRADE,
    header::CONNECTION,
    header::HOST,
    header::ORIGIN,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-proto"),
];

/// Request headers recorded when sent (contract §2).
pub const REQUEST_WHEN_SENT: [HeaderName; 15] = [
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-real-ip"),
    header::FORWARDED,
    header::VIA,
    header::USER_AGENT,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::SEC_WEBSOCKET_EXTENSIONS,
    header::COOKIE,
    HeaderName::from_static("x-cloud-trace-context"),
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("fix-origin"),
];

/// Response headers recorded when present (contract §2).
pub const RESPONSE_WHEN_SENT: [HeaderName; 6] = [
    header::UPGRADE,
    header::CONNECTION,
    header::SEC_WEBSOCKET_ACCEPT,
    header::CONTENT_TYPE,
    header::SET_COOKIE,
    HeaderName::from_static("x-pod-name"),
];

/// The engine.io cookie, whose value stays visible (it is the sid, not a secret).
const IO_COOKIE: &str = "io";
const REDACTED: &str = "<redacted>";

/// One logged header: absent, one value, or several values in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logged {
    Absent,
    One(String),
    Many(Vec<String>),
}

/// The logged headers of one message, in a fixed order, lowercase names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot(Vec<(HeaderName, Logged)>);

impl Snapshot {
    /// The first logged value of `name`, if it was sent.
    pub fn first(&self, name: &HeaderName) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| match v {
                Logged::Absent => None,
                Logged::One(s) => Some(s.as_str()),
                Logged::Many(all) => all.first().map(String::as_str),
            })
    }

    /// Every logged value of `name`, in order.
    pub fn all(&self, name: &HeaderName) -> &[String] {
        match self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v) {
            Some(Logged::One(s)) => std::slice::from_ref(s),
            Some(Logged::Many(all)) => all,
            _ => &[],
        }
    }

    /// True when `name` was sent at least once.
    pub fn has(&self, name: &HeaderName) -> bool {
        self.first(name).is_some()
    }

    /// Every logged header in order, for the record writer.
    pub fn entries(&self) -> &[(HeaderName, Logged)] {
        &self.0
    }

    /// True when no header was logged.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Snapshot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            match value {
                Logged::Absent => map.serialize_entry(name.as_str(), &())?,
                Logged::One(v) => map.serialize_entry(name.as_str(), v)?,
                Logged::Many(vs) => map.serialize_entry(name.as_str(), vs)?,
            }
        }
        map.end()
    }
}

/// Captures the request headers the contract lists, plus `extra` (`--capture-header`).
pub fn request(headers: &HeaderMap, extra: &[HeaderName]) -> Snapshot {
    let mut out = Vec::with_capacity(REQUEST_ALWAYS.len() + 4);
    let mut budget = MAX_LOGGED_HEADER_BYTES;
    for name in &REQUEST_ALWAYS {
        out.push((name.clone(), take(headers, name, &mut budget)));
    }
    for name in REQUEST_WHEN_SENT.iter().chain(extra) {
        if out.iter().any(|(n, _)| n == name) {
            continue;
        }
        let v = take(headers, name, &mut budget);
        if v != Logged::Absent {
            out.push((name.clone(), v));
        }
    }
    Snapshot(out)
}

/// Captures the response headers the contract lists, plus `extra`.
pub fn response(headers: &HeaderMap, extra: &[HeaderName]) -> Snapshot {
    let mut out = Vec::new();
    let mut budget = MAX_LOGGED_HEADER_BYTES;
    for name in RESPONSE_WHEN_SENT.iter().chain(extra) {
        if out.iter().any(|(n, _): &(HeaderName, Logged)| n == name) {
            continue;
        }
        let v = take(headers, name, &mut budget);
        if v != Logged::Absent {
            out.push((name.clone(), v));
        }
    }
    Snapshot(out)
}

/// `budget` is what is left of the message's [`MAX_LOGGED_HEADER_BYTES`]: once it is
/// spent, values are logged as their truncation marker only, so a record stays bounded
/// however many large headers a message carries.
fn take(headers: &HeaderMap, name: &HeaderName, budget: &mut usize) -> Logged {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Logged::Absent;
    };
    let first = render(name, first, budget);
    match values.next() {
        None => Logged::One(first),
        Some(second) => {
            let mut all = vec![first, render(name, second, budget)];
            for v in values.take(MAX_LOGGED_REPEATS.saturating_sub(2)) {
                all.push(render(name, v, budget));
            }
            Logged::Many(all)
        }
    }
}

/// The logged form of one value: redacted where secret, text, size-bounded.
fn render(name: &HeaderName, value: &HeaderValue, budget: &mut usize) -> String {
    let limit = MAX_LOGGED_VALUE_BYTES.min(*budget);
    let out = crate::text::truncate_to(redacted(name, value), limit, value.len());
    *budget = budget.saturating_sub(out.len());
    out
}

fn redacted(name: &HeaderName, value: &HeaderValue) -> String {
    let text = text_cow(value.as_bytes());
    if name == header::COOKIE {
        redact_cookie(&text)
    } else if name == header::SET_COOKIE {
        redact_set_cookie(&text)
    } else if name == header::AUTHORIZATION || name == header::PROXY_AUTHORIZATION {
        REDACTED.to_string()
    } else {
        text.into_owned()
    }
}

/// Header bytes as a string: UTF-8 when valid, otherwise each byte as the Latin-1
/// character of the same value (RFC 9110 obs-text), so no byte is lost or merged.
pub fn text(bytes: &[u8]) -> String {
    text_cow(bytes).into_owned()
}

fn text_cow(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(bytes.iter().map(|&b| b as char).collect()),
    }
}

/// `a=1; io=abc; b=2` → `a=<redacted>; io=abc; b=<redacted>`: names stay, values go,
/// except the engine.io `io` cookie.
pub fn redact_cookie(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, pair) in value.split(';').enumerate() {
        if i > 0 {
            out.push(';');
        }
        push_redacted_pair(&mut out, pair);
    }
    out
}

/// `GCLB=xyz; Path=/; HttpOnly` → `GCLB=<redacted>; Path=/; HttpOnly`: only the cookie's
/// own value is secret; its attributes are kept.
pub fn redact_set_cookie(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + REDACTED.len());
    match value.split_once(';') {
        Some((pair, attrs)) => {
            push_redacted_pair(&mut out, pair);
            out.push(';');
            out.push_str(attrs);
        }
        None => push_redacted_pair(&mut out, value),
    }
    out
}

/// `a=1&access_token=xyz` → `a=1&access_token=<redacted>`: the value of every
/// parameter named in `names` (lower-case; compared case-insensitively, after
/// percent-decoding the name) is replaced; everything else is kept byte for byte.
pub fn redact_query<'a>(query: &'a str, names: &[String]) -> Cow<'a, str> {
    let secret = |pair: &str| {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        let name = crate::text::percent_decode(name);
        pair.contains('=') && names.iter().any(|n| n.eq_ignore_ascii_case(&name))
    };
    if names.is_empty() || !query.split('&').any(secret) {
        return Cow::Borrowed(query);
    }
    let mut out = String::with_capacity(query.len());
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, _)) if secret(pair) => {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(pair),
        }
    }
    Cow::Owned(out)
}

fn push_redacted_pair(out: &mut String, pair: &str) {
    match pair.split_once('=') {
        Some((name, _)) if name.trim() == IO_COOKIE => out.push_str(pair),
        Some((name, _)) => {
            out.push_str(name);
            out.push('=');
            out.push_str(REDACTED);
        }
        None if pair.trim().is_empty() => out.push_str(pair),
        None => out.push_str(REDACTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        m
    }

    fn json(s: &Snapshot) -> String {
        serde_json::to_string(s).unwrap()
    }

    #[test]
    fn always_present_and_repeats() {
        let m = map(&[
            ("Host", b"ide.example.com"),
            ("X-Forwarded-For", b"203.0.113.7, 34.1.2.3"),
            ("X-Forwarded-For", b"35.191.0.1"),
            ("User-Agent", b"Mozilla/5.0"),
            ("X-Secret", b"nope"),
        ]);
        let s = request(&m, &[]);
        assert_eq!(
            json(&s),
            r#"{"upgrade":null,"connection":null,"host":"ide.example.com","origin":null,"x-forwarded-for":["203.0.113.7, 34.1.2.3","35.191.0.1"],"x-forwarded-proto":null,"user-agent":"Mozilla/5.0"}"#
        );
        assert_eq!(s.first(&header::HOST), Some("ide.example.com"));
        assert!(!s.has(&header::UPGRADE));
    }

    #[test]
    fn extra_headers_and_no_duplicates() {
        let m = map(&[
            ("X-Req", b"1"),
            ("Host", b"h"),
            ("authorization", b"Bearer t0ken"),
        ]);
        let extra = [
            HeaderName::from_static("x-req"),
            header::HOST,
            header::AUTHORIZATION,
            HeaderName::from_static("x-missing"),
        ];
        let s = json(&request(&m, &extra));
        assert!(
            s.ends_with(r#""x-req":"1","authorization":"<redacted>"}"#),
            "{s}"
        );
        assert_eq!(s.matches("\"host\"").count(), 1);
        assert!(!s.contains("t0ken"));
    }

    #[test]
    fn cookies_are_redacted_but_io() {
        for (input, want) in [
            (
                "session=abc; io=s1d; theia-connection-token=tok",
                "session=<redacted>; io=s1d; theia-connection-token=<redacted>",
            ),
            ("io=only", "io=only"),
            ("GCLB=\"x=y\"", "GCLB=<redacted>"),
            ("novalue", "<redacted>"),
            ("a=1;", "a=<redacted>;"),
            ("", ""),
            ("io2=x; xio=y", "io2=<redacted>; xio=<redacted>"),
        ] {
            assert_eq!(redact_cookie(input), want, "{input}");
        }
        for (input, want) in [
            (
                "io=s1d; Path=/; HttpOnly; SameSite=Lax",
                "io=s1d; Path=/; HttpOnly; SameSite=Lax",
            ),
            (
                "GCLB=CKX; path=/; HttpOnly",
                "GCLB=<redacted>; path=/; HttpOnly",
            ),
            ("token=abc", "token=<redacted>"),
        ] {
            assert_eq!(redact_set_cookie(input), want, "{input}");
        }
        let m = map(&[("set-cookie", b"GCLB=CKX; path=/"), ("set-cookie", b"io=z")]);
        assert_eq!(
            json(&response(&m, &[])),
            r#"{"set-cookie":["GCLB=<redacted>; path=/","io=z"]}"#
        );
    }

    #[test]
    fn hostile_bytes_stay_one_json_line() {
        let m = map(&[
            ("Origin", b"https://caf\xe9.example"),
            ("User-Agent", b"a\tb\xffc\"\\"),
            ("Host", "ünï".as_bytes()),
        ]);
        let s = request(&m, &[]);
        assert_eq!(s.first(&header::ORIGIN), Some("https://caf\u{e9}.example"));
        assert_eq!(s.first(&header::HOST), Some("ünï"));
        let line = json(&s);
        assert!(!line.contains('\n') && !line.contains('\t'));
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["user-agent"], "a\tb\u{ff}c\"\\");
    }

    #[test]
    fn long_values_and_many_repeats_are_bounded() {
        let long = vec![b'x'; MAX_LOGGED_VALUE_BYTES * 3];
        let mut m = map(&[("via", &long)]);
        for _ in 0..100 {
            m.append(header::ORIGIN, HeaderValue::from_static("o"));
        }
        let s = request(&m, &[]);
        let via = s.first(&header::VIA).unwrap();
        assert!(via.len() < MAX_LOGGED_VALUE_BYTES + 40);
        assert!(via.ends_with(&format!("…[truncated, {} bytes]", long.len())));
        match &s.0.iter().find(|(n, _)| n == header::ORIGIN).unwrap().1 {
            Logged::Many(v) => assert_eq!(v.len(), MAX_LOGGED_REPEATS),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn many_large_headers_stay_within_the_message_budget() {
        let big = vec![b'v'; MAX_LOGGED_VALUE_BYTES];
        let mut m = HeaderMap::new();
        for _ in 0..MAX_LOGGED_REPEATS {
            for name in [header::VIA, header::USER_AGENT, header::FORWARDED] {
                m.append(name, HeaderValue::from_bytes(&big).unwrap());
            }
        }
        let s = request(&m, &[]);
        let total = json(&s).len();
        // The budget plus one marker per value, never 3 × 32 × 4 KiB.
        assert!(
            total < MAX_LOGGED_HEADER_BYTES + 3 * MAX_LOGGED_REPEATS * 40,
            "{total}"
        );
        let via = s.all(&header::VIA);
        assert_eq!(via.len(), MAX_LOGGED_REPEATS, "every value still named");
        assert!(s.all(&header::USER_AGENT)[0].starts_with("…[truncated"));
    }

    #[test]
    fn a_long_secret_is_redacted_without_a_false_truncation_marker() {
        let long = format!("session={}", "s".repeat(MAX_LOGGED_VALUE_BYTES * 2));
        let m = map(&[("cookie", long.as_bytes())]);
        let s = request(&m, &[]);
        assert_eq!(s.first(&header::COOKIE), Some("session=<redacted>"));
    }

    #[test]
    fn token_query_parameters_are_redacted() {
        let names = ["token".to_string(), "access_token".to_string()];
        for (q, want) in [
            ("EIO=4&transport=polling", "EIO=4&transport=polling"),
            ("token=abc&t=1", "token=<redacted>&t=1"),
            ("a=1&ACCESS_TOKEN=x&b", "a=1&ACCESS_TOKEN=<redacted>&b"),
            ("access%5Ftoken=x", "access%5Ftoken=<redacted>"),
            ("token", "token"),
            ("token=", "token=<redacted>"),
            ("tokens=abc", "tokens=abc"),
            ("", ""),
        ] {
            assert_eq!(redact_query(q, &names), want, "{q}");
        }
        assert!(matches!(redact_query("EIO=4", &names), Cow::Borrowed(_)));
        assert_eq!(redact_query("token=abc", &[]), "token=abc");
    }
}
