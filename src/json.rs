//! The record writer's hot path: `request`, `upgrade` and `tunnel_closed` written as
//! JSON straight into the line buffer, byte for byte what `serde_json` writes for the
//! same structs (a property test holds the two equal), in about a third of the
//! instructions.
//!
//! Why not serde_json alone: every key and string value goes through its escaping loop,
//! a table lookup per byte, and the keys are escaped again on every record. Here keys
//! are written as the constants they are, and a string is checked for bytes that need
//! escaping eight at a time, then copied in one piece.

use crate::capture::{Logged, Snapshot};
use crate::record::{Event, Exchange, HttpRequest, Trace, TunnelClosed};
use crate::sio::{Sio, SioError};

/// Serialises `event`'s own fields as one JSON object: `request`, `upgrade` and
/// `tunnel_closed` (one per exchange or tunnel) with the fast writers of this module,
/// the rarer events with serde_json.
pub fn event_fields(out: &mut Vec<u8>, event: &Event) -> serde_json::Result<()> {
    match event {
        Event::Listening(e) => serde_json::to_writer(out, e),
        Event::Request(e) | Event::Upgrade(e) => {
            exchange(out, e);
            Ok(())
        }
        Event::TunnelClosed(e) => {
            tunnel_closed(out, e);
            Ok(())
        }
        Event::Draining(e) => serde_json::to_writer(out, e),
        Event::Stopped(e) => serde_json::to_writer(out, e),
        Event::RecordsDropped(e) => serde_json::to_writer(out, e),
        Event::StartupFailed(e) => serde_json::to_writer(out, e),
        Event::ClientError(e) => serde_json::to_writer(out, e),
        Event::ConnectionLimit(e) => serde_json::to_writer(out, e),
    }
}

/// [`event_fields`] with serde_json for every event: the reference the fast writers
/// are compared against (tests/props.rs).
pub fn event_fields_serde(out: &mut Vec<u8>, event: &Event) -> serde_json::Result<()> {
    match event {
        Event::Request(e) | Event::Upgrade(e) => serde_json::to_writer(out, e),
        Event::TunnelClosed(e) => serde_json::to_writer(out, e),
        other => event_fields(out, other),
    }
}

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes it: `"`, `\`
/// and the control characters below U+0020 (`\b \t \n \f \r`, others `\u00xx`).
pub fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if is_clean(bytes) {
        out.extend_from_slice(bytes); // the usual case: one copy
    } else {
        let mut clean_from = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let escape = escape_of(b);
            if escape != 0 {
                out.extend_from_slice(&bytes[clean_from..i]);
                push_escape(out, b, escape);
                clean_from = i + 1;
            }
        }
        out.extend_from_slice(&bytes[clean_from..]);
    }
    out.push(b'"');
}

/// True when no byte needs escaping. Eight bytes per step and no early exit, so the
/// compiler can widen the loop to vector registers.
fn is_clean(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let mut dirty = 0;
    for w in &mut words {
        dirty |= escape_bits(u64::from_le_bytes(w.try_into().expect("8 bytes")));
    }
    let mut tail = [b' '; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    dirty |= escape_bits(u64::from_le_bytes(tail));
    dirty == 0
}

/// Non-zero when any of the eight bytes is below 0x20, `"` or `\` (exact: the classic
/// "has a byte less than n / equal to zero" word tests; bytes ≥ 0x80 never match).
fn escape_bits(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w;
    let q = w ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q;
    let b = w ^ (ONES * u64::from(b'\\'));
    let backslash = b.wrapping_sub(ONES) & !b;
    (below_space | quote | backslash) & HIGH
}

/// serde_json's escape for byte `b`: 0 for none, `u` for `\u00xx`, else the letter.
fn escape_of(b: u8) -> u8 {
    match b {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x09 => b't',
        0x0a => b'n',
        0x0c => b'f',
        0x0d => b'r',
        0x00..=0x1f => b'u',
        _ => 0,
    }
}

fn push_escape(out: &mut Vec<u8>, b: u8, escape: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if escape == b'u' {
        out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 0xf)],
        ]);
    } else {
        out.extend_from_slice(&[b'\\', escape]);
    }
}

/// One JSON object being written: keys are constants (written as they are), values
/// through the typed methods.
struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Obj { out, first: true }
    }

    fn key(&mut self, key: &'static str) -> &mut Vec<u8> {
        debug_assert!(!key.bytes().any(|b| escape_of(b) != 0));
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    fn str(&mut self, key: &'static str, v: &str) {
        string(self.key(key), v);
    }

    fn opt_str(&mut self, key: &'static str, v: Option<&str>) {
        match v {
            Some(v) => self.str(key, v),
            None => self.key(key).extend_from_slice(b"null"),
        }
    }

    /// Written only when present (`skip_serializing_if = "Option::is_none"`).
    fn some_str(&mut self, key: &'static str, v: Option<&str>) {
        if let Some(v) = v {
            self.str(key, v);
        }
    }

    fn uint(&mut self, key: &'static str, v: u64) {
        let mut buf = itoa::Buffer::new();
        self.key(key).extend_from_slice(buf.format(v).as_bytes());
    }

    fn float(&mut self, key: &'static str, v: f64) {
        // serde_json's own float formatting (ryu; null when not finite).
        let out = self.key(key);
        serde_json::to_writer(out, &v).expect("a float always serialises");
    }

    fn bool(&mut self, key: &'static str, v: bool) {
        let text: &[u8] = if v { b"true" } else { b"false" };
        self.key(key).extend_from_slice(text);
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// `request` / `upgrade` fields, as `#[derive(Serialize)]` on [`Exchange`] writes them.
pub fn exchange(out: &mut Vec<u8>, e: &Exchange) {
    let mut o = Obj::open(out);
    o.str("id", &e.id);
    o.uint("conn", e.conn);
    o.str("client", &e.client);
    o.str("method", &e.method);
    o.str("path", &e.path);
    o.opt_str("query", e.query.as_deref());
    if let Some(sio) = &e.sio {
        self::sio(o.key("sio"), sio);
    }
    o.uint("status", u64::from(e.status));
    snapshot(o.key("headers"), &e.headers);
    snapshot(o.key("resp_headers"), &e.resp_headers);
    if let Some(err) = &e.sio_error {
        sio_error(o.key("sio_error"), err);
    }
    let flags = o.key("flags");
    flags.push(b'[');
    for (i, f) in e.flags.iter().enumerate() {
        if i > 0 {
            flags.push(b',');
        }
        string(flags, f);
    }
    flags.push(b']');
    o.float("duration_ms", e.duration_ms);
    o.uint("bytes_in", e.bytes_in);
    o.uint("bytes_out", e.bytes_out);
    o.str("outcome", e.outcome.as_str());
    o.some_str("upstream_error", e.upstream_error.as_deref());
    http_request(o.key("httpRequest"), &e.http_request);
    trace(&mut o, &e.trace);
    o.close();
}

/// `tunnel_closed` fields, as `#[derive(Serialize)]` on [`TunnelClosed`] writes them.
pub fn tunnel_closed(out: &mut Vec<u8>, t: &TunnelClosed) {
    let mut o = Obj::open(out);
    o.str("id", &t.id);
    o.uint("conn", t.conn);
    o.str("client", &t.client);
    o.str("path", &t.path);
    if let Some(sio) = &t.sio {
        self::sio(o.key("sio"), sio);
    }
    o.float("duration_ms", t.duration_ms);
    o.uint("bytes_client_to_upstream", t.bytes_client_to_upstream);
    o.uint("bytes_upstream_to_client", t.bytes_upstream_to_client);
    o.str("closed_by", t.closed_by.as_str());
    o.opt_str("error", t.error.as_deref());
    http_request(o.key("httpRequest"), &t.http_request);
    trace(&mut o, &t.trace);
    o.close();
}

fn sio(out: &mut Vec<u8>, s: &Sio) {
    let mut o = Obj::open(out);
    o.opt_str("eio", s.eio.as_deref());
    o.opt_str("transport", s.transport.as_deref());
    o.opt_str("sid", s.sid.as_deref());
    o.opt_str("t", s.t.as_deref());
    o.bool("handshake", s.handshake);
    o.close();
}

fn sio_error(out: &mut Vec<u8>, e: &SioError) {
    let mut o = Obj::open(out);
    match e.code {
        Some(code) => o.uint("code", u64::from(code)),
        None => o.key("code").extend_from_slice(b"null"),
    }
    o.str("message", &e.message);
    o.close();
}

fn snapshot(out: &mut Vec<u8>, s: &Snapshot) {
    out.push(b'{');
    for (i, (name, value)) in s.entries().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, name.as_str());
        out.push(b':');
        match value {
            Logged::Absent => out.extend_from_slice(b"null"),
            Logged::One(v) => string(out, v),
            Logged::Many(all) => {
                out.push(b'[');
                for (j, v) in all.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    string(out, v);
                }
                out.push(b']');
            }
        }
    }
    out.push(b'}');
}

fn http_request(out: &mut Vec<u8>, h: &HttpRequest) {
    let mut o = Obj::open(out);
    o.str("requestMethod", &h.request_method);
    o.str("requestUrl", &h.request_url);
    o.uint("status", u64::from(h.status));
    let mut n = itoa::Buffer::new();
    o.str("requestSize", n.format(h.request_size));
    o.str("responseSize", n.format(h.response_size));
    o.some_str("userAgent", h.user_agent.as_deref());
    o.str("remoteIp", &h.remote_ip);
    // Cloud Logging's Duration text, e.g. "0.001234s" (as record::latency spells it).
    let latency = o.key("latency");
    latency.push(b'"');
    latency.extend_from_slice(n.format(h.latency.as_secs()).as_bytes());
    latency.push(b'.');
    let micros = h.latency.subsec_micros();
    for place in [100_000, 10_000, 1_000, 100, 10, 1] {
        latency.push(b'0' + (micros / place % 10) as u8);
    }
    latency.extend_from_slice(b"s\"");
    o.str("protocol", h.protocol);
    o.close();
}

/// The flattened trace keys, each only when present.
fn trace(o: &mut Obj<'_>, t: &Trace) {
    o.some_str("trace", t.trace.as_deref());
    o.some_str("logging.googleapis.com/trace", t.gcp_trace.as_deref());
    o.some_str("logging.googleapis.com/spanId", t.span_id.as_deref());
}
