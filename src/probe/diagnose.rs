//! Names the hypothesis (the seed's H1–H6) a failed probe step points at. Pure.
//!
//! The wire signatures are those of shared/PROTOCOL-NOTES.md §B (engine.io error bodies:
//! JSON from `abortRequest`, raw text from `abortUpgrade`, `ws`'s own refusals) and §H
//! (which signature belongs to which hypothesis).

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

/// Names the hypothesis behind `failure` at `step`.
pub fn diagnose(step: StepName, failure: &Failure, pods: &Pods, eio: u8) -> Verdict {
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
            error,
            json,
            empty,
        } => status_verdict(step, *status, error.as_ref(), *json, *empty, pods, eio),
    }
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
    use Hypothesis::*;
    let code = error.and_then(|e| e.code);
    let quoted = error
        .map(|e| format!("{:?}", e.message))
        .unwrap_or_default();
    if code == Some(CODE_SID_UNKNOWN) {
        return match pods {
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
        };
    }
    if code == Some(CODE_FORBIDDEN) {
        return Verdict::new(
            &[H4],
            format!(
                "{status} code 4 {quoted}: engine.io's allowRequest refused the handshake; Theia >= 1.73 refuses when Origin's host differs from Host (or the connection-token cookie is wrong)"
            ),
        );
    }
    if step == StepName::Upgrade {
        if code == Some(3) && json {
            return Verdict::new(
                &[H1],
                format!(
                    "{status} code 3 \"Bad request\" as JSON: engine.io got the websocket request as a plain request, without Upgrade or Connection: upgrade"
                ),
            );
        }
        if let Some(e) = error
            && WS_HEADER_REFUSALS.contains(&e.message.as_str())
        {
            return Verdict::new(
                &[H1],
                format!(
                    "{status} {:?}: the websocket server refused the upgrade headers it got; a hop changed them",
                    e.message
                ),
            );
        }
        if status == 426 || (200..300).contains(&status) {
            return Verdict::new(
                &[H1],
                format!("{status} instead of 101: the upgrade was not passed on"),
            );
        }
    }
    match status {
        502 | 503 => {
            return Verdict::new(
                &[H3, H5],
                format!(
                    "{status} from a proxy on the way: no healthy backend to send to (LB health check failing) or backends going away (draining, rollout)"
                ),
            );
        }
        504 => {
            return Verdict::new(
                &[H6],
                format!(
                    "{status}: a proxy on the way gave up waiting for the backend (backend timeout)"
                ),
            );
        }
        500..=599 => {
            return Verdict::new(
                &[H3, H5],
                format!("{status} {quoted}: a server error on the way"),
            );
        }
        _ => {}
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
            let v = diagnose(step, &failure, &pods, 4);
            assert_eq!(v.hypotheses, want, "{step:?} {failure:?}: {}", v.why);
            assert!(
                v.why.contains(word),
                "{step:?} {failure:?}: {:?} lacks {word:?}",
                v.why
            );
        }
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
    }
}
