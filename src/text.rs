//! Text helpers the pure modules share: values cut to the logged limit, `%XX` decoding.

use std::borrow::Cow;

use crate::limits::MAX_LOGGED_VALUE_BYTES;

/// `s` cut to [`MAX_LOGGED_VALUE_BYTES`] (on a character boundary), with a marker
/// `…[truncated, N bytes]` naming the original length.
pub(crate) fn truncate(s: String) -> String {
    let wire = s.len();
    truncate_to(s, MAX_LOGGED_VALUE_BYTES, wire)
}

/// Cuts `s`, the logged form of a `wire`-byte value, when the value was over `limit`
/// bytes as sent; the marker names the size as sent. (A non-UTF-8 value's logged form
/// may be up to twice its wire size: each byte ≥ 0x80 becomes a 2-byte character.)
pub(crate) fn truncate_to(mut s: String, limit: usize, wire: usize) -> String {
    if s.len() <= limit || (wire <= limit && s.len() <= 2 * limit) {
        return s; // nothing to cut (a redacted value is short whatever was sent)
    }
    let mut cut = limit;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str(&format!("…[truncated, {wire} bytes]"));
    s
}

/// `%XX` and `+` decoded (lossy on invalid UTF-8); borrowed when nothing changes.
pub(crate) fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16)),
                bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16)),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}
