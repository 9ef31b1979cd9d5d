//! Encodes and splits engine.io polling payloads and reads open packets. Pure.
//!
//! v4: packets joined by the record separator `\x1e`; v3: each packet prefixed with its
//! length and a colon (engine.io-protocol v3/v4, shared/PROTOCOL-NOTES.md §A.2–A.3).
//! The sid itself comes from [`crate::sio::open_packet_sid`].

use serde::{Deserialize, Serialize};

use super::target::Eio;

const RECORD_SEPARATOR: char = '\u{1e}';

/// Joins packets into one polling request body.
pub fn encode(eio: Eio, packets: &[&str]) -> String {
    match eio {
        Eio::V4 => packets.join(&RECORD_SEPARATOR.to_string()),
        Eio::V3 => packets
            .iter()
            .map(|p| format!("{}:{p}", p.encode_utf16().count()))
            .collect(),
    }
}

/// Splits a polling response body into its packets. A v3 body that does not follow the
/// length-prefixed format is returned whole, as one packet, so the caller can show it.
pub fn split(eio: Eio, body: &str) -> Vec<String> {
    match eio {
        Eio::V4 => body.split(RECORD_SEPARATOR).map(str::to_string).collect(),
        Eio::V3 => split_v3(body).unwrap_or_else(|| vec![body.to_string()]),
    }
}

fn split_v3(body: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (len, tail) = rest.split_once(':')?;
        let len: usize = len.parse().ok()?;
        // The length counts UTF-16 code units (JavaScript's string length).
        let mut units = 0;
        let mut end = 0;
        for (i, c) in tail.char_indices() {
            if units >= len {
                break;
            }
            units += c.len_utf16();
            end = i + c.len_utf8();
        }
        if units != len {
            return None;
        }
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    Some(out)
}

/// The fields of an open packet (`0{…}`) the probe shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Open {
    pub sid: String,
    #[serde(default)]
    pub upgrades: Vec<String>,
    #[serde(rename = "pingInterval", default)]
    pub ping_interval: Option<u64>,
    #[serde(rename = "pingTimeout", default)]
    pub ping_timeout: Option<u64>,
}

/// Reads an open packet; `None` when `packet` is not one.
pub fn open(packet: &str) -> Option<Open> {
    serde_json::from_str(packet.strip_prefix('0')?).ok()
}

/// The socket.io namespace a `4x` packet belongs to: `/` unless it starts with `/name,`.
pub fn namespace(packet: &str) -> &str {
    let rest = packet.get(2..).unwrap_or("");
    if rest.starts_with('/') {
        rest.split(',').next().unwrap_or(rest)
    } else {
        "/"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_and_split() {
        assert_eq!(encode(Eio::V4, &["40"]), "40");
        assert_eq!(encode(Eio::V4, &["2", "40"]), "2\u{1e}40");
        assert_eq!(encode(Eio::V3, &["2", "40/a,"]), "1:25:40/a,");
        assert_eq!(encode(Eio::V3, &["4é😀"]), "4:4é😀");
        // (eio, body, packets)
        let cases: &[(Eio, &str, &[&str])] = &[
            (Eio::V4, "40{\"sid\":\"x\"}", &["40{\"sid\":\"x\"}"]),
            (Eio::V4, "6\u{1e}40{}\u{1e}2", &["6", "40{}", "2"]),
            (Eio::V4, "", &[""]),
            (Eio::V3, "1:32:40", &["3", "40"]),
            (Eio::V3, "4:4é😀1:6", &["4é😀", "6"]),
            (Eio::V3, "ok", &["ok"]),
            (Eio::V3, "9:3", &["9:3"]),
            (Eio::V3, "", &[]),
        ];
        for (eio, body, want) in cases {
            assert_eq!(split(*eio, body), want.to_vec(), "{eio:?} {body:?}");
        }
    }

    #[test]
    fn open_packets_and_namespaces() {
        let o = open(r#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#).unwrap();
        assert_eq!(o.sid, "abc");
        assert_eq!(o.upgrades, ["websocket"]);
        assert_eq!(
            (o.ping_interval, o.ping_timeout),
            (Some(25000), Some(20000))
        );
        assert_eq!(
            open(r#"0{"sid":"a"}"#).unwrap().upgrades,
            Vec::<String>::new()
        );
        for bad in ["", "0", "40{\"sid\":\"a\"}", "0{}", "0{\"sid\":1}"] {
            assert_eq!(open(bad), None, "{bad:?}");
        }
        assert_eq!(namespace("40"), "/");
        assert_eq!(namespace("40{\"sid\":\"x\"}"), "/");
        assert_eq!(
            namespace("44/sockproxy-probe,{\"message\":\"Invalid namespace\"}"),
            "/sockproxy-probe"
        );
        assert_eq!(namespace("40/services,"), "/services");
        assert_eq!(namespace("4"), "/");
    }
}
