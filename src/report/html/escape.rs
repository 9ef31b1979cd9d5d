//! Text made safe for the page: every value that comes from a record (header values, paths,
//! pod names, sids: the network controls them) is written through [`Esc`]. Pure.

use std::fmt;

/// `s`, escaped for HTML text and for a double- or single-quoted attribute value.
#[derive(Clone, Copy)]
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'', '\0']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                b'\'' => "&#39;",
                // The parser would turn it into U+FFFD anyway; say so plainly.
                _ => "\u{FFFD}",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// At most `max` characters of `s`, with `…` when cut (before escaping, so no entity is cut).
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Standard base64 with padding (for the script's hash in the page's security policy).
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let cases = [
            ("plain", "plain"),
            ("", ""),
            (
                "<script>alert(1)</script>",
                "&lt;script&gt;alert(1)&lt;/script&gt;",
            ),
            (
                r#""><img src=x onerror='a()'>"#,
                "&quot;&gt;&lt;img src=x onerror=&#39;a()&#39;&gt;",
            ),
            ("a & b &amp;", "a &amp; b &amp;amp;"),
            ("nul\0here", "nul\u{FFFD}here"),
            ("ünï <cödé>", "ünï &lt;cödé&gt;"),
        ];
        for (input, want) in cases {
            assert_eq!(Esc(input).to_string(), want, "{input}");
        }
    }

    #[test]
    fn clips() {
        let cases = [
            ("abc", 3, "abc"),
            ("abcd", 3, "abc…"),
            ("ééé", 2, "éé…"),
            ("", 0, ""),
        ];
        for (s, max, want) in cases {
            assert_eq!(clip(s, max), want, "{s}");
        }
    }

    #[test]
    fn base64_vectors() {
        // RFC 4648, section 10.
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, want) in cases {
            assert_eq!(base64(input.as_bytes()), want, "{input}");
        }
    }
}
