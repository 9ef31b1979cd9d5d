//! Decodes socket.io path/query fields and engine.io bodies (open packets, errors). Pure.
//!
//! Wire facts: engine.io protocol v4 (`docs/engine.io-protocol/v4-current.md` in
//! socketio/socket.io) and engine.io `lib/server.ts` (`Server.errors`, `abortRequest`,
//! `abortUpgrade`), summarised in shared/PROTOCOL-NOTES.md §A–B.

use serde::Serialize;

use crate::text;

/// The engine.io fields of a socket.io request (contract §2, `sio`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sio {
    pub eio: Option<String>,
    pub transport: Option<String>,
    pub sid: Option<String>,
    pub t: Option<String>,
    /// True on a polling handshake whose answer carried an open packet.
    pub handshake: bool,
}

impl Sio {
    /// Reads `EIO`, `transport`, `sid` and `t` from a raw query string.
    /// The first occurrence of a key wins; values are percent-decoded.
    pub fn from_query(query: Option<&str>) -> Self {
        let mut sio = Sio::default();
        for pair in query.unwrap_or("").split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match key {
                "EIO" => &mut sio.eio,
                "transport" => &mut sio.transport,
                "sid" => &mut sio.sid,
                "t" => &mut sio.t,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(text::truncate(text::percent_decode(value).into_owned()));
            }
        }
        sio
    }

    /// True when the query names the websocket transport.
    pub fn is_websocket(&self) -> bool {
        self.transport.as_deref() == Some("websocket")
    }

    /// True when the query names the polling transport.
    pub fn is_polling(&self) -> bool {
        self.transport.as_deref() == Some("polling")
    }
}

/// True when `path` is a socket.io path: it contains `sio_path` anywhere
/// (nginx may forward `/theia/socket.io/` unchanged, or rewritten to `/socket.io/`).
pub fn is_sio_path(path: &str, sio_path: &str) -> bool {
    path.contains(sio_path)
}

/// An engine.io error decoded from a response body (contract §2, `sio_error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SioError {
    pub code: Option<u8>,
    pub message: String,
}

/// engine.io's `Server.errorMessages`, index = code.
pub const ERROR_MESSAGES: [&str; 6] = [
    "Transport unknown",
    "Session ID unknown",
    "Bad handshake method",
    "Bad request",
    "Forbidden",
    "Unsupported protocol version",
];

/// engine.io code 1: the sid is not known to this server process.
pub const CODE_SID_UNKNOWN: u8 = 1;
/// engine.io code 4: `allowRequest` refused the handshake.
pub const CODE_FORBIDDEN: u8 = 4;

/// Longest message kept from an error body that is not an engine.io error.
const OTHER_MESSAGE_CHARS: usize = 200;

/// Decodes the (possibly truncated) body of an error response on a socket.io path.
///
/// Two forms: the JSON body of `abortRequest` (`{"code":1,"message":"Session ID unknown"}`,
/// 400 or 403, usually chunked) and the plain text of `abortUpgrade`'s raw 400 on the
/// upgrade path (`Session ID unknown`, `Forbidden`, `Bad request`), mapped to codes.
/// Anything else: `code` null and the first 200 characters.
pub fn decode_error(body: &[u8]) -> SioError {
    #[derive(serde::Deserialize)]
    struct Json {
        code: u8,
        message: String,
    }
    let trimmed = body.trim_ascii();
    if let Ok(j) = serde_json::from_slice::<Json>(trimmed) {
        return SioError {
            code: Some(j.code),
            message: j.message,
        };
    }
    let text = String::from_utf8_lossy(trimmed);
    if let Some(code) = ERROR_MESSAGES.iter().position(|m| *m == text) {
        return SioError {
            code: Some(code as u8),
            message: text.into_owned(),
        };
    }
    SioError {
        code: None,
        message: text.chars().take(OTHER_MESSAGE_CHARS).collect(),
    }
}

/// Finds the sid in an engine.io open packet at the start of a polling handshake body.
///
/// EIO 4: `0{"sid":…}` (further packets may follow after the record separator `\x1e`).
/// EIO 3: the length-prefixed payload `96:0{"sid":…}`.
pub fn open_packet_sid(body: &[u8]) -> Option<String> {
    let packet = match body.first()? {
        b'0' => body.split(|b| *b == 0x1e).next()?,
        b'1'..=b'9' => {
            // EIO 3: <decimal length>:<packet>; the length counts characters.
            let colon = body.iter().position(|b| *b == b':')?;
            let len: usize = std::str::from_utf8(&body[..colon]).ok()?.parse().ok()?;
            let rest = &body[colon + 1..];
            // JavaScript string length: UTF-16 code units, not bytes. A peek may end
            // inside a character; only the valid prefix counts.
            let text = match std::str::from_utf8(rest) {
                Ok(text) => text,
                Err(e) => std::str::from_utf8(&rest[..e.valid_up_to()]).ok()?,
            };
            let mut units = 0;
            let end = text
                .char_indices()
                .find_map(|(i, c)| {
                    let at = (units >= len).then_some(i);
                    units += c.len_utf16();
                    at
                })
                .unwrap_or(text.len());
            let packet = &rest[..end];
            if packet.first() != Some(&b'0') {
                return None;
            }
            packet
        }
        _ => return None,
    };
    open_json_sid(&packet[1..])
}

fn open_json_sid(json: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Open {
        sid: String,
    }
    serde_json::from_slice::<Open>(json).ok().map(|o| o.sid)
}

/// Finds the sid in the first upstream→client websocket frame of a websocket-only
/// handshake: an unmasked text frame whose payload is `0{"sid":…}`.
///
/// `bytes` is the start of the stream after the 101. Returns `Err(())` when the frame
/// cannot hold an open packet, `Ok(None)` when more bytes are needed.
#[allow(clippy::result_unit_err)] // the error carries nothing: "stop looking"
pub fn first_frame_sid(bytes: &[u8]) -> Result<Option<String>, ()> {
    let (Some(&b0), Some(&b1)) = (bytes.first(), bytes.get(1)) else {
        return Ok(None);
    };
    // FIN + text opcode; a server frame is never masked (RFC 6455 §5.1).
    if b0 != 0x81 || b1 & 0x80 != 0 {
        return Err(());
    }
    let (len, start) = match b1 & 0x7f {
        126 => match bytes.get(2..4) {
            Some(l) => (u16::from_be_bytes([l[0], l[1]]) as usize, 4),
            None => return Ok(None),
        },
        127 => return Err(()), // an open packet is never that long
        n => (n as usize, 2),
    };
    let Some(payload) = bytes.get(start..start + len) else {
        return Ok(None);
    };
    match payload.first() {
        Some(b'0') => Ok(open_json_sid(&payload[1..])),
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Sio {
        Sio::from_query(Some(s))
    }

    #[test]
    fn query_fields() {
        let s = q("EIO=4&transport=polling&t=PXyz12a");
        assert_eq!(s.eio.as_deref(), Some("4"));
        assert_eq!(s.transport.as_deref(), Some("polling"));
        assert_eq!(s.t.as_deref(), Some("PXyz12a"));
        assert_eq!(s.sid, None);
        assert!(s.is_polling() && !s.is_websocket());

        let s = q("EIO=4&transport=websocket&sid=pldOE_izlXK4ext8AAAA");
        assert_eq!(s.sid.as_deref(), Some("pldOE_izlXK4ext8AAAA"));
        assert!(s.is_websocket());

        assert_eq!(q("EIO=3").transport, None, "EIO with no transport");
        assert_eq!(q("sid=a&sid=b").sid.as_deref(), Some("a"), "first wins");
        assert_eq!(q("sid=a%2Db+c").sid.as_deref(), Some("a-b c"));
        assert_eq!(
            q("sid=%zz%4").sid.as_deref(),
            Some("%zz%4"),
            "bad escapes kept"
        );
        assert_eq!(q("EIO").eio.as_deref(), Some(""));
        assert_eq!(Sio::from_query(None), Sio::default());
        assert_eq!(q("&&=&transport=").transport.as_deref(), Some(""));
    }

    #[test]
    fn sio_path_matches_anywhere() {
        assert!(is_sio_path("/socket.io/", "/socket.io/"));
        assert!(is_sio_path("/theia/socket.io/", "/socket.io/"));
        assert!(!is_sio_path("/socket.io", "/socket.io/"));
        assert!(!is_sio_path("/health", "/socket.io/"));
    }

    #[test]
    fn error_bodies() {
        let cases: &[(&[u8], Option<u8>, &str)] = &[
            (
                br#"{"code":1,"message":"Session ID unknown"}"#,
                Some(1),
                "Session ID unknown",
            ),
            (
                br#"{"code":3,"message":"Bad request"}"#,
                Some(3),
                "Bad request",
            ),
            (
                br#"{"code":4,"message":"Validation error"}"#,
                Some(4),
                "Validation error",
            ),
            (b"Session ID unknown", Some(1), "Session ID unknown"),
            (b"Forbidden", Some(4), "Forbidden"),
            (b"Bad request", Some(3), "Bad request"),
            (b"Transport unknown", Some(0), "Transport unknown"),
            (
                b"Unsupported protocol version",
                Some(5),
                "Unsupported protocol version",
            ),
            (b"Bad handshake method", Some(2), "Bad handshake method"),
            (b"Invalid Upgrade header", None, "Invalid Upgrade header"),
            (b"", None, ""),
            (
                b"<html>\xff\xfe</html>",
                None,
                "<html>\u{fffd}\u{fffd}</html>",
            ),
            (br#"{"code":"x"}"#, None, r#"{"code":"x"}"#),
        ];
        for (body, code, message) in cases {
            let e = decode_error(body);
            assert_eq!((e.code, e.message.as_str()), (*code, *message), "{body:?}");
        }
        let long = "x".repeat(1000);
        assert_eq!(decode_error(long.as_bytes()).message.len(), 200);
    }

    #[test]
    fn open_packets() {
        let v4 = br#"0{"sid":"pldOE_izlXK4ext8AAAA","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        assert_eq!(open_packet_sid(v4).as_deref(), Some("pldOE_izlXK4ext8AAAA"));
        let with_more = b"0{\"sid\":\"abc\"}\x1e40";
        assert_eq!(open_packet_sid(with_more).as_deref(), Some("abc"));
        let open =
            r#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000}"#;
        let v3 = format!("{}:{open}2:40", open.len());
        assert_eq!(open_packet_sid(v3.as_bytes()).as_deref(), Some("abc"));
        for bad in [
            &b""[..],
            b"ok",
            b"40{\"sid\":\"x\"}",
            b"0{\"sid\":",
            b"3:40",
            b"9:",
            b"0{}",
        ] {
            assert_eq!(open_packet_sid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn first_frames() {
        let payload = br#"0{"sid":"wsOnly","upgrades":[],"pingInterval":25000}"#;
        let mut frame = vec![0x81, payload.len() as u8];
        frame.extend_from_slice(payload);
        assert_eq!(first_frame_sid(&frame), Ok(Some("wsOnly".into())));
        assert_eq!(first_frame_sid(&frame[..10]), Ok(None), "needs more");
        assert_eq!(first_frame_sid(&frame[..1]), Ok(None));
        let p = format!("0{{\"sid\":\"{}\"}}", "s".repeat(121));
        let mut long = vec![0x81, 126, 0, p.len() as u8];
        long.extend_from_slice(p.as_bytes());
        assert_eq!(first_frame_sid(&long).unwrap().unwrap().len(), 121);
        assert_eq!(first_frame_sid(&[0x82, 1, b'0']), Err(()), "binary");
        assert_eq!(
            first_frame_sid(&[0x81, 0x81, 0, 0, 0, 0, b'0']),
            Err(()),
            "masked"
        );
        assert_eq!(first_frame_sid(&[0x81, 1, b'3']), Err(()), "not open");
        assert_eq!(first_frame_sid(&[0x81, 127]), Err(()));
    }
}
