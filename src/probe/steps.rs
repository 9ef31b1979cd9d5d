//! What a probe session found: each step with the headers that matter, and the first
//! failure with its hypothesis. These are the records of `--json`.

use http::{HeaderMap, header};
use serde::Serialize;

use super::diagnose::{Hypothesis, StepName};
use crate::sio::SioError;

/// The response headers that matter for the diagnosis (cookie values redacted except `io`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Seen {
    pub upgrade: Option<String>,
    pub connection: Option<String>,
    #[serde(rename = "set-cookie")]
    pub set_cookie: Vec<String>,
    #[serde(rename = "x-pod-name")]
    pub x_pod_name: Option<String>,
    pub via: Option<String>,
}

impl Seen {
    /// Picks the headers that matter from a response.
    pub fn of(h: &HeaderMap) -> Self {
        let one = |name: &str| {
            let vals: Vec<String> = h
                .get_all(name)
                .iter()
                .map(|v| crate::capture::text(v.as_bytes()))
                .collect();
            (!vals.is_empty()).then(|| vals.join(", "))
        };
        Seen {
            upgrade: one("upgrade"),
            connection: one("connection"),
            set_cookie: h
                .get_all(header::SET_COOKIE)
                .iter()
                .map(|v| crate::capture::redact_set_cookie(&crate::capture::text(v.as_bytes())))
                .collect(),
            x_pod_name: one("x-pod-name"),
            via: one("via"),
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: StepName,
    pub ok: bool,
    /// The request (method and target) or the frames sent.
    pub request: String,
    pub status: Option<u16>,
    /// Wall time of the step, including connect and TLS.
    pub ms: f64,
    /// `X-Pod-Name` of the answer (for websocket steps: of the 101).
    pub pod: Option<String>,
    pub headers: Seen,
    /// Names of the cookies sent with the request.
    pub cookies_sent: Vec<String>,
    pub sio_error: Option<SioError>,
    /// What the step learnt (sid, packets received) or, on failure, what went wrong.
    pub detail: Option<String>,
    /// The trace id sent in `X-Cloud-Trace-Context`: find this request in the load
    /// balancer's log and in sockproxy's records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// The first failing step of a session and the hypothesis it points at.
#[derive(Debug, Clone, Serialize)]
pub struct FailureReport {
    pub step: StepName,
    /// The most likely hypothesis; `null` when the failure is none of H1–H6.
    pub hypothesis: Option<Hypothesis>,
    /// Every hypothesis that fits, most likely first.
    pub hypotheses: Vec<Hypothesis>,
    pub title: Option<&'static str>,
    pub why: String,
    pub fix: Option<&'static str>,
}

/// One session: its steps up to the first failure.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    pub session: usize,
    pub ok: bool,
    pub sid: Option<String>,
    /// Every `X-Pod-Name` seen, in order of first appearance.
    pub pods: Vec<String>,
    /// Whether a sid-bound request failed with "Session ID unknown".
    #[serde(skip)]
    pub sid_refused: bool,
    pub steps: Vec<Step>,
    pub skipped: Vec<StepName>,
    pub failure: Option<FailureReport>,
    pub ms: f64,
}
