//! The admin listener: `/healthz`, `/readyz` and `/metrics`, never proxied.
//!
//! - `GET /healthz`: 200 while the process runs.
//! - `GET /readyz`: 200 while accepting, 503 from the first SIGTERM on (so the kubelet
//!   and the load balancer stop sending new traffic while tunnels drain).
//! - `GET /metrics`: Prometheus/OpenMetrics text (see `metrics.rs`).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::CONTENT_TYPE;
use crate::recorder::Recorder;

/// Serves the admin endpoints on `listener` until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, recorder: Arc<Recorder>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let recorder = recorder.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let recorder = recorder.clone();
                async move { Ok::<_, Infallible>(answer(&recorder, &req)) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
}

fn answer(recorder: &Recorder, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
        "/readyz" if recorder.drain.is_draining() => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "draining\n".into(),
        ),
        "/readyz" => text(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ready\n".into(),
        ),
        "/metrics" => {
            let m = &recorder.metrics;
            m.tunnels_open.set(gauge(recorder.drain.open_tunnels()));
            m.requests_in_flight
                .set(gauge(recorder.drain.open_requests()));
            m.draining.set(i64::from(recorder.drain.is_draining()));
            text(
                StatusCode::OK,
                CONTENT_TYPE,
                m.render(recorder.sink.dropped()),
            )
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /healthz, /readyz or /metrics\n".into(),
        ),
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
