//! Names the hypothesis (the seed's H1–H6) a failed probe step points at. Pure.
//!
//! The wire signatures are those of shared/PROTOCOL-NOTES.md §B (engine.io error bodies:
//! JSON from `abortRequest`, raw text from `abortUpgrade`, `ws`'s own refusals) and §H
//! (which signature belongs to which hypothesis).
//!
//! engine.io code 4 alone does not name H4: Theia's `allowRequest` refuses for a foreign
//! Origin *or* a missing connection-token cookie, with the same body. The session re-sends
//! the refused request without Origin (which Theia's same-origin check lets through) and
//! hands the outcome in as an [`OriginCheck`].

use std::time::Duration;

use serde::Serialize;

use crate::sio::{CODE_FORBIDDEN, CODE_SID_UNKNOWN, SioError};

/// The steps of a probe session, in the order a browser's socket.io client takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepName {
    /// Polling handshake: `GET ?EIO=4&transport=polling`, answered by an open packet.
    Handshake,
    /// `POST` on the sid (`40`, socket.io's namespace connect; a ping on EIO 3).
    Post,
    /// `GET` on the sid: the answer to the POST.
    Poll,
    /// The websocket upgrade on the same sid: `101`.
    Upgrade,
    /// `2probe` → `3probe`, then `5`: the session moves to the websocket.
    Probe,
    /// One message round trip over the websocket.
    Message,
    /// `--hold`: the websocket stays open, answering pings.
    Hold,
    /// Close handshake.
    Close,
    /// Diagnostic, not part of a session: after an engine.io code 4, the refused request
    /// again without Origin ([`OriginCheck`]).
    #[serde(rename = "no-origin")]
    NoOrigin,
}

impl StepName {
    /// The name used in output and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::Handshake => "handshake",
            StepName::Post => "post",
            StepName::Poll => "poll",
            StepName::Upgrade => "upgrade",
            StepName::Probe => "probe",
            StepName::Message => "message",
            StepName::Hold => "hold",
            StepName::Close => "close",
            StepName::NoOrigin => "no-origin",
        }
    }

    /// True for the steps that run over the websocket after the 101.
    pub fn is_websocket(self) -> bool {
        matches!(
            self,
            StepName::Probe | StepName::Message | StepName::Hold | StepName::Close
        )
    }
}

/// The seed's hypotheses (shared/seed, "Hypothesis Ranking").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Hypothesis {
    H1,
    H2,
    H3,
    H4,
    H5,
    H6,
}

impl Hypothesis {
    /// What the hypothesis says, in a few words.
    pub fn title(self) -> &'static str {
        match self {
            Hypothesis::H1 => "Upgrade stripped on the way",
            Hypothesis::H2 => "no session affinity at the load balancer",
            Hypothesis::H3 => "health check failing / no healthy backend",
            Hypothesis::H4 => "Origin/Host changed on the way",
            Hypothesis::H5 => "draining or rollout ended the session",
            Hypothesis::H6 => "load balancer backend timeout (timeoutSec) too short",
        }
    }

    /// The fix, in one line.
    pub fn fix(self) -> &'static str {
        match self {
            Hypothesis::H1 => {
                "every hop must pass Upgrade and Connection: upgrade over HTTP/1.1 (nginx: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade)"
            }
            Hypothesis::H2 => {
                "BackendConfig spec.sessionAffinity.affinityType: GENERATED_COOKIE (or CLIENT_IP); Service.spec.sessionAffinity has no effect with NEGs"
            }
            Hypothesis::H3 => {
                "point the LB health check at a path that answers 200 on the serving port (BackendConfig spec.healthCheck.requestPath)"
            }
            Hypothesis::H4 => {
                "pass Host and Origin unchanged on every hop (nginx: proxy_set_header Host $host), or list the public host in THEIA_HOSTS"
            }
            Hypothesis::H5 => {
                "give tunnels time to finish (connectionDraining.drainingTimeoutSec, terminationGracePeriodSeconds) and expect clients to reconnect after a rollout"
            }
            Hypothesis::H6 => {
                "raise BackendConfig spec.timeoutSec above the longest websocket you need (it is a lifetime, not an idle timeout) and keep pingInterval below it"
            }
        }
    }
}

/// How a step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// An HTTP answer with another status than the step needs.
    Status {
        status: u16,
        /// The engine.io error decoded from the body, when it is one.
        error: Option<SioError>,
        /// The body was JSON (engine.io's `abortRequest`) rather than raw text (`abortUpgrade`).
        json: bool,
        /// The body was empty.
        empty: bool,
    },
    /// The right status with the wrong content (no open packet, no `3probe`, …).
    Unexpected(String),
    /// No TCP connection (DNS, refused, unreachable).
    Connect(String),
    /// The TLS handshake failed; `certificate` when the peer's certificate was refused.
    Tls { message: String, certificate: bool },
    /// No answer within `--timeout`.
    Timeout(Duration),
    /// The connection closed before a response head arrived.
    NoResponse(String),
    /// The websocket ended without a close frame, this long after the 101.
    Cut(Duration),
    /// The server sent a websocket close frame before the probe was done.
    ServerClose { code: Option<u16>, reason: String },
}

/// Whether the request that failed reached the pod that issued the sid (`X-Pod-Name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pods {
    Same(String),
    Changed { from: String, to: String },
    Unknown,
}

/// What the probe learnt about an engine.io code 4 refusal by sending the same request
/// again without Origin.
///
/// Theia >= 1.73's `allowRequest` runs two checks with one answer (403 `{"code":4,…}` on
/// polling, raw 400 `Forbidden` on a websocket handshake; PROTOCOL-NOTES §B.3, §H): the
/// Origin's host must equal Host (or be in THEIA_HOSTS), and the `theia-connection-token`
/// cookie must match. A request without Origin passes the first, so whether it is still
/// refused tells the two apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginCheck {
    /// The Host header the probe sent.
    pub host: String,
    /// A `theia-connection-token` cookie went with the request.
    pub token_cookie: bool,
    pub resend: Resend,
}

/// The request without Origin, and what it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resend {
    /// The refused request carried no Origin (`--origin ''`): there is nothing to take away.
    NoOrigin,
    /// Accepted without `origin` (the refused request's Origin), with `status`.
    Accepted { origin: String, status: u16 },
    /// Refused with engine.io code 4 again.
    Refused { origin: String, status: u16 },
    /// Anything else (another status, a timeout): `what` happened, nothing learnt.
    Unclear { origin: String, what: String },
}

/// The hypotheses a failure points at (most likely first; empty when it is none of
/// H1–H6) and why, in one sentence with the observed values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub hypotheses: Vec<Hypothesis>,
    pub why: String,
}

impl Verdict {
    fn new(hypotheses: &[Hypothesis], why: String) -> Self {
        Verdict {
            hypotheses: hypotheses.to_vec(),
            why,
        }
    }
}

/// `ws`'s refusals of a malformed upgrade request (PROTOCOL-NOTES §B.4): a hop changed
/// the websocket headers.
const WS_HEADER_REFUSALS: [&str; 3] = [
    "Invalid Upgrade header",
    "Missing or invalid Sec-WebSocket-Key header",
    "Missing or invalid Sec-WebSocket-Version header",
];

/// Names the hypothesis behind `failure` at `step`; `origin` is what the re-send without
/// Origin found, when the failure was an engine.io code 4 and it was made.
pub fn diagnose(
    step: StepName,
    failure: &Failure,
    pods: &Pods,
    eio: u8,
    origin: Option<&OriginCheck>,
) -> Verdict {
    use Hypothesis::*;
    match failure {
        Failure::Connect(e) => Verdict::new(&[], e.clone()),
        Failure::Tls {
            message,
            certificate: true,
        } => Verdict::new(
            &[],
            format!(
                "{message}: the certificate is not trusted by this system's roots (self-signed, private CA or wrong name?); --insecure skips verification (test hosts only)"
            ),
        ),
        Failure::Tls { message, .. } => Verdict::new(&[], message.clone()),
        Failure::Timeout(t) => Verdict::new(
            &[],
            format!("no answer within {} s (--timeout)", t.as_secs_f64()),
        ),
        Failure::NoResponse(e) if step == StepName::Upgrade => Verdict::new(
            &[],
            format!(
                "the connection closed without an answer ({e}); engine.io does that to upgrades outside its path: is the URL the socket.io path?"
            ),
        ),
        Failure::NoResponse(e) => Verdict::new(
            &[],
            format!("the connection closed without an answer ({e})"),
        ),
        Failure::Unexpected(what) => Verdict::new(&[], what.clone()),
        Failure::Cut(after) => Verdict::new(
            &[H6, H5],
            format!(
                "the websocket ended without a close frame {:.1} s after the upgrade: a proxy's timeout (the GKE backend timeoutSec is a websocket lifetime, 30 s by default) or a backend going away",
                after.as_secs_f64()
            ),
        ),
        Failure::ServerClose {
            code: Some(1001),
            reason,
        } => Verdict::new(
            &[H5],
            format!(
                "the server closed the websocket with 1001 going away ({reason:?}): it is shutting down"
            ),
        ),
        Failure::ServerClose { code, reason } => Verdict::new(
            &[],
            format!(
                "the server closed the websocket (code {}, {reason:?}){}",
                code.map_or("none".to_string(), |c| c.to_string()),
                if step == StepName::Probe {
                    ": engine.io does that when the session is already upgraded or closed"
                } else {
                    ""
                }
            ),
        ),
        Failure::Status {
            status,
            error: Some(e),
            ..
        } if e.code == Some(CODE_FORBIDDEN) => forbidden_verdict(*status, e, origin),
        Failure::Status {
            status,
            error,
            json,
            empty,
        } => status_verdict(step, *status, error.as_ref(), *json, *empty, pods, eio),
    }
}

/// engine.io code 4: H4 only when the request was accepted without its Origin.
fn forbidden_verdict(status: u16, error: &SioError, check: Option<&OriginCheck>) -> Verdict {
    use Hypothesis::*;
    let refused = format!("{status} code 4 {:?}", error.message);
    let Some(check) = check else {
        return Verdict::new(
            &[H4],
            format!(
                "{refused}: engine.io's allowRequest refused the handshake; Theia >= 1.73 refuses when Origin's host differs from Host, or when the connection-token cookie is wrong (not told apart: no request without Origin was made)"
            ),
        );
    };
    let host = &check.host;
    let other_check = || {
        let token = if check.token_cookie {
            "a theia-connection-token cookie was sent: is it this server's?"
        } else {
            "none was sent; pass the browser's: -H 'Cookie: theia-connection-token=…'"
        };
        format!(
            "not the Origin check but another one: Theia's connection token cookie ({token}), an auth proxy, or the server's allowRequest (only a hop that sets Origin on every request would make the Origin check look like this; sockproxy's records show the Origin Theia got)"
        )
    };
    match &check.resend {
        Resend::Accepted { origin, status: s } => {
            let what = if origin_host(origin).eq_ignore_ascii_case(host) {
                format!(
                    "the probe's Origin matched the Host it sent ({host}), so a hop changed Host or Origin on the way, or the server's THEIA_HOSTS does not list {host}"
                )
            } else {
                format!(
                    "the Origin sent (--origin) is for {}, not the Host sent ({host}); a page on {host} sends its own origin: drop --origin to see what a browser gets",
                    origin_host(origin)
                )
            };
            Verdict::new(
                &[H4],
                format!(
                    "{refused} with Origin {origin}, but the same request without Origin was accepted ({s}): the server's same-origin check refused it; {what}"
                ),
            )
        }
        Resend::Refused { origin, status: s } => Verdict::new(
            &[],
            format!(
                "{refused}, refused whatever the Origin: with Origin {origin} and again without ({s} code 4), which Theia's same-origin check lets through: {}",
                other_check()
            ),
        ),
        Resend::NoOrigin => Verdict::new(
            &[],
            format!(
                "{refused} though no Origin was sent (--origin ''), which Theia's same-origin check lets through: {}",
                other_check()
            ),
        ),
        Resend::Unclear { origin, what } => Verdict::new(
            &[H4],
            format!(
                "{refused} with Origin {origin}: engine.io's allowRequest refused it, for Origin vs Host (Theia >= 1.73) or the connection-token cookie; the same request without Origin, to tell which, got {what}"
            ),
        ),
    }
}

/// `host[:port]` of an Origin (`scheme://host[:port]`), as Theia compares it with Host.
fn origin_host(origin: &str) -> &str {
    let rest = origin.split_once("://").map_or(origin, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

fn status_verdict(
    step: StepName,
    status: u16,
    error: Option<&SioError>,
    json: bool,
    empty: bool,
    pods: &Pods,
    eio: u8,
) -> Verdict {
    let code = error.and_then(|e| e.code);
    let quoted = error
        .map(|e| format!("{:?}", e.message))
        .unwrap_or_default();
    if code == Some(CODE_SID_UNKNOWN) {
        return sid_unknown(status, pods);
    }
    if step == StepName::Upgrade
        && let Some(v) = upgrade_refused(status, code, error, json)
    {
        return v;
    }
    if let Some(v) = server_error(status, &quoted) {
        return v;
    }
    let why = match code {
        Some(5) => format!(
            "{status} code 5 \"Unsupported protocol version\": the server does not accept EIO={eio}; try --eio {}",
            if eio == 4 { 3 } else { 4 }
        ),
        Some(0) => format!(
            "{status} code 0 \"Transport unknown\": the server does not allow this transport"
        ),
        Some(2) => format!("{status} code 2 \"Bad handshake method\""),
        Some(3) => format!(
            "{status} code 3 \"Bad request\": transport mismatch on the sid, or a failing engine.io middleware (cors)"
        ),
        Some(c) => format!("{status} code {c} {quoted}"),
        None if status == 404 => format!(
            "{status}: nothing at this path; is the URL the socket.io path (e.g. https://host/theia/socket.io/)?"
        ),
        None if status == 400 && empty && matches!(step, StepName::Post | StepName::Poll) => {
            format!(
                "{status} with an empty body: engine.io refuses a second request in flight on the same sid (did a hop retry or duplicate it?)"
            )
        }
        None if status == 403 => format!(
            "{status} not from engine.io {quoted}: IAP, Cloud Armor or another proxy refused it"
        ),
        None if error.is_some_and(|e| !e.message.is_empty()) => {
            format!("{status}, not an engine.io error: {quoted}")
        }
        None => format!("unexpected {status}"),
    };
    Verdict::new(&[], why)
}

/// Code 1 "Session ID unknown": which pod the request reached says why.
fn sid_unknown(status: u16, pods: &Pods) -> Verdict {
    use Hypothesis::*;
    match pods {
        Pods::Changed { from, to } => Verdict::new(
            &[H2],
            format!(
                "{status} code 1 \"Session ID unknown\": the sid was issued by {from} but this request reached {to}"
            ),
        ),
        Pods::Unknown => Verdict::new(
            &[H2],
            format!(
                "{status} code 1 \"Session ID unknown\": the request reached a server process that did not issue the sid, most likely another pod (no X-Pod-Name to confirm: run sockproxy with --pod-header)"
            ),
        ),
        Pods::Same(pod) => Verdict::new(
            &[H5, H6],
            format!(
                "{status} code 1 \"Session ID unknown\" from {pod}, the pod that issued the sid: the session was closed there (a restart, or a cut long-poll)"
            ),
        ),
    }
}

/// The upgrade answered with something other than 101 that points at H1.
fn upgrade_refused(
    status: u16,
    code: Option<u8>,
    error: Option<&SioError>,
    json: bool,
) -> Option<Verdict> {
    use Hypothesis::*;
    if code == Some(3) && json {
        return Some(Verdict::new(
            &[H1],
            format!(
                "{status} code 3 \"Bad request\" as JSON: engine.io got the websocket request as a plain request, without Upgrade or Connection: upgrade"
            ),
        ));
    }
    if let Some(e) = error
        && WS_HEADER_REFUSALS.contains(&e.message.as_str())
    {
        return Some(Verdict::new(
            &[H1],
            format!(
                "{status} {:?}: the websocket server refused the upgrade headers it got; a hop changed them",
                e.message
            ),
        ));
    }
    if status == 426 || (200..300).contains(&status) {
        return Some(Verdict::new(
            &[H1],
            format!("{status} instead of 101: the upgrade was not passed on"),
        ));
    }
    None
}

/// A 5xx from a proxy or server on the way.
fn server_error(status: u16, quoted: &str) -> Option<Verdict> {
    use Hypothesis::*;
    let (hypotheses, why): (&[Hypothesis], String) = match status {
        502 | 503 => (
            &[H3, H5],
            format!(
                "{status} from a proxy on the way: no healthy backend to send to (LB health check failing) or backends going away (draining, rollout)"
            ),
        ),
        504 => (
            &[H6],
            format!(
                "{status}: a proxy on the way gave up waiting for the backend (backend timeout)"
            ),
        ),
        500..=599 => (
            &[H3, H5],
            format!("{status} {quoted}: a server error on the way"),
        ),
        _ => return None,
    };
    Some(Verdict::new(hypotheses, why))
}

#[cfg(test)]
mod tests {
    use super::Hypothesis::*;
    use super::*;
    use crate::sio::decode_error;

    fn status(status: u16, body: &str) -> Failure {
        Failure::Status {
            status,
            error: (!body.is_empty()).then(|| decode_error(body.as_bytes())),
            json: body.starts_with('{'),
            empty: body.is_empty(),
        }
    }

    #[test]
    fn verdicts() {
        use StepName::*;
        let a = || Pods::Same("pod-a".into());
        let moved = || Pods::Changed {
            from: "pod-a".into(),
            to: "pod-b".into(),
        };
        let secs = Duration::from_secs;
        // (step, failure, pods, expected hypotheses, a word the explanation must hold)
        let cases: Vec<(StepName, Failure, Pods, &[Hypothesis], &str)> = vec![
            (
                Upgrade,
                status(400, r#"{"code":3,"message":"Bad request"}"#),
                a(),
                &[H1],
                "plain request",
            ),
            (Upgrade, status(400, "Bad request"), a(), &[], "middleware"),
            (
                Upgrade,
                status(400, "Invalid Upgrade header"),
                a(),
                &[H1],
                "upgrade headers",
            ),
            (
                Upgrade,
                status(400, "Missing or invalid Sec-WebSocket-Key header"),
                Pods::Unknown,
                &[H1],
                "hop changed",
            ),
            (Upgrade, status(200, "6"), a(), &[H1], "instead of 101"),
            (Upgrade, status(426, ""), a(), &[H1], "instead of 101"),
            (
                Upgrade,
                status(400, "Session ID unknown"),
                moved(),
                &[H2],
                "pod-b",
            ),
            (Upgrade, status(400, "Forbidden"), a(), &[H4], "Origin"),
            (
                Post,
                status(400, r#"{"code":1,"message":"Session ID unknown"}"#),
                moved(),
                &[H2],
                "issued by pod-a",
            ),
            (
                Poll,
                status(400, r#"{"code":1,"message":"Session ID unknown"}"#),
                Pods::Unknown,
                &[H2],
                "--pod-header",
            ),
            (
                Poll,
                status(400, r#"{"code":1,"message":"Session ID unknown"}"#),
                a(),
                &[H5, H6],
                "pod-a",
            ),
            (
                Handshake,
                status(403, r#"{"code":4,"message":"Forbidden"}"#),
                Pods::Unknown,
                &[H4],
                "allowRequest",
            ),
            (
                Handshake,
                status(403, r#"{"code":4,"message":"Validation error"}"#),
                Pods::Unknown,
                &[H4],
                "Validation error",
            ),
            (
                Handshake,
                status(403, "<html>denied</html>"),
                Pods::Unknown,
                &[],
                "IAP",
            ),
            (
                Handshake,
                status(502, "<html>Bad Gateway</html>"),
                Pods::Unknown,
                &[H3, H5],
                "healthy",
            ),
            (
                Handshake,
                status(503, ""),
                Pods::Unknown,
                &[H3, H5],
                "draining",
            ),
            (Poll, status(504, ""), a(), &[H6], "timeout"),
            (Upgrade, status(502, ""), a(), &[H3, H5], "healthy"),
            (
                Handshake,
                status(
                    400,
                    r#"{"code":5,"message":"Unsupported protocol version"}"#,
                ),
                Pods::Unknown,
                &[],
                "--eio 3",
            ),
            (
                Handshake,
                status(404, "Not Found"),
                Pods::Unknown,
                &[],
                "socket.io path",
            ),
            (Post, status(400, ""), a(), &[], "second request"),
            (
                Poll,
                status(400, r#"{"code":3,"message":"Bad request"}"#),
                a(),
                &[],
                "transport mismatch",
            ),
            (
                Handshake,
                Failure::Unexpected("no open packet".into()),
                Pods::Unknown,
                &[],
                "no open packet",
            ),
            (
                Handshake,
                Failure::Connect("connection refused".into()),
                Pods::Unknown,
                &[],
                "refused",
            ),
            (
                Handshake,
                Failure::Tls {
                    message: "invalid peer certificate: UnknownIssuer".into(),
                    certificate: true,
                },
                Pods::Unknown,
                &[],
                "--insecure",
            ),
            (
                Upgrade,
                Failure::NoResponse("closed".into()),
                a(),
                &[],
                "socket.io path",
            ),
            (Probe, Failure::Timeout(secs(5)), a(), &[], "5 s"),
            (
                Probe,
                Failure::ServerClose {
                    code: Some(1000),
                    reason: String::new(),
                },
                a(),
                &[],
                "already upgraded",
            ),
            (
                Hold,
                Failure::ServerClose {
                    code: Some(1001),
                    reason: "bye".into(),
                },
                a(),
                &[H5],
                "shutting down",
            ),
            (
                Hold,
                Failure::Cut(Duration::from_millis(30_050)),
                a(),
                &[H6, H5],
                "30.1 s",
            ),
            (
                Message,
                Failure::Cut(secs(1)),
                Pods::Unknown,
                &[H6, H5],
                "timeoutSec",
            ),
        ];
        for (step, failure, pods, want, word) in cases {
            let v = diagnose(step, &failure, &pods, 4, None);
            assert_eq!(v.hypotheses, want, "{step:?} {failure:?}: {}", v.why);
            assert!(
                v.why.contains(word),
                "{step:?} {failure:?}: {:?} lacks {word:?}",
                v.why
            );
        }
    }

    #[test]
    fn code_4_is_h4_only_when_accepted_without_origin() {
        let o = || "https://ide.example.com".to_string();
        let check = |token_cookie, resend| OriginCheck {
            host: "ide.example.com".into(),
            token_cookie,
            resend,
        };
        let accepted = |origin: &str| Resend::Accepted {
            origin: origin.into(),
            status: 200,
        };
        let refused = Resend::Refused {
            origin: o(),
            status: 403,
        };
        let polling = status(403, r#"{"code":4,"message":"Forbidden"}"#);
        let ws = status(400, "Forbidden");
        // (failure, what the re-send without Origin found, hypotheses, words the why holds)
        type Case<'a> = (
            &'a Failure,
            Option<OriginCheck>,
            &'a [Hypothesis],
            &'a [&'a str],
        );
        let cases: Vec<Case> = vec![
            (&polling, None, &[H4], &["allowRequest", "not told apart"]),
            (
                &polling,
                Some(check(false, accepted("https://ide.example.com"))),
                &[H4],
                &[
                    "without Origin was accepted (200)",
                    "a hop changed Host or Origin",
                ],
            ),
            (
                &polling,
                Some(check(false, accepted("HTTPS://IDE.example.com/"))),
                &[H4],
                &["matched the Host"],
            ),
            (
                &polling,
                Some(check(false, accepted("https://elsewhere.example:8443"))),
                &[H4],
                &["is for elsewhere.example:8443", "drop --origin"],
            ),
            (
                &ws,
                Some(check(false, accepted("https://ide.example.com"))),
                &[H4],
                &["400 code 4 \"Forbidden\"", "same-origin check refused it"],
            ),
            (
                &polling,
                Some(check(false, refused.clone())),
                &[],
                &[
                    "refused whatever the Origin",
                    "not the Origin check",
                    "none was sent",
                    "an auth proxy",
                ],
            ),
            (
                &ws,
                Some(check(true, refused)),
                &[],
                &["refused whatever the Origin", "cookie was sent"],
            ),
            (
                &polling,
                Some(check(false, Resend::NoOrigin)),
                &[],
                &["no Origin was sent (--origin '')", "connection token"],
            ),
            (
                &polling,
                Some(check(
                    false,
                    Resend::Unclear {
                        origin: o(),
                        what: "no answer within 2 s".into(),
                    },
                )),
                &[H4],
                &["to tell which, got no answer within 2 s"],
            ),
        ];
        for (failure, origin, want, words) in cases {
            let v = diagnose(
                StepName::Handshake,
                failure,
                &Pods::Unknown,
                4,
                origin.as_ref(),
            );
            assert_eq!(v.hypotheses, want, "{origin:?}: {}", v.why);
            for word in words {
                assert!(
                    v.why.contains(word),
                    "{origin:?}: {:?} lacks {word:?}",
                    v.why
                );
            }
        }
        // Only code 4 looks at the check.
        let check = check(false, Resend::NoOrigin);
        let v = diagnose(
            StepName::Handshake,
            &status(502, ""),
            &Pods::Unknown,
            4,
            Some(&check),
        );
        assert_eq!(v.hypotheses, [H3, H5]);
        assert_eq!(origin_host("http://127.0.0.1:81"), "127.0.0.1:81");
        assert_eq!(origin_host("null"), "null");
    }

    #[test]
    fn every_hypothesis_has_words() {
        for h in [H1, H2, H3, H4, H5, H6] {
            assert!(!h.title().is_empty() && !h.fix().is_empty());
        }
        assert_eq!(serde_json::to_string(&H3).unwrap(), "\"H3\"");
        assert_eq!(
            serde_json::to_string(&StepName::Upgrade).unwrap(),
            "\"upgrade\""
        );
        assert!(StepName::Hold.is_websocket() && !StepName::Poll.is_websocket());
        assert_eq!(
            serde_json::to_string(&StepName::NoOrigin).unwrap(),
            format!("\"{}\"", StepName::NoOrigin.as_str())
        );
    }
}
