//! One exchange, in named phases: open its record, refuse what is not forwarded, forward,
//! answer from theia's response (or sockproxy's own 502/504), hand off an upgrade.
//!
//! Transparency: hyper's HTTP/1 `preserve_header_case` is on for the server connection
//! and the upstream client, and the request and response travel with their extensions,
//! so the header-case map and a non-canonical reason phrase reach the other side. The
//! upstream client never sets `Host` and always connects to `--upstream`, whatever the
//! request says. What cannot be kept: `http::HeaderMap` groups the values of a repeated
//! header, so repeats interleaved with other headers (`A, B, A`) leave as `A, A, B`;
//! the values and their order among themselves are kept. Connection management
//! (keep-alive) is hyper's on both sides.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::answer::OwnAnswer;
use crate::body::{RequestBody, ResponseBody};
use crate::config::Config;
use crate::conn::{ConnInfo, Handoff};
use crate::drain::Token;
use crate::record::Outcome;
use crate::recorder::{Recorder, Recording, RequestProgress, TunnelRecording};
use crate::tunnel::{self, Side, Spliced};
use crate::upstream::{Lease, Upstream};

/// The request handler of one sockproxy process: forwards to `--upstream`, records.
pub(crate) struct Proxy {
    cfg: Arc<Config>,
    recorder: Arc<Recorder>,
    upstream: Arc<Upstream<RequestBody>>,
    /// `X-Pod-Name` added to every response (`--pod-header`).
    pod_header: Option<HeaderValue>,
}

impl Proxy {
    /// The handler, with its pooled upstream client.
    pub(crate) fn new(cfg: Arc<Config>, recorder: Arc<Recorder>) -> Arc<Self> {
        let pod_header = cfg
            .pod_header
            .then(|| {
                cfg.pod
                    .as_deref()
                    .and_then(|p| HeaderValue::from_str(p).ok())
            })
            .flatten();
        Arc::new(Proxy {
            upstream: Upstream::new(cfg.upstream.clone(), cfg.connect_timeout),
            cfg,
            recorder,
            pod_header,
        })
    }

    /// Where this handler's records go.
    pub(crate) fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

    /// Handles one exchange on client connection `conn`. Never fails: what is not
    /// forwarded, and upstream trouble, become sockproxy's own answers.
    pub(crate) async fn handle(
        self: Arc<Self>,
        conn: Arc<ConnInfo>,
        req: Request<Incoming>,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let start = Instant::now();
        conn.count_request();
        let token = self.recorder.drain.request();
        let client_upgrade = req.headers().contains_key(header::UPGRADE);
        if client_upgrade {
            self.recorder.metrics.upgrades_attempted.inc();
        }
        let (mut parts, body) = req.into_parts();
        let mut recording = self.recorder.open(&conn, &parts, start, client_upgrade);
        if let Err(refusal) = forwardable(&mut parts) {
            return Ok(self.answer_own(recording, &refusal));
        }
        let asked = Asked {
            version: parts.version,
            method: parts.method.clone(),
            upgrade: client_upgrade,
        };
        let progress = recording.progress();
        let req = Request::from_parts(parts, RequestBody::new(body, progress.clone()));
        let (resp, lease) = match self.forward(req, &progress).await {
            Ok(answered) => answered,
            Err(Some(failure)) => return Ok(self.answer_own(recording, &failure)),
            Err(None) => {
                // The client went away mid-body; nobody is left to answer.
                recording.finish(Outcome::ClientAborted);
                let mut resp = Response::new(ResponseBody::own(None));
                *resp.status_mut() = StatusCode::BAD_REQUEST;
                return Ok(resp);
            }
        };
        Ok(self.respond(&conn, &asked, recording, resp, lease, token))
    }

    /// Sends the request to theia. `Err(None)` when the client failed first (its body
    /// broke off), `Err(Some(_))` for the answer an upstream failure means.
    async fn forward(
        &self,
        req: Request<RequestBody>,
        progress: &RequestProgress,
    ) -> Result<(Response<Incoming>, Lease<RequestBody>), Option<OwnAnswer>> {
        match self.upstream.send(req).await {
            Ok(answered) => Ok(answered),
            Err(_) if progress.client_failed() => Err(None),
            Err(e) => {
                let failure = OwnAnswer::from_upstream(&e);
                tracing::debug!(error = %failure, "upstream failed");
                Err(Some(failure))
            }
        }
    }

    /// Answers the client with theia's response: records its head, keeps the status
    /// line's version, hands an upgrade off, or streams the body (which finishes the
    /// record).
    fn respond(
        &self,
        conn: &ConnInfo,
        asked: &Asked,
        mut recording: Recording,
        mut resp: Response<Incoming>,
        lease: Lease<RequestBody>,
        token: Token,
    ) -> Response<ResponseBody> {
        let status = resp.status();
        let switching = status == StatusCode::SWITCHING_PROTOCOLS;
        if asked.upgrade {
            let m = &self.recorder.metrics;
            if switching {
                m.upgrades_succeeded.inc();
            } else {
                m.upgrades_refused.inc();
            }
        }
        self.add_pod_header(&mut resp);
        recording.on_response(&resp);
        if switching && !asked.upgrade {
            return self.answer_own(recording, &OwnAnswer::UnexpectedSwitch);
        }
        if asked.version == Version::HTTP_10 && resp.version() != Version::HTTP_10 {
            // hyper answers an HTTP/1.0 request as HTTP/1.0; theia did not.
            conn.status_line.arm(status);
        } else if close_delimited(&asked.method, &resp) && resp.version() == Version::HTTP_11 {
            // hyper writes a body of unknown length close-delimited only as HTTP/1.0
            // (else it adds `transfer-encoding: chunked` and keeps the connection):
            // as theia did, no length, the body, then the end of the connection.
            *resp.version_mut() = Version::HTTP_10;
            conn.status_line.arm(status);
        }
        if switching {
            return self.hand_off_upgrade(conn, recording, resp, lease);
        }
        let (parts, body) = resp.into_parts();
        Response::from_parts(parts, ResponseBody::proxied(body, recording, token, lease))
    }

    /// theia switched protocols: the 101 goes out as it came, the `upgrade` record is
    /// written, and a tunnel task waits for both sockets to splice them.
    fn hand_off_upgrade(
        &self,
        conn: &ConnInfo,
        recording: Recording,
        mut resp: Response<Incoming>,
        lease: Lease<RequestBody>,
    ) -> Response<ResponseBody> {
        // The client socket comes from the connection task once hyper has written the
        // 101 (server.rs), whatever the request's version: hyper's own upgrade never
        // happens for HTTP/1.0, which Node upgrades anyway.
        let client = conn.expect_handoff();
        let upstream = hyper::upgrade::on(&mut resp);
        drop(lease); // the connection now belongs to the tunnel
        self.spawn_tunnel(recording.upgraded(), client, upstream);
        let (parts, _empty) = resp.into_parts();
        Response::from_parts(parts, ResponseBody::own(None))
    }

    /// sockproxy's own answer (405, 400, 502, 504), with its record.
    fn answer_own(&self, recording: Recording, answer: &OwnAnswer) -> Response<ResponseBody> {
        let status = answer.status();
        let text = format!(
            "{} {}: sockproxy: {answer} (upstream {})\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            self.cfg.upstream
        );
        let len = text.len();
        let mut resp = Response::new(ResponseBody::own(Some(Bytes::from(text))));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if status == StatusCode::BAD_REQUEST {
            // A request sockproxy refused may have framing nobody should trust: end the
            // connection after the answer rather than read on.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        self.add_pod_header(&mut resp);
        recording.answered_own(answer, &resp, len);
        resp
    }

    fn add_pod_header<B>(&self, resp: &mut Response<B>) {
        if let Some(pod) = &self.pod_header {
            resp.headers_mut()
                .insert(HeaderName::from_static("x-pod-name"), pod.clone());
        }
    }

    /// Runs the tunnel of an upgrade: waits for the client socket (after the 101) and
    /// theia's, splices them, writes `tunnel_closed`. Counted open until then.
    fn spawn_tunnel(
        &self,
        tunnel: TunnelRecording,
        client: oneshot::Receiver<Handoff>,
        upstream: OnUpgrade,
    ) {
        let recorder = self.recorder.clone();
        let token = recorder.drain.tunnel();
        let idle = self.cfg.tunnel_idle_timeout;
        let span = tracing::debug_span!("tunnel", id = %tunnel.id());
        tokio::spawn(
            async move {
                let client = async {
                    client
                        .await
                        .map_err(|_| "the client connection ended before the 101 went out".into())
                };
                let upstream = async { upstream.await.map_err(|e| e.to_string()) };
                let spliced = match tokio::try_join!(client, upstream) {
                    Ok((client, upstream)) => {
                        let sids = recorder.clone();
                        tunnel::splice(
                            Side::Tcp {
                                stream: client.stream,
                                early: client.early,
                            },
                            Side::Upgraded(upstream),
                            recorder.metrics.tunnel_byte_counters(),
                            tunnel.wants_sid(),
                            move |sid| sids.sids.insert(sid),
                            recorder.drain.closing(),
                            idle,
                        )
                        .await
                    }
                    Err::<_, String>(e) => Spliced::failed(format!("upgrade failed: {e}")),
                };
                tunnel.closed(spliced);
                drop(token);
            }
            .instrument(span),
        );
    }
}

/// What the request asked for that the response phase needs.
struct Asked {
    version: Version,
    method: Method,
    /// The request carried `Upgrade`.
    upgrade: bool,
}

/// Checks that the request can be forwarded, and puts its target in origin-form.
fn forwardable(parts: &mut Parts) -> Result<(), OwnAnswer> {
    if parts.method == Method::CONNECT {
        return Err(OwnAnswer::ConnectMethod);
    }
    if chunked_more_than_once(&parts.headers) {
        // RFC 9112 §7: chunked is applied at most once. hyper decodes it once; an
        // upstream that decoded it twice would see other boundaries.
        return Err(OwnAnswer::ChunkedTwice);
    }
    parts.uri = origin_form(&parts.uri).ok_or(OwnAnswer::BadTarget)?;
    Ok(())
}

/// The request target as the upstream gets it: origin-form (`/path?query`), which is
/// what nginx sends; an absolute-form target (`http://host/path`) loses its scheme and
/// host (sockproxy only ever connects to `--upstream`). `None` when there is no path.
fn origin_form(uri: &Uri) -> Option<Uri> {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return Some(uri.clone()); // already origin-form (or `*`): as sent
    }
    let pq = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::builder().path_and_query(pq).build().ok()
}

/// True when `resp` (to a `method` request) has a body that ends with the connection:
/// neither `Content-Length` nor `Transfer-Encoding` on a status that has a body
/// (RFC 9112 §6.3, rule 8).
fn close_delimited<B>(method: &Method, resp: &Response<B>) -> bool {
    let status = resp.status();
    !(method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || resp.headers().contains_key(header::CONTENT_LENGTH)
        || resp.headers().contains_key(header::TRANSFER_ENCODING))
}

/// True when the `Transfer-Encoding` lines name `chunked` more than once in all.
fn chunked_more_than_once(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
        .count()
        > 1
}
