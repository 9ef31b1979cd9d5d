//! Derives the diagnostic flags of a finished exchange (contract §2, flags). Pure.

use http::header;

use crate::capture::Snapshot;
use crate::record::Outcome;
use crate::sio::{CODE_FORBIDDEN, CODE_SID_UNKNOWN, Sio, SioError};

pub const UPGRADE_HEADER_MISSING: &str = "upgrade_header_missing";
pub const CONNECTION_UPGRADE_MISSING: &str = "connection_upgrade_missing";
pub const HTTP10_UPGRADE: &str = "http10_upgrade";
pub const SID_UNKNOWN: &str = "sid_unknown";
pub const SID_NOT_ISSUED_HERE: &str = "sid_not_issued_here";
pub const ORIGIN_HOST_MISMATCH: &str = "origin_host_mismatch";
pub const FORBIDDEN: &str = "forbidden";
pub const HEALTH_CHECK: &str = "health_check";
pub const POLL_ABORTED: &str = "poll_aborted";
pub const UPSTREAM_UNREACHABLE: &str = "upstream_unreachable";

/// Every flag name, in the order flags appear in a record.
pub const ALL: [&str; 10] = [
    UPGRADE_HEADER_MISSING,
    CONNECTION_UPGRADE_MISSING,
    SID_UNKNOWN,
    SID_NOT_ISSUED_HERE,
    ORIGIN_HOST_MISMATCH,
    FORBIDDEN,
    HEALTH_CHECK,
    POLL_ABORTED,
    UPSTREAM_UNREACHABLE,
    // Last: `report` reads a record's flags as bits by position in this list.
    HTTP10_UPGRADE,
];

/// What the flags are computed from.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub method: &'a str,
    /// `Some` on socket.io paths.
    pub sio: Option<&'a Sio>,
    pub headers: &'a Snapshot,
    pub status: u16,
    pub sio_error: Option<&'a SioError>,
    /// Whether this process saw the request's sid issued; `None` when there is no sid.
    pub sid_issued_here: Option<bool>,
    pub outcome: Outcome,
    pub upstream_unreachable: bool,
}

/// The flags that apply to an HTTP/1.1 request, in [`ALL`] order; empty when none.
pub fn derive(f: &Facts<'_>) -> Vec<&'static str> {
    derive_for(f, http::Version::HTTP_11)
}

/// The flags that apply to a request whose request line said `version`, in [`ALL`]
/// order; empty when none.
pub fn derive_for(f: &Facts<'_>, version: http::Version) -> Vec<&'static str> {
    let mut out = Vec::new();
    let upgrade = f.headers.first(&header::UPGRADE);
    if f.sio.is_some_and(Sio::is_websocket) && upgrade.is_none() {
        out.push(UPGRADE_HEADER_MISSING);
    }
    // Repeated Connection headers form one comma list (RFC 9110 §5.3).
    let connection = f.headers.all(&header::CONNECTION);
    if upgrade.is_some() && !connection.iter().any(|v| has_upgrade_token(v)) {
        out.push(CONNECTION_UPGRADE_MISSING);
    }
    let code = f.sio_error.and_then(|e| e.code);
    if code == Some(CODE_SID_UNKNOWN) {
        out.push(SID_UNKNOWN);
    }
    if f.sid_issued_here == Some(false) {
        out.push(SID_NOT_ISSUED_HERE);
    }
    if let Some(origin) = f.headers.first(&header::ORIGIN)
        && origin_host_mismatch(origin, f.headers.first(&header::HOST))
    {
        out.push(ORIGIN_HOST_MISMATCH);
    }
    if code == Some(CODE_FORBIDDEN) || (f.sio.is_some() && f.status == 403) {
        out.push(FORBIDDEN);
    }
    if f.headers
        .first(&header::USER_AGENT)
        .is_some_and(|ua| ua.starts_with("GoogleHC/") || ua.starts_with("kube-probe/"))
    {
        out.push(HEALTH_CHECK);
    }
    if f.method == "GET"
        && f.outcome == Outcome::ClientAborted
        && f.sio.is_some_and(|s| s.is_polling() && s.sid.is_some())
    {
        out.push(POLL_ABORTED);
    }
    if f.upstream_unreachable {
        out.push(UPSTREAM_UNREACHABLE);
    }
    // RFC 9110 §7.8: a server must ignore Upgrade in an HTTP/1.0 request; Node upgrades
    // it anyway. nginx sends HTTP/1.0 when `proxy_http_version 1.1` is missing.
    if upgrade.is_some() && version == http::Version::HTTP_10 {
        out.push(HTTP10_UPGRADE);
    }
    out
}

/// True when the comma list in a `Connection` value holds the `upgrade` token.
pub fn has_upgrade_token(connection: &str) -> bool {
    connection
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// True when the host of `origin` differs from `host` (contract §2): hostnames compare
/// case-insensitively; ports only when `Host` carries one, an Origin without a port
/// meaning its scheme's default. An opaque Origin (`null`) or a missing Host differs.
pub fn origin_host_mismatch(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return true };
    let Some((scheme, rest)) = origin.split_once("://") else {
        return true;
    };
    let (o_host, o_port) = split_host_port(rest);
    let (h_host, h_port) = split_host_port(host.trim());
    if !o_host.eq_ignore_ascii_case(h_host) {
        return true;
    }
    match h_port {
        None => false,
        Some(hp) => {
            let op = o_port.or(match scheme.to_ascii_lowercase().as_str() {
                "http" | "ws" => Some("80"),
                "https" | "wss" => Some("443"),
                _ => None,
            });
            op.map(|p| p.trim_start_matches('0')) != Some(hp.trim_start_matches('0'))
        }
    }
}

/// `host:port`, `[v6]:port`, `host` → (host, port). A trailing path is ignored.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    let s = s.split('/').next().unwrap_or(s);
    if let Some(v6) = s.strip_prefix('[') {
        return match v6.split_once(']') {
            Some((h, rest)) => (h, rest.strip_prefix(':').filter(|p| !p.is_empty())),
            None => (s, None),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture;
    use http::{HeaderMap, HeaderName, HeaderValue};

    fn snap(pairs: &[(&str, &str)]) -> Snapshot {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        capture::request(&m, &[])
    }

    fn flags(
        method: &str,
        query: Option<&str>,
        headers: &[(&str, &str)],
        status: u16,
        err: Option<SioError>,
        issued: Option<bool>,
        outcome: Outcome,
    ) -> Vec<&'static str> {
        flags_of(
            http::Version::HTTP_11,
            method,
            query,
            headers,
            status,
            err,
            issued,
            outcome,
        )
    }

    #[allow(clippy::too_many_arguments)] // one per fact, as the table reads
    fn flags_of(
        version: http::Version,
        method: &str,
        query: Option<&str>,
        headers: &[(&str, &str)],
        status: u16,
        err: Option<SioError>,
        issued: Option<bool>,
        outcome: Outcome,
    ) -> Vec<&'static str> {
        let sio = query.map(|q| Sio::from_query(Some(q)));
        let h = snap(headers);
        let facts = Facts {
            method,
            sio: sio.as_ref(),
            headers: &h,
            status,
            sio_error: err.as_ref(),
            sid_issued_here: issued,
            outcome,
            upstream_unreachable: false,
        };
        derive_for(&facts, version)
    }

    fn e(code: Option<u8>) -> Option<SioError> {
        Some(SioError {
            code,
            message: String::new(),
        })
    }

    const OK: Outcome = Outcome::Complete;
    const AB: Outcome = Outcome::ClientAborted;
    const WS: &str = "EIO=4&transport=websocket&sid=s";
    const POLL_SID: &str = "EIO=4&transport=polling&sid=s";
    const UPG: (&str, &str) = ("upgrade", "websocket");

    #[test]
    fn http10_upgrade_only_with_upgrade_on_http10() {
        use http::Version;
        const CONN: (&str, &str) = ("connection", "Upgrade");
        type Case<'a> = (Version, &'a [(&'a str, &'a str)], u16, &'a [&'a str]);
        let cases: &[Case<'_>] = &[
            (Version::HTTP_10, &[UPG, CONN], 101, &[HTTP10_UPGRADE]),
            (Version::HTTP_10, &[UPG, CONN], 400, &[HTTP10_UPGRADE]),
            (
                Version::HTTP_10,
                &[UPG, ("connection", "close")],
                400,
                &[CONNECTION_UPGRADE_MISSING, HTTP10_UPGRADE],
            ),
            (
                Version::HTTP_10,
                &[("connection", "close")],
                400,
                &[UPGRADE_HEADER_MISSING],
            ),
            (Version::HTTP_11, &[UPG, CONN], 101, &[]),
        ];
        for (version, headers, status, want) in cases {
            let got = flags_of(
                *version,
                "GET",
                Some(WS),
                headers,
                *status,
                None,
                Some(true),
                OK,
            );
            assert_eq!(&got, want, "{version:?} {headers:?} {status}");
        }
        // Not only on socket.io paths: any HTTP/1.0 request with Upgrade.
        let got = flags_of(
            Version::HTTP_10,
            "GET",
            None,
            &[UPG, CONN],
            101,
            None,
            None,
            OK,
        );
        assert_eq!(got, [HTTP10_UPGRADE]);
    }

    #[test]
    fn each_flag_positive_and_negative() {
        let none: Vec<&str> = vec![];
        let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
            // upgrade_header_missing: websocket without Upgrade, never on polling
            (
                flags(
                    "GET",
                    Some(WS),
                    &[("connection", "upgrade")],
                    400,
                    e(Some(3)),
                    Some(true),
                    OK,
                ),
                vec![UPGRADE_HEADER_MISSING],
            ),
            (
                flags(
                    "GET",
                    Some(WS),
                    &[UPG, ("connection", "Upgrade")],
                    101,
                    None,
                    Some(true),
                    OK,
                ),
                none.clone(),
            ),
            (
                flags(
                    "GET",
                    Some(POLL_SID),
                    &[("connection", "close")],
                    200,
                    None,
                    Some(true),
                    OK,
                ),
                none.clone(),
            ),
            // connection_upgrade_missing
            (
                flags(
                    "GET",
                    Some(WS),
                    &[UPG, ("connection", "close")],
                    400,
                    e(Some(3)),
                    Some(true),
                    OK,
                ),
                vec![CONNECTION_UPGRADE_MISSING],
            ),
            (
                flags("GET", Some(WS), &[UPG], 400, None, Some(true), OK),
                vec![CONNECTION_UPGRADE_MISSING],
            ),
            (
                flags(
                    "GET",
                    None,
                    &[UPG, ("connection", "keep-alive, Upgrade")],
                    101,
                    None,
                    None,
                    OK,
                ),
                none.clone(),
            ),
            // sid_unknown + sid_not_issued_here
            (
                flags("GET", Some(POLL_SID), &[], 400, e(Some(1)), Some(false), OK),
                vec![SID_UNKNOWN, SID_NOT_ISSUED_HERE],
            ),
            (
                flags("GET", Some(POLL_SID), &[], 400, e(Some(1)), Some(true), OK),
                vec![SID_UNKNOWN],
            ),
            (
                flags("GET", Some(POLL_SID), &[], 200, e(None), None, OK),
                none.clone(),
            ),
            // forbidden
            (
                flags(
                    "GET",
                    Some("EIO=4&transport=polling"),
                    &[],
                    403,
                    e(Some(4)),
                    None,
                    OK,
                ),
                vec![FORBIDDEN],
            ),
            (
                flags(
                    "GET",
                    Some(WS),
                    &[UPG, ("connection", "upgrade")],
                    400,
                    e(Some(4)),
                    Some(true),
                    OK,
                ),
                vec![FORBIDDEN],
            ),
            (
                flags("GET", Some("x=1"), &[], 403, None, None, OK),
                vec![FORBIDDEN],
            ),
            (flags("GET", None, &[], 403, None, None, OK), none.clone()),
            // health_check
            (
                flags(
                    "GET",
                    None,
                    &[("user-agent", "GoogleHC/1.0")],
                    404,
                    None,
                    None,
                    OK,
                ),
                vec![HEALTH_CHECK],
            ),
            (
                flags(
                    "GET",
                    None,
                    &[("user-agent", "kube-probe/1.32")],
                    200,
                    None,
                    None,
                    OK,
                ),
                vec![HEALTH_CHECK],
            ),
            (
                flags(
                    "GET",
                    None,
                    &[("user-agent", "Mozilla GoogleHC/1.0")],
                    200,
                    None,
                    None,
                    OK,
                ),
                none.clone(),
            ),
            // poll_aborted
            (
                flags("GET", Some(POLL_SID), &[], 0, None, Some(true), AB),
                vec![POLL_ABORTED],
            ),
            (
                flags("POST", Some(POLL_SID), &[], 0, None, Some(true), AB),
                none.clone(),
            ),
            (
                flags(
                    "GET",
                    Some("EIO=4&transport=polling"),
                    &[],
                    0,
                    None,
                    None,
                    AB,
                ),
                none.clone(),
            ),
            (
                flags("GET", Some(POLL_SID), &[], 200, None, Some(true), OK),
                none.clone(),
            ),
            // origin_host_mismatch
            (
                flags(
                    "GET",
                    None,
                    &[("origin", "https://evil.example"), ("host", "ide.example")],
                    200,
                    None,
                    None,
                    OK,
                ),
                vec![ORIGIN_HOST_MISMATCH],
            ),
            (
                flags(
                    "GET",
                    None,
                    &[("origin", "https://IDE.example"), ("host", "ide.example")],
                    200,
                    None,
                    None,
                    OK,
                ),
                none.clone(),
            ),
            (
                flags("GET", None, &[("host", "ide.example")], 200, None, None, OK),
                none.clone(),
            ),
        ];
        for (i, (got, want)) in cases.into_iter().enumerate() {
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn repeated_connection_headers_form_one_list() {
        let hs = [UPG, ("connection", "keep-alive"), ("connection", "Upgrade")];
        assert!(flags("GET", Some(WS), &hs, 101, None, Some(true), OK).is_empty());
        let hs = [UPG, ("connection", "keep-alive"), ("connection", "close")];
        let got = flags("GET", Some(WS), &hs, 400, None, Some(true), OK);
        assert_eq!(got, vec![CONNECTION_UPGRADE_MISSING]);
    }

    #[test]
    fn upstream_unreachable_flag() {
        let h = snap(&[]);
        let mut f = Facts {
            method: "GET",
            sio: None,
            headers: &h,
            status: 502,
            sio_error: None,
            sid_issued_here: None,
            outcome: Outcome::UpstreamError,
            upstream_unreachable: true,
        };
        assert_eq!(derive(&f), vec![UPSTREAM_UNREACHABLE]);
        f.upstream_unreachable = false;
        assert!(derive(&f).is_empty());
    }

    #[test]
    fn origin_vs_host() {
        for (origin, host, mismatch) in [
            ("https://ide.example.com", Some("ide.example.com"), false),
            ("https://ide.example.com", Some("IDE.Example.com"), false),
            (
                "https://ide.example.com",
                Some("ide.example.com:443"),
                false,
            ),
            ("https://ide.example.com", Some("ide.example.com:80"), true),
            ("http://ide.example.com", Some("ide.example.com:80"), false),
            ("http://localhost:3000", Some("localhost"), false),
            ("http://localhost:3000", Some("localhost:3000"), false),
            ("http://localhost:3000", Some("localhost:3001"), true),
            ("https://ide.example.com", Some("127.0.0.1:3000"), true),
            ("http://[::1]:8080", Some("[::1]:8080"), false),
            ("http://[::1]", Some("[::1]:80"), false),
            ("http://[::1]", Some("[::2]"), true),
            ("null", Some("ide.example.com"), true),
            ("https://ide.example.com", None, true),
            ("chrome-extension://abc", Some("abc:1"), true),
        ] {
            assert_eq!(
                origin_host_mismatch(origin, host),
                mismatch,
                "{origin} vs {host:?}"
            );
        }
    }

    #[test]
    fn upgrade_token() {
        assert!(has_upgrade_token("Upgrade"));
        assert!(has_upgrade_token("keep-alive, upgrade"));
        assert!(!has_upgrade_token("close"));
        assert!(!has_upgrade_token("upgrades"));
    }
}
