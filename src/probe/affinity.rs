//! Sums up `--count` sessions: how many stayed on the pod that issued their sid. Pure.

use serde::Serialize;

use super::steps::Session;

/// Handshakes answered by one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodCount {
    pub pod: String,
    pub handshakes: usize,
}

/// The affinity picture over all sessions (the seed's Q3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Affinity {
    /// Sessions that got a sid (the others say nothing about affinity).
    pub sessions: usize,
    /// Of those, sessions whose every answer came from one pod.
    pub stayed: usize,
    /// How "stayed" was judged: `x-pod-name` (every answer carried the same one), or
    /// `sid` when no answer carried X-Pod-Name (no request was refused with
    /// "Session ID unknown").
    pub by: &'static str,
    /// Handshakes per pod, in order of first appearance.
    pub handshake_pods: Vec<PodCount>,
    /// Names of the cookies the server set.
    pub cookies_set: Vec<String>,
    /// Whether cookies were sent back (`--no-cookies` turns it off).
    pub cookies_sent: bool,
}

/// Sums up `sessions`.
pub fn summarize(sessions: &[Session], cookies_sent: bool) -> Affinity {
    let with_sid: Vec<&Session> = sessions.iter().filter(|s| s.sid.is_some()).collect();
    let by_pod = with_sid.iter().any(|s| !s.pods.is_empty());
    let stayed = with_sid
        .iter()
        .filter(|s| !s.sid_refused && (!by_pod || s.pods.len() == 1))
        .count();
    let mut handshake_pods: Vec<PodCount> = Vec::new();
    for pod in with_sid
        .iter()
        .filter_map(|s| s.steps.first().and_then(|h| h.pod.clone()))
    {
        match handshake_pods.iter_mut().find(|c| c.pod == pod) {
            Some(c) => c.handshakes += 1,
            None => handshake_pods.push(PodCount { pod, handshakes: 1 }),
        }
    }
    let mut cookies_set: Vec<String> = Vec::new();
    for cookie in sessions
        .iter()
        .flat_map(|s| &s.steps)
        .flat_map(|st| &st.headers.set_cookie)
    {
        let name = cookie.split('=').next().unwrap_or("").trim().to_string();
        if !name.is_empty() && !cookies_set.contains(&name) {
            cookies_set.push(name);
        }
    }
    Affinity {
        sessions: with_sid.len(),
        stayed,
        by: if by_pod { "x-pod-name" } else { "sid" },
        handshake_pods,
        cookies_set,
        cookies_sent,
    }
}

#[cfg(test)]
mod tests {
    use super::super::diagnose::StepName;
    use super::super::steps::{Seen, Step};
    use super::*;

    fn step(name: StepName, pod: Option<&str>, cookie: Option<&str>) -> Step {
        Step {
            step: name,
            ok: true,
            request: String::new(),
            status: Some(200),
            ms: 1.0,
            pod: pod.map(str::to_string),
            headers: Seen {
                set_cookie: cookie.map(str::to_string).into_iter().collect(),
                ..Seen::default()
            },
            cookies_sent: Vec::new(),
            sio_error: None,
            detail: None,
            trace: None,
        }
    }

    fn session(sid: bool, pods: &[&str], refused: bool, cookie: Option<&str>) -> Session {
        Session {
            session: 1,
            ok: !refused,
            sid: sid.then(|| "s".to_string()),
            pods: pods.iter().map(|p| p.to_string()).collect(),
            sid_refused: refused,
            steps: vec![step(StepName::Handshake, pods.first().copied(), cookie)],
            skipped: Vec::new(),
            failure: None,
            ms: 1.0,
        }
    }

    #[test]
    fn by_pod_name() {
        let s = [
            session(true, &["pod-a"], false, Some("GCLB=<redacted>; path=/")),
            session(true, &["pod-b", "pod-a"], true, None),
            session(true, &["pod-a"], false, Some("io=x; Path=/")),
            session(false, &[], false, None),
        ];
        let a = summarize(&s, true);
        assert_eq!((a.sessions, a.stayed, a.by), (3, 2, "x-pod-name"));
        assert_eq!(
            a.handshake_pods,
            [
                PodCount {
                    pod: "pod-a".into(),
                    handshakes: 2
                },
                PodCount {
                    pod: "pod-b".into(),
                    handshakes: 1
                }
            ]
        );
        assert_eq!(a.cookies_set, ["GCLB", "io"]);
    }

    #[test]
    fn by_sid_without_pod_names() {
        let s = [
            session(true, &[], false, None),
            session(true, &[], true, None),
        ];
        let a = summarize(&s, false);
        assert_eq!(
            (a.sessions, a.stayed, a.by, a.cookies_sent),
            (2, 1, "sid", false)
        );
        assert!(a.handshake_pods.is_empty());
        assert_eq!(summarize(&[], true).sessions, 0);
    }
}
