//! Property tests of the pure decoders, redaction, capture bounds and record lines.
//!
//! This is the bounded fuzz pass (cargo-fuzz needs a nightly toolchain; we build with
//! stable only). Case counts keep the whole file to a few seconds in a debug build.
//! Each property states what a caller relies on, not how the code does it.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use sockproxy::capture::{self, Snapshot};
use sockproxy::flags;
use sockproxy::limits::{MAX_LOGGED_REPEATS, MAX_LOGGED_VALUE_BYTES};
use sockproxy::record::{
    self, ClosedBy, Event, Exchange, HttpRequest, Outcome, Record, Severity, TunnelClosed,
};
use sockproxy::sink::Sink;
use sockproxy::sio::{self, ERROR_MESSAGES, Sio};

/// The longest `…[truncated, N bytes]` marker a value can carry.
const MARKER_MAX_BYTES: usize = "…[truncated, 18446744073709551615 bytes]".len();

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Percent-encodes every byte, the way a client may encode any query value.
fn encode_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Bytes an HTTP/1 header value may carry on the wire (httparse: VCHAR, SP, HTAB, obs-text).
fn header_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => 0x20u8..0x7f,
            1 => Just(b'\t'),
            2 => 0x80u8..=0xff,
        ],
        0..max,
    )
}

/// A value, sometimes around or far past the logging bound. Long values repeat a short
/// random pattern: generating thousands of independent bytes per case is what makes a
/// debug build slow, and the bound does not care about variety.
fn header_value_bytes() -> impl Strategy<Value = Vec<u8>> {
    let long = (
        header_bytes(12),
        prop::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff], 1..8),
        MAX_LOGGED_VALUE_BYTES / 2..MAX_LOGGED_VALUE_BYTES * 2 + 10,
    )
        .prop_map(|(head, pattern, len)| {
            let mut v = head;
            v.extend(pattern.iter().cycle().take(len));
            v
        });
    // Valid UTF-8 with multi-byte characters, so the cut lands inside characters too.
    let long_utf8 = (
        "[^\\x00-\\x1f\\x7f]{1,6}",
        MAX_LOGGED_VALUE_BYTES / 2..MAX_LOGGED_VALUE_BYTES * 2,
    )
        .prop_map(|(pattern, len)| {
            let mut v = Vec::new();
            for c in pattern.chars().cycle() {
                if v.len() >= len {
                    break;
                }
                let mut buf = [0; 4];
                v.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            v
        });
    prop_oneof![8 => header_bytes(64), 1 => long, 1 => long_utf8]
}

fn captured_name() -> impl Strategy<Value = HeaderName> {
    let names: Vec<HeaderName> = capture::REQUEST_ALWAYS
        .iter()
        .chain(capture::REQUEST_WHEN_SENT.iter())
        .cloned()
        .chain([header::AUTHORIZATION, HeaderName::from_static("x-custom")])
        .collect();
    prop::sample::select(names)
}

fn header_map() -> impl Strategy<Value = HeaderMap> {
    prop::collection::vec((captured_name(), header_value_bytes()), 0..12).prop_map(|pairs| {
        let mut m = HeaderMap::new();
        for (name, value) in pairs {
            m.append(name, HeaderValue::from_bytes(&value).unwrap());
        }
        m
    })
}

// ---- sio: query fields ------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    /// Any query parses, and a field is set exactly when its key is among the query's
    /// keys (a pair without `=` too): a null `transport` in a record means none was sent.
    #[test]
    fn query_parsing_never_panics(
        q in prop_oneof![
            any::<Option<String>>(),
            proptest::option::of("((EIO|transport|sid|t|eio|x|)(=[^&]{0,4})?&?){0,5}"),
        ]
    ) {
        let s = Sio::from_query(q.as_deref());
        let keys: Vec<&str> = q
            .as_deref()
            .unwrap_or("")
            .split('&')
            .map(|pair| pair.split_once('=').map_or(pair, |(key, _)| key))
            .collect();
        prop_assert_eq!(s.eio.is_some(), keys.contains(&"EIO"));
        prop_assert_eq!(s.transport.is_some(), keys.contains(&"transport"));
        prop_assert_eq!(s.sid.is_some(), keys.contains(&"sid"));
        prop_assert_eq!(s.t.is_some(), keys.contains(&"t"));
    }

    /// Any value, fully percent-encoded, decodes to itself; unrelated keys and the
    /// order of the four keys do not matter.
    #[test]
    fn query_values_round_trip(
        eio in any::<String>(),
        transport in any::<String>(),
        sid in any::<String>(),
        t in any::<String>(),
        noise in prop::collection::vec("[a-zA-Z_]{1,6}=[a-zA-Z0-9%]{0,8}", 0..4),
        order in Just([0usize, 1, 2, 3]).prop_shuffle(),
    ) {
        let pairs = [
            format!("EIO={}", encode_all(&eio)),
            format!("transport={}", encode_all(&transport)),
            format!("sid={}", encode_all(&sid)),
            format!("t={}", encode_all(&t)),
        ];
        let mut parts: Vec<String> = noise
            .into_iter()
            .filter(|p| !matches!(p.split('=').next(), Some("EIO" | "transport" | "sid" | "t")))
            .collect();
        for i in order {
            parts.push(pairs[i].clone());
        }
        let s = Sio::from_query(Some(&parts.join("&")));
        prop_assert_eq!(s.eio, Some(eio));
        prop_assert_eq!(s.transport, Some(transport));
        prop_assert_eq!(s.sid, Some(sid));
        prop_assert_eq!(s.t, Some(t));
    }

    /// The first occurrence of a key wins, whatever follows.
    #[test]
    fn first_sid_wins(first in "[A-Za-z0-9_-]{1,20}", later in prop::collection::vec("[A-Za-z0-9_-]{0,20}", 1..4)) {
        let mut q = format!("EIO=4&sid={first}");
        for l in &later {
            q.push_str(&format!("&sid={l}"));
        }
        prop_assert_eq!(Sio::from_query(Some(&q)).sid, Some(first));
    }

    #[test]
    fn transport_predicates_agree_with_the_field(q in "(EIO=[34]&)?(transport=(polling|websocket|[a-z]{0,8})&?)?(sid=[a-z]{0,4})?") {
        let s = Sio::from_query(Some(&q));
        prop_assert!(!(s.is_polling() && s.is_websocket()));
        prop_assert_eq!(s.is_polling(), s.transport.as_deref() == Some("polling"));
        prop_assert_eq!(s.is_websocket(), s.transport.as_deref() == Some("websocket"));
    }

    /// A socket.io path matches wherever nginx puts the prefix; a path without it never does.
    #[test]
    fn sio_path_anywhere(before in "(/[a-z]{0,6}){0,3}", after in "[a-zA-Z0-9/]{0,10}", other in "/[a-z./]{0,20}") {
        let path = format!("{before}/socket.io/{after}");
        prop_assert!(sio::is_sio_path(&path, "/socket.io/"));
        prop_assert_eq!(sio::is_sio_path(&other, "/socket.io/"), other.contains("/socket.io/"));
    }
}

// ---- sio: open packets ----------------------------------------------------------------

/// An engine.io open packet as the server writes it.
fn open_packet(sid: &str, ping_interval: u32) -> String {
    let json = serde_json::json!({
        "sid": sid,
        "upgrades": ["websocket"],
        "pingInterval": ping_interval,
        "pingTimeout": 20000,
        "maxPayload": 1000000,
    });
    format!("0{json}")
}

/// A websocket text frame as a server sends it: unmasked, 7- or 16-bit length.
fn server_text_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x81];
    if payload.len() < 126 {
        f.push(payload.len() as u8);
    } else {
        f.push(126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn open_packet_never_panics(body in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = sio::open_packet_sid(&body);
    }

    /// EIO 4: the sid comes back out, whatever it contains and whatever packets follow
    /// after the record separator.
    #[test]
    fn open_packet_sid_eio4(sid in any::<String>(), ping in any::<u32>(), more in prop::collection::vec("[0-6][a-z0-9\"{}]{0,10}", 0..3)) {
        let mut body = open_packet(&sid, ping);
        for p in &more {
            body.push('\u{1e}');
            body.push_str(p);
        }
        prop_assert_eq!(sio::open_packet_sid(body.as_bytes()), Some(sid));
    }

    /// EIO 3: `<length>:<packet>` payloads, with more packets after the open packet.
    /// engine.io sids are base64id (ASCII); the test below covers non-ASCII payloads.
    #[test]
    fn open_packet_sid_eio3(sid in "[A-Za-z0-9_-]{1,30}", ping in any::<u32>(), more in prop::collection::vec("[2-6][a-z0-9]{0,10}", 0..3)) {
        let open = open_packet(&sid, ping);
        let mut body = format!("{}:{open}", open.chars().count());
        for p in &more {
            body.push_str(&format!("{}:{p}", p.chars().count()));
        }
        prop_assert_eq!(sio::open_packet_sid(body.as_bytes()), Some(sid));
    }

    /// Any body that does not start with an open packet yields no sid.
    #[test]
    fn no_sid_without_an_open_packet(first in "[a-zA-Z {\\[]", rest in ".{0,40}") {
        let body = format!("{first}{rest}");
        prop_assert_eq!(sio::open_packet_sid(body.as_bytes()), None);
    }

    #[test]
    fn first_frame_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = sio::first_frame_sid(&bytes);
    }

    /// A server's first frame carrying an open packet yields its sid, for both length
    /// encodings, with anything after the frame ignored; every strict prefix asks for
    /// more bytes instead of giving up.
    #[test]
    fn first_frame_sid_and_prefixes(sid in ".{0,200}", tail in prop::collection::vec(any::<u8>(), 0..20)) {
        let payload = open_packet(&sid, 25000);
        let frame = server_text_frame(payload.as_bytes());
        for cut in 0..frame.len() {
            prop_assert_eq!(sio::first_frame_sid(&frame[..cut]), Ok(None), "prefix of {} bytes", cut);
        }
        let mut whole = frame.clone();
        whole.extend_from_slice(&tail);
        prop_assert_eq!(sio::first_frame_sid(&whole), Ok(Some(sid)));
    }

    /// Masked (client) frames, binary frames and non-open packets are given up on.
    #[test]
    fn first_frame_rejects_what_cannot_be_an_open_packet(
        opcode in prop_oneof![Just(0x82u8), Just(0x01), Just(0x88), Just(0x89)],
        payload in "[1-6][a-z]{0,10}",
    ) {
        let mut binary = server_text_frame(b"0{\"sid\":\"x\"}");
        binary[0] = opcode;
        prop_assert_eq!(sio::first_frame_sid(&binary), Err(()));
        let not_open = server_text_frame(payload.as_bytes());
        prop_assert_eq!(sio::first_frame_sid(&not_open), Err(()));
        let mut masked = server_text_frame(b"0{\"sid\":\"x\"}");
        masked[1] |= 0x80;
        prop_assert_eq!(sio::first_frame_sid(&masked), Err(()));
    }
}

/// EIO 3 counts the payload length in characters (JavaScript string length), so a
/// non-ASCII open packet has fewer characters than bytes.
#[test]
fn open_packet_sid_eio3_counts_characters() {
    let open = "0{\"sid\":\"é\"}";
    let body = format!("{}:{open}", open.chars().count());
    assert_eq!(body, "12:0{\"sid\":\"é\"}");
    assert_eq!(sio::open_packet_sid(body.as_bytes()).as_deref(), Some("é"));
}

// ---- sio: error bodies ------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    /// Never panics; a message that is not engine.io's is at most 200 characters and is
    /// the start of the body's text.
    #[test]
    fn error_body_never_panics_and_is_bounded(body in prop::collection::vec(any::<u8>(), 0..1000)) {
        let e = sio::decode_error(&body);
        if e.code.is_none() {
            prop_assert!(e.message.chars().count() <= 200);
            let text = String::from_utf8_lossy(body.trim_ascii());
            prop_assert!(text.starts_with(&e.message));
        }
    }

    #[test]
    fn error_body_text_is_bounded(body in ".{0,600}") {
        let e = sio::decode_error(body.as_bytes());
        prop_assert!(e.code.is_some() || e.message.chars().count() <= 200);
    }

    /// abortRequest's JSON body round-trips, whatever the message and whitespace around it.
    #[test]
    fn error_json_round_trips(code in any::<u8>(), message in any::<String>(), pad in "[ \t\r\n]{0,3}") {
        let body = format!("{pad}{}{pad}", serde_json::json!({"code": code, "message": message}));
        let e = sio::decode_error(body.as_bytes());
        prop_assert_eq!(e.code, Some(code));
        prop_assert_eq!(e.message, message);
    }

    /// abortUpgrade's plain-text messages map to their engine.io codes.
    #[test]
    fn error_text_maps_to_codes(code in 0usize..ERROR_MESSAGES.len(), pad in "[ \r\n]{0,2}") {
        let body = format!("{pad}{}{pad}", ERROR_MESSAGES[code]);
        let e = sio::decode_error(body.as_bytes());
        prop_assert_eq!(e.code, Some(code as u8));
        prop_assert_eq!(e.message, ERROR_MESSAGES[code]);
    }
}

// ---- capture: cookie redaction ------------------------------------------------------------

/// A cookie name (RFC 6265 token) that is not `io`.
fn cookie_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.!#$%&'*+^`|~-]{1,12}".prop_filter("not the io cookie, not a secret", |n| {
        n != "io" && !n.contains("SECRET")
    })
}

/// A secret cookie value: a marker no name or separator can contain, plus cookie-octets.
fn secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'()*+./:<>?@\\[\\]^_`{|}~=-]{0,20}".prop_map(|v| format!("SECRET{v}"))
}

#[derive(Debug, Clone)]
enum Pair {
    /// `name=secret`, optionally with the value quoted.
    Named(String, String, bool),
    /// A cookie without `=` (the whole pair is the value).
    Bare(String),
    /// `io=value`.
    Io(String),
}

fn pair() -> impl Strategy<Value = Pair> {
    prop_oneof![
        6 => (cookie_name(), secret(), any::<bool>()).prop_map(|(n, v, q)| Pair::Named(n, v, q)),
        // Without `=`, or it would be a named cookie.
        1 => secret().prop_map(|s| Pair::Bare(s.replace('=', "."))),
        2 => "[A-Za-z0-9_-]{0,20}"
            .prop_filter("io value is no secret", |v| !v.contains("SECRET"))
            .prop_map(Pair::Io),
    ]
}

fn render_pair(p: &Pair) -> String {
    match p {
        Pair::Named(n, v, true) => format!("{n}=\"{v}\""),
        Pair::Named(n, v, false) => format!("{n}={v}"),
        Pair::Bare(v) => v.clone(),
        Pair::Io(v) => format!("io={v}"),
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn cookie_redaction_never_panics(s in any::<String>()) {
        let _ = capture::redact_cookie(&s);
        let _ = capture::redact_set_cookie(&s);
    }

    /// Whatever the separators, no secret value survives; every name and the `io`
    /// cookie's value do, in order.
    #[test]
    fn cookie_secrets_never_survive(pairs in prop::collection::vec(pair(), 0..8), seps in prop::collection::vec("; ?| ;|;  ", 8)) {
        let mut header = String::new();
        for (i, p) in pairs.iter().enumerate() {
            if i > 0 {
                header.push_str(&seps[i]);
            }
            header.push_str(&render_pair(p));
        }
        let out = capture::redact_cookie(&header);
        prop_assert!(!out.contains("SECRET"), "{header:?} -> {out:?}");
        let mut at = 0;
        for p in &pairs {
            let kept = match p {
                Pair::Named(n, _, _) => format!("{n}="),
                Pair::Io(v) => format!("io={v}"),
                Pair::Bare(_) => continue,
            };
            let found = out[at..].find(&kept);
            prop_assert!(found.is_some(), "{kept:?} missing in {out:?}");
            at += found.unwrap() + kept.len();
        }
        prop_assert_eq!(out.matches(';').count(), header.matches(';').count());
    }

    /// Set-Cookie: the value goes, the attributes stay exactly, `io` stays whole.
    #[test]
    fn set_cookie_secret_never_survives(p in pair(), attrs in prop::collection::vec("(Path=/[a-z]{0,5}|HttpOnly|Secure|SameSite=(Lax|None)|Max-Age=[0-9]{1,5}|Expires=Wed, 21 Oct 2026 07:28:00 GMT)", 0..4)) {
        let mut value = render_pair(&p);
        let tail: String = attrs.iter().map(|a| format!("; {a}")).collect();
        value.push_str(&tail);
        let out = capture::redact_set_cookie(&value);
        prop_assert!(!out.contains("SECRET"), "{value:?} -> {out:?}");
        prop_assert!(out.ends_with(&tail));
        if let Pair::Io(_) = p {
            prop_assert_eq!(out, value);
        }
    }

    /// Through capture: any number of Cookie / Set-Cookie / Authorization headers, any
    /// bytes around them — the logged form holds no secret.
    #[test]
    fn captured_secrets_never_logged(
        pairs in prop::collection::vec(pair(), 1..6),
        auth in secret(),
        junk in header_bytes(20),
    ) {
        let cookie: Vec<String> = pairs.iter().map(render_pair).collect();
        let mut m = HeaderMap::new();
        m.append(header::COOKIE, HeaderValue::from_str(&cookie.join("; ")).unwrap());
        let mut odd = junk.clone();
        odd.extend_from_slice(b"; k=SECRETx");
        m.append(header::COOKIE, HeaderValue::from_bytes(&odd).unwrap());
        m.append(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {auth}")).unwrap());
        m.append(header::PROXY_AUTHORIZATION, HeaderValue::from_str(&auth).unwrap());
        m.append(header::SET_COOKIE, HeaderValue::from_str(&format!("{}; Path=/", cookie[0])).unwrap());
        let extra = [header::AUTHORIZATION, header::PROXY_AUTHORIZATION, header::SET_COOKIE];
        let req = serde_json::to_string(&capture::request(&m, &extra)).unwrap();
        let resp = serde_json::to_string(&capture::response(&m, &[])).unwrap();
        for line in [&req, &resp] {
            // A secret may only appear where the junk bytes themselves spelled it.
            let expected = if capture::text(&junk).contains("SECRET") { 1 } else { 0 };
            prop_assert!(line.matches("SECRET").count() <= expected, "{line}");
        }
        for p in &pairs {
            if let Pair::Io(v) = p {
                let io = format!("io={v}");
                prop_assert!(req.contains(&io), "{} missing", io);
            }
        }
    }
}

// ---- capture: text and bounds -------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    /// Valid UTF-8 is kept as is.
    #[test]
    fn text_keeps_utf8(s in any::<String>()) {
        prop_assert_eq!(capture::text(s.as_bytes()), s);
    }

    /// Anything else keeps every byte, one character per byte, and nothing merged.
    #[test]
    fn text_keeps_every_byte(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let t = capture::text(&bytes);
        if std::str::from_utf8(&bytes).is_err() {
            let back: Vec<u32> = t.chars().map(u32::from).collect();
            let want: Vec<u32> = bytes.iter().map(|b| u32::from(*b)).collect();
            prop_assert_eq!(back, want);
        }
    }

    /// Every logged value is bounded; short values are logged whole; a cut value says so
    /// and keeps the start of the original.
    #[test]
    fn captured_values_are_bounded(m in header_map()) {
        let snap = capture::request(&m, &[header::AUTHORIZATION, HeaderName::from_static("x-custom")]);
        for name in m.keys() {
            let logged = snap.all(name);
            let sent: Vec<&HeaderValue> = m.get_all(name).iter().collect();
            prop_assert_eq!(logged.len(), sent.len().min(MAX_LOGGED_REPEATS), "{}", name);
            for (l, v) in logged.iter().zip(sent) {
                // The bound is on bytes as sent; a non-UTF-8 value logged as Latin-1 may
                // take up to two bytes per byte sent.
                prop_assert!(l.len() <= 2 * MAX_LOGGED_VALUE_BYTES + MARKER_MAX_BYTES, "{} bytes", l.len());
                let plain = name != header::COOKIE && name != header::AUTHORIZATION;
                let whole = capture::text(v.as_bytes());
                match l.find("…[truncated, ") {
                    Some(cut) if plain => {
                        prop_assert!(whole.starts_with(&l[..cut]));
                        prop_assert!(cut <= MAX_LOGGED_VALUE_BYTES);
                    }
                    None if plain => prop_assert_eq!(l, &whole),
                    _ => {}
                }
            }
        }
    }

    /// Fields the contract always lists are always in the snapshot, `null` when absent.
    #[test]
    fn always_fields_always_present(m in header_map()) {
        let v = serde_json::to_value(capture::request(&m, &[])).unwrap();
        for name in &capture::REQUEST_ALWAYS {
            prop_assert!(v.get(name.as_str()).is_some(), "{} missing", name);
            prop_assert_eq!(v[name.as_str()].is_null(), !m.contains_key(name));
        }
    }
}

/// The truncation marker states the size of the value as it was sent.
#[test]
fn truncation_marker_counts_wire_bytes() {
    let wire = vec![0xe9u8; MAX_LOGGED_VALUE_BYTES / 2 + 1];
    let mut m = HeaderMap::new();
    m.insert(header::VIA, HeaderValue::from_bytes(&wire).unwrap());
    let snap = capture::request(&m, &[]);
    let logged = snap.first(&header::VIA).unwrap();
    assert!(
        !logged.contains("…[truncated"),
        "a value under the bound is cut: {} wire bytes",
        wire.len()
    );
}

// ---- flags: the header rules the contract states ---------------------------------------

/// A hostname: labels of letters, digits and hyphens.
fn hostname() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9-]{0,10}(\\.[a-z0-9][a-z0-9-]{0,10}){0,3}"
}

fn random_case(s: &str, flips: &[bool]) -> String {
    s.chars()
        .zip(flips.iter().cycle())
        .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
        .collect()
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn flag_helpers_never_panic(a in any::<String>(), b in any::<Option<String>>()) {
        let _ = flags::has_upgrade_token(&a);
        let _ = flags::origin_host_mismatch(&a, b.as_deref());
    }

    /// `upgrade` is found in any case, anywhere in the comma list, with any spaces;
    /// a list without that token never matches.
    #[test]
    fn upgrade_token_in_any_case_and_place(
        others in prop::collection::vec("[a-zA-Z-]{1,10}", 0..4),
        at in any::<prop::sample::Index>(),
        flips in prop::collection::vec(any::<bool>(), 7),
        ows in "[ \t]{0,2}",
    ) {
        let others: Vec<String> = others.into_iter().filter(|t| !t.eq_ignore_ascii_case("upgrade")).collect();
        let without = others.join(&format!("{ows},{ows}"));
        prop_assert!(!flags::has_upgrade_token(&without), "{without:?}");
        let mut with = others.clone();
        with.insert(at.index(others.len() + 1), random_case("upgrade", &flips));
        let with = with.join(&format!("{ows},{ows}"));
        prop_assert!(flags::has_upgrade_token(&format!("{ows}{with}{ows}")), "{with:?}");
    }

    /// Same host in any case: no mismatch when Host has no port (nginx's `$host`), or the
    /// port the Origin means (explicit, or its scheme's default); any other port or host
    /// is a mismatch.
    #[test]
    fn origin_host_rules(
        host in hostname(),
        other in hostname(),
        https in any::<bool>(),
        origin_port in prop::option::of(1u16..),
        wrong_port in 1u16..,
        flips in prop::collection::vec(any::<bool>(), 1..8),
    ) {
        let scheme = if https { "https" } else { "http" };
        let port_part = origin_port.map(|p| format!(":{p}")).unwrap_or_default();
        let origin = format!("{scheme}://{}{port_part}", random_case(&host, &flips));
        let meant = origin_port.unwrap_or(if https { 443 } else { 80 });
        prop_assert!(!flags::origin_host_mismatch(&origin, Some(&host)), "{origin} vs {host}");
        let host_port = format!("{host}:{meant}");
        prop_assert!(!flags::origin_host_mismatch(&origin, Some(&host_port)), "{origin} vs {host_port}");
        if wrong_port != meant {
            let host_wrong = format!("{host}:{wrong_port}");
            prop_assert!(flags::origin_host_mismatch(&origin, Some(&host_wrong)), "{origin} vs {host_wrong}");
        }
        if !other.eq_ignore_ascii_case(&host) {
            prop_assert!(flags::origin_host_mismatch(&origin, Some(&other)), "{origin} vs {other}");
        }
        prop_assert!(flags::origin_host_mismatch(&origin, None));
    }
}

// ---- records: one line of JSON --------------------------------------------------------------

fn exchange(
    headers: Snapshot,
    resp_headers: Snapshot,
    strings: [String; 5],
    query: Option<String>,
    error_body: Vec<u8>,
    trace: [Option<String>; 3],
) -> Exchange {
    let [client, method, path, ua, upstream_error] = strings;
    let [cloud, traceparent, project] = trace;
    let sio = Sio::from_query(query.as_deref());
    Exchange {
        id: format!("{path}#1"),
        conn: 7,
        client: client.clone(),
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        sio: Some(sio),
        status: 400,
        headers,
        resp_headers,
        sio_error: Some(sio::decode_error(&error_body)),
        flags: vec!["sid_unknown"],
        duration_ms: 1.25,
        bytes_in: 0,
        bytes_out: error_body.len() as u64,
        outcome: Outcome::Complete,
        upstream_error: Some(upstream_error),
        http_request: HttpRequest {
            request_method: method,
            request_url: format!("{path}?{}", query.unwrap_or_default()),
            status: 400,
            request_size: 0,
            response_size: error_body.len() as u64,
            user_agent: Some(ua),
            remote_ip: client,
            latency: std::time::Duration::from_micros(1250),
            protocol: "HTTP/1.1",
        },
        trace: record::trace(cloud.as_deref(), traceparent.as_deref(), project.as_deref()),
    }
}

/// Emits through a memory sink and returns the single line it produced.
fn one_line(
    sink: &Sink,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    rec: Record,
) -> String {
    sink.emit(rec);
    let line = rx.try_recv().expect("one line per record");
    assert!(rx.try_recv().is_err(), "exactly one line per record");
    line
}

fn assert_one_json_line(line: &str) -> Result<serde_json::Value, TestCaseError> {
    prop_assert!(line.ends_with('\n'));
    prop_assert_eq!(line.matches('\n').count(), 1, "{:?}", line);
    prop_assert!(
        !line.bytes().any(|b| b < 0x20 && b != b'\n'),
        "raw control byte"
    );
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
    prop_assert!(v.is_object());
    Ok(v)
}

proptest! {
    #![proptest_config(config(256))]

    /// Any header values and strings → exactly one line of valid JSON, whose fields read
    /// back as what was logged.
    #[test]
    fn request_record_is_one_json_line(
        m in header_map(),
        strings in any::<[String; 5]>(),
        message in any::<String>(),
        query in any::<Option<String>>(),
        error_body in prop::collection::vec(any::<u8>(), 0..300),
        trace in any::<[Option<String>; 3]>(),
        pod in any::<Option<String>>(),
        upgrade in any::<bool>(),
    ) {
        let (sink, mut rx) = Sink::memory(pod.clone(), Some("10.0.0.1".into()));
        let headers = capture::request(&m, &[HeaderName::from_static("x-custom")]);
        let resp_headers = capture::response(&m, &[]);
        let ex = exchange(headers.clone(), resp_headers, strings.clone(), query.clone(), error_body, trace);
        let sio_error = ex.sio_error.clone().unwrap();
        let event = if upgrade { Event::Upgrade(Box::new(ex)) } else { Event::Request(Box::new(ex)) };
        let line = one_line(&sink, &mut rx, Record { severity: Severity::Warning, message: message.clone(), event });
        let v = assert_one_json_line(&line)?;
        prop_assert_eq!(&v["event"], if upgrade { "upgrade" } else { "request" });
        prop_assert_eq!(&v["message"], message.as_str());
        prop_assert_eq!(&v["severity"], "WARNING");
        prop_assert_eq!(v["pod"].as_str(), pod.as_deref());
        prop_assert_eq!(&v["path"], strings[2].as_str());
        prop_assert_eq!(v["query"].as_str(), query.as_deref());
        prop_assert_eq!(&v["httpRequest"]["userAgent"], strings[3].as_str());
        prop_assert_eq!(&v["sio_error"]["message"], sio_error.message.as_str());
        let sio = Sio::from_query(query.as_deref());
        prop_assert_eq!(v["sio"]["sid"].as_str(), sio.sid.as_deref());
        for name in m.keys() {
            let want = headers.all(name);
            let got = &v["headers"][name.as_str()];
            match want.len() {
                0 => prop_assert!(got.is_null() || !capture::REQUEST_ALWAYS.contains(name)),
                1 => prop_assert_eq!(got.as_str(), Some(want[0].as_str())),
                _ => prop_assert_eq!(got.as_array().map(Vec::len), Some(want.len())),
            }
        }
        prop_assert!(line.starts_with("{\"time\":\""), "the common keys come first");
    }

    #[test]
    fn tunnel_record_is_one_json_line(
        s in any::<[String; 4]>(),
        query in any::<Option<String>>(),
        up in any::<u64>(),
        down in any::<u64>(),
        closed_by in prop::sample::select(vec![ClosedBy::Client, ClosedBy::Upstream, ClosedBy::Shutdown, ClosedBy::Error]),
    ) {
        let [path, client, error, ua] = s;
        let (sink, mut rx) = Sink::memory(None, None);
        let tc = TunnelClosed {
            id: "1".into(),
            conn: 1,
            client: client.clone(),
            path: path.clone(),
            sio: Some(Sio::from_query(query.as_deref())),
            duration_ms: 3.5,
            bytes_client_to_upstream: up,
            bytes_upstream_to_client: down,
            closed_by,
            error: Some(error.clone()),
            http_request: HttpRequest {
                request_method: "GET".into(),
                request_url: path.clone(),
                status: 101,
                request_size: 0,
                response_size: 0,
                user_agent: Some(ua),
                remote_ip: client,
                latency: std::time::Duration::from_secs(1),
                protocol: "websocket",
            },
            trace: Default::default(),
        };
        let line = one_line(&sink, &mut rx, Record { severity: Severity::Info, message: path.clone(), event: Event::TunnelClosed(Box::new(tc)) });
        let v = assert_one_json_line(&line)?;
        prop_assert_eq!(&v["event"], "tunnel_closed");
        prop_assert_eq!(&v["path"], path.as_str());
        prop_assert_eq!(&v["error"], error.as_str());
        prop_assert_eq!(&v["closed_by"], closed_by.as_str());
        prop_assert_eq!(v["bytes_client_to_upstream"].as_u64(), Some(up));
        prop_assert_eq!(v["bytes_upstream_to_client"].as_u64(), Some(down));
    }

    /// The fast record writer escapes a string exactly as serde_json does.
    #[test]
    fn json_string_is_serde_jsons(
        chars in prop::collection::vec(
            prop_oneof![
                any::<char>(),
                Just('"'),
                Just('\\'),
                Just('\u{7f}'),
                Just('é'),
                (0u8..0x20).prop_map(char::from),
            ],
            0..40,
        )
    ) {
        let s: String = chars.into_iter().collect();
        let mut fast = Vec::new();
        sockproxy::json::string(&mut fast, &s);
        prop_assert_eq!(
            String::from_utf8(fast).unwrap(),
            serde_json::to_string(&s).unwrap()
        );
    }

    /// `request`, `upgrade` and `tunnel_closed` fields from the fast writer are byte for
    /// byte serde_json's, absent optional parts included.
    #[test]
    fn fast_record_writer_is_serde_jsons(
        m in header_map(),
        strings in any::<[String; 5]>(),
        query in any::<Option<String>>(),
        error_body in prop::collection::vec(any::<u8>(), 0..64),
        trace in any::<[Option<String>; 3]>(),
        absent in any::<[bool; 5]>(),
        numbers in any::<(u64, u64, u32, u16)>(),
        closed_by in prop::sample::select(vec![ClosedBy::Client, ClosedBy::Upstream, ClosedBy::Shutdown, ClosedBy::Error, ClosedBy::IdleTimeout]),
        outcome in prop::sample::select(vec![Outcome::Complete, Outcome::ClientAborted, Outcome::UpstreamError, Outcome::Shutdown]),
    ) {
        let headers = capture::request(&m, &[HeaderName::from_static("x-custom")]);
        let resp_headers = capture::response(&m, &[]);
        let mut ex = exchange(headers, resp_headers, strings.clone(), query.clone(), error_body, trace.clone());
        let (bytes_in, bytes_out, micros, status) = numbers;
        if absent[0] { ex.sio = None; }
        if absent[1] { ex.sio_error = None; }
        if absent[2] { ex.upstream_error = None; ex.http_request.user_agent = None; }
        if absent[3] { ex.flags.clear(); }
        if absent[4] { ex.flags.push("origin_host_mismatch"); }
        ex.bytes_in = bytes_in;
        ex.bytes_out = bytes_out;
        ex.status = status;
        ex.outcome = outcome;
        ex.duration_ms = f64::from(micros) / 1000.0;
        ex.http_request.request_size = bytes_in;
        ex.http_request.latency = std::time::Duration::from_micros(u64::from(micros) * 997);
        let tc = TunnelClosed {
            id: ex.id.clone(),
            conn: bytes_out,
            client: ex.client.clone(),
            path: ex.path.clone(),
            sio: ex.sio.clone(),
            duration_ms: ex.duration_ms,
            bytes_client_to_upstream: bytes_in,
            bytes_upstream_to_client: bytes_out,
            closed_by,
            error: ex.upstream_error.clone(),
            http_request: ex.http_request.clone(),
            trace: ex.trace.clone(),
        };
        for event in [Event::Request(Box::new(ex.clone())), Event::Upgrade(Box::new(ex)), Event::TunnelClosed(Box::new(tc))] {
            let (mut fast, mut serde) = (Vec::new(), Vec::new());
            sockproxy::json::event_fields(&mut fast, &event).unwrap();
            sockproxy::json::event_fields_serde(&mut serde, &event).unwrap();
            prop_assert_eq!(String::from_utf8(fast).unwrap(), String::from_utf8(serde).unwrap());
        }
    }

    /// Trace ids come out as 32 lowercase hex digits, whatever the headers held.
    #[test]
    fn trace_ids_are_well_formed(cloud in any::<Option<String>>(), tp in any::<Option<String>>(), project in any::<Option<String>>()) {
        let t = record::trace(cloud.as_deref(), tp.as_deref(), project.as_deref());
        if let Some(id) = &t.trace {
            prop_assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
        prop_assert_eq!(t.gcp_trace.is_some(), t.trace.is_some() && project.is_some());
        prop_assert!(t.span_id.is_none() || t.gcp_trace.is_some());
    }

    /// X-Cloud-Trace-Context round-trips: the id lowercased, the decimal span as hex.
    #[test]
    fn cloud_trace_round_trips(id in any::<u128>(), span in any::<u64>(), upper in any::<bool>()) {
        let hex = format!("{id:032x}");
        let sent = if upper { hex.to_uppercase() } else { hex.clone() };
        let t = record::trace(Some(&format!("{sent}/{span};o=1")), None, Some("p"));
        prop_assert_eq!(t.trace.as_deref(), Some(hex.as_str()));
        let span_hex = format!("{span:016x}");
        prop_assert_eq!(t.span_id.as_deref(), Some(span_hex.as_str()));
    }
}
