//! Parses the probe's URL and builds the request targets a socket.io client would use. Pure.
//!
//! Query order and the trailing slash follow engine.io-client (`createTransport`,
//! `transports/polling.ts` `uri()`; shared/PROTOCOL-NOTES.md §A.1): user query, `EIO`,
//! `transport`, `sid`, then `t` on polling requests only.

use std::fmt;

use http::{HeaderName, HeaderValue};

/// The engine.io protocol revision the probe speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eio {
    /// engine.io 3 (socket.io 2): length-prefixed payloads, client-initiated pings.
    V3,
    /// engine.io 4 (socket.io 3 and 4): `\x1e`-separated payloads, server-initiated pings.
    V4,
}

impl Eio {
    /// The value of the `EIO` query parameter.
    pub fn number(self) -> u8 {
        match self {
            Eio::V3 => 3,
            Eio::V4 => 4,
        }
    }
}

/// Parses `--eio`: `3` or `4`.
///
/// # Errors
/// Any other value.
pub fn parse_eio(s: &str) -> Result<Eio, String> {
    match s.trim() {
        "3" => Ok(Eio::V3),
        "4" => Ok(Eio::V4),
        _ => Err("must be 3 or 4".into()),
    }
}

/// Where the probe goes: scheme, host, port and the socket.io path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    /// Host name or IP for DNS and TLS (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// The `Host` header: the URL's authority without user info.
    pub authority: String,
    /// The socket.io path, always ending with `/` (engine.io-client's `addTrailingSlash`).
    pub path: String,
    /// The URL's own query, kept in front of the engine.io parameters.
    pub query: Option<String>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.path)?;
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        Ok(())
    }
}

/// Parses the probe URL: `http(s)://host[:port][/path/][?query]`. An empty path or `/`
/// means `/socket.io/`, as in a browser's `io("https://host")`.
///
/// # Errors
/// Not an absolute http(s) URL, no host, or a fragment/user info that cannot be meant.
pub fn parse_url(s: &str) -> Result<Target, String> {
    let uri: http::Uri = s
        .parse()
        .map_err(|e| format!("not a URL ({e}); e.g. https://host/theia/socket.io/"))?;
    let https = match uri.scheme_str() {
        Some("https") | Some("wss") => true,
        Some("http") | Some("ws") => false,
        Some(other) => return Err(format!("scheme must be http or https, not {other}")),
        None => return Err("needs http:// or https://, e.g. https://host/theia/socket.io/".into()),
    };
    let auth = uri
        .authority()
        .ok_or("needs a host, e.g. https://host/theia/socket.io/")?;
    if auth.as_str().contains('@') {
        return Err("user info (user@host) is not supported; use --header".into());
    }
    let host = auth.host().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("needs a host".into());
    }
    let port = auth.port_u16().unwrap_or(if https { 443 } else { 80 });
    let mut path = uri.path().to_string();
    if path.is_empty() || path == "/" {
        path = "/socket.io/".into();
    } else if !path.ends_with('/') {
        path.push('/');
    }
    let query = uri
        .query()
        .filter(|q| !q.is_empty())
        .map(|q| q.trim_start_matches('&').to_string());
    Ok(Target {
        https,
        host: host.to_string(),
        port,
        authority: auth.as_str().to_string(),
        path,
        query,
    })
}

impl Target {
    /// What a page served from this host sends as `Origin`.
    pub fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }

    /// `host:port` for messages.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The request target of a polling request (`t` is the cache buster).
    pub fn polling(&self, eio: Eio, sid: Option<&str>, t: &str) -> String {
        let mut s = self.engine_target(eio, "polling", sid);
        s.push_str("&t=");
        s.push_str(t);
        s
    }

    /// The request target of the websocket upgrade (no `t`: engine.io-client's default
    /// `timestampRequests` is off for websocket).
    pub fn websocket(&self, eio: Eio, sid: Option<&str>) -> String {
        self.engine_target(eio, "websocket", sid)
    }

    fn engine_target(&self, eio: Eio, transport: &str, sid: Option<&str>) -> String {
        let mut s = self.path.clone();
        s.push('?');
        if let Some(q) = &self.query {
            s.push_str(q);
            s.push('&');
        }
        s.push_str(&format!("EIO={}&transport={transport}", eio.number()));
        if let Some(sid) = sid {
            s.push_str("&sid=");
            s.push_str(&encode_component(sid));
        }
        s
    }
}

/// Percent-encodes what `encodeURIComponent` would (sids are base64url, so rarely needed).
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'!'
            | b'~'
            | b'*'
            | b'\''
            | b'('
            | b')' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Parses `--header NAME:VALUE` (spaces around the value are trimmed).
///
/// # Errors
/// No colon, or a name or value that is not a valid header.
pub fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or("expected NAME:VALUE, e.g. 'Cookie: theia-connection-token=…'")?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("'{}' is not a valid header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of {name} is not a valid header value"))?;
    Ok((name, value))
}

/// Parses `--origin`: any valid header value; empty means "send no Origin".
///
/// # Errors
/// A value that cannot be a header value.
pub fn parse_origin(s: &str) -> Result<String, String> {
    HeaderValue::from_str(s)
        .map(|_| s.to_string())
        .map_err(|_| "not a valid header value".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        // (input, https, host, port, authority, path, query)
        type Case = (
            &'static str,
            bool,
            &'static str,
            u16,
            &'static str,
            &'static str,
            Option<&'static str>,
        );
        let cases: &[Case] = &[
            (
                "https://ide.example.com/theia/socket.io/",
                true,
                "ide.example.com",
                443,
                "ide.example.com",
                "/theia/socket.io/",
                None,
            ),
            (
                "http://127.0.0.1:8080/theia/socket.io",
                false,
                "127.0.0.1",
                8080,
                "127.0.0.1:8080",
                "/theia/socket.io/",
                None,
            ),
            ("https://h", true, "h", 443, "h", "/socket.io/", None),
            (
                "http://h/?token=a%20b",
                false,
                "h",
                80,
                "h",
                "/socket.io/",
                Some("token=a%20b"),
            ),
            ("ws://[::1]:9/x/", false, "::1", 9, "[::1]:9", "/x/", None),
            (
                "wss://H.example:443/s/",
                true,
                "H.example",
                443,
                "H.example:443",
                "/s/",
                None,
            ),
        ];
        for (input, https, host, port, authority, path, query) in cases {
            let t = parse_url(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                (
                    t.https,
                    t.host.as_str(),
                    t.port,
                    t.authority.as_str(),
                    t.path.as_str(),
                    t.query.as_deref()
                ),
                (*https, *host, *port, *authority, *path, *query),
                "{input}"
            );
        }
        for bad in [
            "",
            "host/socket.io/",
            "ftp://h/",
            "/socket.io/",
            "http://u:p@h/",
            "http:// spaces/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn targets() {
        let t = parse_url("https://ide.example.com:8443/theia/socket.io/?a=1").unwrap();
        assert_eq!(t.origin(), "https://ide.example.com:8443");
        assert_eq!(t.host_port(), "ide.example.com:8443");
        assert_eq!(
            t.polling(Eio::V4, None, "PXa1b"),
            "/theia/socket.io/?a=1&EIO=4&transport=polling&t=PXa1b"
        );
        assert_eq!(
            t.polling(Eio::V3, Some("ab+c/="), "x"),
            "/theia/socket.io/?a=1&EIO=3&transport=polling&sid=ab%2Bc%2F%3D&t=x"
        );
        assert_eq!(
            t.websocket(Eio::V4, Some("s-_1")),
            "/theia/socket.io/?a=1&EIO=4&transport=websocket&sid=s-_1"
        );
        let v6 = parse_url("http://[::1]:80/").unwrap();
        assert_eq!(v6.host_port(), "[::1]:80");
        assert_eq!(v6.to_string(), "http://[::1]:80/socket.io/");
    }

    #[test]
    fn headers_and_flags() {
        let (n, v) = parse_header("Cookie:  theia-connection-token=x ").unwrap();
        assert_eq!(
            (n.as_str(), v.to_str().unwrap()),
            ("cookie", "theia-connection-token=x")
        );
        let (n, v) = parse_header("X-Empty:").unwrap();
        assert_eq!((n.as_str(), v.as_bytes()), ("x-empty", &b""[..]));
        for bad in ["NoColon", "Bad Name: v", ": v", "X: a\nb"] {
            assert!(parse_header(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_eio("4"), Ok(Eio::V4));
        assert_eq!(parse_eio("3"), Ok(Eio::V3));
        assert!(parse_eio("5").is_err());
        assert_eq!(parse_origin("").as_deref(), Ok(""));
        assert!(parse_origin("a\nb").is_err());
    }
}
