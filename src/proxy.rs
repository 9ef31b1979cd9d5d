//! Handles one exchange: capture, forward, answer (or 502/504), upgrade handoff.
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::body::{RequestBody, RequestProgress, ResponseBody};
use crate::capture;
use crate::config::Config;
use crate::drain::Drain;
use crate::error::UpstreamFailure;
use crate::exchange::{self, ConnInfo, Draft, Guard, Handoff, TunnelInfo};
use crate::limits::SID_REGISTRY_CAPACITY;
use crate::metrics::Metrics;
use crate::record::{self, ClosedBy, Event, HttpRequest, Outcome, Record, Severity, TunnelClosed};
use crate::sids::SidRegistry;
use crate::sink::Sink;
use crate::text;
use crate::tunnel::{self, Side};
use crate::upstream::Upstream;

/// State shared by every exchange of one sockproxy process.
pub struct Shared {
    pub cfg: Arc<Config>,
    pub sink: Sink,
    pub sids: SidRegistry,
    pub drain: Arc<Drain>,
    pub metrics: Metrics,
    pub started: Instant,
    upstream: Arc<Upstream>,
    next_id: AtomicU64,
    id_prefix: String,
    pod_header: Option<HeaderValue>,
}

impl Shared {
    /// Builds the shared state and the pooled upstream client.
    pub fn new(cfg: Arc<Config>, sink: Sink) -> Arc<Self> {
        let upstream = Upstream::new(cfg.upstream.clone(), cfg.connect_timeout);
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()).rotate_left(40);
        let pod_header = cfg
            .pod_header
            .then(|| {
                cfg.pod
                    .as_deref()
                    .and_then(|p| HeaderValue::from_str(p).ok())
            })
            .flatten();
        Arc::new(Shared {
            sink,
            sids: SidRegistry::new(SID_REGISTRY_CAPACITY),
            drain: Arc::new(Drain::default()),
            metrics: Metrics::default(),
            started: Instant::now(),
            upstream,
            next_id: AtomicU64::new(1),
            id_prefix: format!("{:06x}", seed & 0xff_ffff),
            pod_header,
            cfg,
        })
    }

    fn next_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.id_prefix)
    }

    /// Handles one exchange on client connection `conn`. Never fails: upstream trouble
    /// becomes sockproxy's own 502/504.
    pub async fn handle(
        self: Arc<Self>,
        conn: Arc<ConnInfo>,
        req: Request<Incoming>,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let start = Instant::now();
        conn.count_request();
        let token = self.drain.request();
        let id = self.next_id();
        async move {
            let client_upgrade = req.headers().contains_key(header::UPGRADE);
            if client_upgrade {
                self.metrics.upgrades_attempted.inc();
            }
            let (mut parts, body) = req.into_parts();
            let version = parts.version;
            let method = parts.method.clone();
            let (sio, headers, trace) = exchange::capture_request(
                &parts,
                &self.cfg.capture_headers,
                &self.cfg.sio_path,
                self.cfg.gcp_project.as_deref(),
            );
            let recorded = self.cfg.log_all || sio.is_some() || client_upgrade;
            let sid_issued_here = sio
                .as_ref()
                .and_then(|s| s.sid.as_deref())
                .map(|sid| self.sids.contains(sid));
            let progress = Arc::new(RequestProgress::default());
            let mut guard = Guard::new(
                Box::new(Draft {
                    id,
                    conn: conn.clone(),
                    method: text::truncate(parts.method.to_string()),
                    path: text::truncate(parts.uri.path().to_string()),
                    query: parts.uri.query().map(|q| {
                        text::truncate(
                            capture::redact_query(q, &self.cfg.redact_query).into_owned(),
                        )
                    }),
                    sio,
                    headers,
                    version: parts.version,
                    trace,
                    start,
                    status: 0,
                    resp_headers: Default::default(),
                    upstream_error: None,
                    upstream_unreachable: false,
                    bytes_in: progress.clone(),
                    bytes_out: 0,
                    peek: None,
                    sid_issued_here,
                    recorded,
                    error_kind: None,
                }),
                self.clone(),
            );

            if parts.method == Method::CONNECT {
                return Ok(self.answer_own(
                    guard,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "CONNECT is not proxied",
                    "connect_method",
                    false,
                ));
            }
            if chunked_more_than_once(&parts.headers) {
                // RFC 9112 §7: chunked is applied at most once. hyper decodes it once;
                // an upstream that decoded it twice would see other boundaries.
                return Ok(self.answer_own(
                    guard,
                    StatusCode::BAD_REQUEST,
                    "Transfer-Encoding applies chunked more than once",
                    "bad_transfer_encoding",
                    false,
                ));
            }
            parts.uri = match origin_form(&parts.uri) {
                Some(uri) => uri,
                None => {
                    return Ok(self.answer_own(
                        guard,
                        StatusCode::BAD_REQUEST,
                        "request target cannot be forwarded",
                        "bad_target",
                        false,
                    ));
                }
            };
            let req = Request::from_parts(parts, RequestBody::new(body, progress.clone()));

            let (mut resp, lease) = match self.upstream.send(req).await {
                Ok(sent) => sent,
                Err(_) if progress.client_failed() => {
                    // The client went away mid-body; nobody is left to answer.
                    guard.finish(Outcome::ClientAborted);
                    let mut resp = Response::new(ResponseBody::own(None));
                    *resp.status_mut() = StatusCode::BAD_REQUEST;
                    return Ok(resp);
                }
                Err(e) => {
                    let failure = UpstreamFailure::classify(&e);
                    tracing::debug!(error = %failure, "upstream failed");
                    let unreachable = failure.is_unreachable();
                    return Ok(self.answer_own(
                        guard,
                        failure.status(),
                        &failure.to_string(),
                        failure.kind(),
                        unreachable,
                    ));
                }
            };

            let status = resp.status();
            if client_upgrade {
                if status == StatusCode::SWITCHING_PROTOCOLS {
                    self.metrics.upgrades_succeeded.inc();
                } else {
                    self.metrics.upgrades_refused.inc();
                }
            }
            if let Some(pod) = &self.pod_header {
                resp.headers_mut()
                    .insert(header::HeaderName::from_static("x-pod-name"), pod.clone());
            }
            {
                let d = guard.draft();
                d.status = status.as_u16();
                d.resp_headers = capture::response(resp.headers(), &self.cfg.capture_headers);
                let decodable = resp
                    .headers()
                    .get(header::CONTENT_ENCODING)
                    .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"identity"));
                let wants_body = status.as_u16() >= 400
                    || (status == StatusCode::OK
                        && d.sio.as_ref().is_some_and(|s| s.sid.is_none()));
                if d.sio.is_some() && decodable && wants_body {
                    d.peek = Some(Vec::new());
                }
            }

            if status == StatusCode::SWITCHING_PROTOCOLS && !client_upgrade {
                let failure = UpstreamFailure::UnexpectedSwitch;
                return Ok(self.answer_own(
                    guard,
                    failure.status(),
                    &failure.to_string(),
                    failure.kind(),
                    false,
                ));
            }
            if version == Version::HTTP_10 && resp.version() != Version::HTTP_10 {
                // hyper answers an HTTP/1.0 request as HTTP/1.0; theia did not.
                conn.status_line.arm(status);
            } else if close_delimited(&method, &resp) && resp.version() == Version::HTTP_11 {
                // hyper writes a body of unknown length close-delimited only as HTTP/1.0
                // (else it adds `transfer-encoding: chunked` and keeps the connection):
                // as theia did, no length, the body, then the end of the connection.
                *resp.version_mut() = Version::HTTP_10;
                conn.status_line.arm(status);
            }

            if status == StatusCode::SWITCHING_PROTOCOLS {
                // The client socket comes from the connection task once hyper has
                // written the 101 (server.rs), whatever the request's version: hyper's
                // own upgrade never happens for HTTP/1.0, which Node upgrades anyway.
                let client = conn.expect_handoff();
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                drop(lease); // the connection now belongs to the tunnel
                let info = guard.finish_upgrade();
                self.spawn_tunnel(info, client, upstream_upgrade);
                let (parts, _empty) = resp.into_parts();
                return Ok(Response::from_parts(parts, ResponseBody::own(None)));
            }

            let (parts, body) = resp.into_parts();
            Ok(Response::from_parts(
                parts,
                ResponseBody::proxied(body, Some(guard), token, lease),
            ))
        }
        .await
    }

    /// sockproxy's own answer (502/504/405), with a record.
    fn answer_own(
        &self,
        mut guard: Guard,
        status: StatusCode,
        why: &str,
        kind: &'static str,
        unreachable: bool,
    ) -> Response<ResponseBody> {
        let d = guard.draft();
        d.status = status.as_u16();
        d.upstream_error = Some(why.to_string());
        d.error_kind = Some(kind);
        d.upstream_unreachable = unreachable;
        d.recorded = true;
        let text = format!(
            "{} {}: sockproxy: {why} (upstream {})\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            self.cfg.upstream
        );
        let mut resp = Response::new(ResponseBody::own(Some(Bytes::from(text.clone()))));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
        if status == StatusCode::BAD_REQUEST {
            // A request sockproxy refused may have framing nobody should trust: end the
            // connection after the answer rather than read on.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(pod) = &self.pod_header {
            resp.headers_mut()
                .insert(header::HeaderName::from_static("x-pod-name"), pod.clone());
        }
        d.resp_headers = capture::response(resp.headers(), &self.cfg.capture_headers);
        d.bytes_out = text.len() as u64;
        guard.finish(Outcome::UpstreamError);
        resp
    }

    fn spawn_tunnel(
        self: &Arc<Self>,
        info: TunnelInfo,
        client: oneshot::Receiver<Handoff>,
        upstream: hyper::upgrade::OnUpgrade,
    ) {
        let token = self.drain.tunnel();
        let opened = Instant::now();
        let shared = self.clone();
        let span = tracing::debug_span!("tunnel", id = %info.id);
        tokio::spawn(
            async move {
                let want_sid = info
                    .sio
                    .as_ref()
                    .is_some_and(|s| s.is_websocket() && s.sid.is_none());
                let client = async {
                    client
                        .await
                        .map_err(|_| "the client connection ended before the 101 went out".into())
                };
                let upstream = async { upstream.await.map_err(|e| e.to_string()) };
                let spliced = match tokio::try_join!(client, upstream) {
                    Ok((client, upstream)) => {
                        let sids = shared.clone();
                        tunnel::splice(
                            Side::Tcp {
                                stream: client.stream,
                                early: client.early,
                            },
                            Side::Upgraded(upstream),
                            shared.metrics.tunnel_byte_counters(),
                            want_sid,
                            move |sid| sids.sids.insert(sid),
                            shared.drain.closing(),
                            shared.cfg.tunnel_idle_timeout,
                        )
                        .await
                    }
                    Err::<_, String>(e) => tunnel::Spliced {
                        client_to_upstream: 0,
                        upstream_to_client: 0,
                        closed_by: ClosedBy::Error,
                        error: Some(format!("upgrade failed: {e}")),
                        sid: None,
                        ended: Instant::now(),
                    },
                };
                if spliced.closed_by == ClosedBy::Shutdown {
                    shared.drain.count_closed_by_shutdown();
                }
                let lifetime = spliced.ended.saturating_duration_since(opened);
                shared
                    .metrics
                    .tunnel_closed(spliced.closed_by.as_str(), lifetime.as_secs_f64());
                shared.sink.emit(tunnel_record(info, spliced, opened));
                drop(token);
            }
            .instrument(span),
        );
    }

    /// Writes the record of a finished exchange, if it is one to record.
    pub(crate) fn write_exchange(&self, draft: Draft, outcome: Outcome, upgrade: bool) {
        let transport = match draft.sio.as_ref().map(|s| s.transport.as_deref()) {
            None => "none",
            Some(Some("polling")) => "polling",
            Some(Some("websocket")) => "websocket",
            Some(_) => "other",
        };
        self.metrics
            .exchange(transport, draft.status, draft.start.elapsed().as_secs_f64());
        if outcome == Outcome::UpstreamError {
            self.metrics
                .upstream_error(draft.error_kind.unwrap_or("upstream_body"));
        }
        if !draft.recorded {
            return;
        }
        let rec = draft.into_record(outcome, upgrade, |sid| self.sids.insert(sid));
        if let Event::Request(ex) | Event::Upgrade(ex) = &rec.event {
            self.metrics.flags(&ex.flags);
        }
        self.sink.emit(rec);
    }
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

fn tunnel_record(info: TunnelInfo, s: tunnel::Spliced, opened: Instant) -> Record {
    let lifetime = s.ended.saturating_duration_since(opened);
    let mut sio = info.sio;
    if let (Some(sio), Some(sid)) = (sio.as_mut(), s.sid)
        && sio.sid.is_none()
    {
        sio.sid = Some(sid);
    }
    let closed_by = s.closed_by.as_str();
    Record {
        severity: if s.closed_by == ClosedBy::Error {
            Severity::Warning
        } else {
            Severity::Info
        },
        message: format!(
            "tunnel {} closed by {closed_by} after {:.3}s ({} B client→upstream, {} B upstream→client)",
            info.id,
            lifetime.as_secs_f64(),
            s.client_to_upstream,
            s.upstream_to_client
        ),
        event: Event::TunnelClosed(Box::new(TunnelClosed {
            id: info.id,
            conn: info.conn.conn,
            client: info.conn.client_text.clone(),
            path: info.path,
            sio,
            duration_ms: record::millis(lifetime),
            bytes_client_to_upstream: s.client_to_upstream,
            bytes_upstream_to_client: s.upstream_to_client,
            closed_by: s.closed_by,
            error: s.error,
            http_request: HttpRequest {
                request_method: info.method,
                request_url: info.request_url,
                status: 101,
                request_size: s.client_to_upstream,
                response_size: s.upstream_to_client,
                user_agent: info.user_agent,
                remote_ip: info.remote_ip,
                latency: lifetime,
                protocol: "websocket",
            },
            trace: info.trace,
        })),
    }
}
