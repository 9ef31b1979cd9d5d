//! Per-request cost of sockproxy's hot pure pieces (criterion): header capture, engine.io
//! query and packet parsing, and record serialisation, on browser-shaped inputs.
//!
//! ```sh
//! cargo bench --bench capture
//! cargo bench --bench capture -- record     # only the benchmarks whose name contains "record"
//! ```

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Request};
use sockproxy::capture;
use sockproxy::record::{Event, Exchange, HttpRequest, Outcome, Record, Severity};
use sockproxy::recorder::capture_request;
use sockproxy::sink::Sink;
use sockproxy::sio::{self, Sio};

const QUERY: &str = "EIO=4&transport=polling&t=PcK3x9a&sid=lv_VI97HAXpY6yYWAAAC";
const OPEN: &[u8] = br#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;

/// The request head a browser sends through the GKE load balancer and the pod's nginx.
fn browser_request() -> http::request::Parts {
    let (parts, ()) = Request::get(format!("/socket.io/?{QUERY}"))
        .header("host", "ide.example.com")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        )
        .header("accept", "*/*")
        .header("accept-language", "en-US,en;q=0.9")
        .header("origin", "https://ide.example.com")
        .header("cookie", "io=lv_VI97HAXpY6yYWAAAC; _ga=GA1.1.1234567890.1700000000")
        .header("x-forwarded-for", "203.0.113.7, 10.128.0.12")
        .header("x-forwarded-proto", "https")
        .header("x-real-ip", "203.0.113.7")
        .header("via", "1.1 google")
        .header(
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000/1;o=1",
        )
        .header("connection", "upgrade")
        .body(())
        .unwrap()
        .into_parts();
    parts
}

fn response_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", "text/plain; charset=UTF-8".parse().unwrap());
    h.insert("content-length", "118".parse().unwrap());
    h.insert("cache-control", "no-store".parse().unwrap());
    h.insert(
        "set-cookie",
        "io=lv_VI97HAXpY6yYWAAAC; Path=/; HttpOnly; SameSite=Lax"
            .parse()
            .unwrap(),
    );
    h
}

fn exchange() -> Exchange {
    let parts = browser_request();
    let (sio, headers, trace) = capture_request(&parts, &[], "/socket.io/", None);
    Exchange {
        id: "0a1b2c-42".into(),
        conn: 7,
        client: "127.0.0.1:51234".into(),
        method: "GET".into(),
        path: "/socket.io/".into(),
        query: Some(QUERY.into()),
        sio,
        status: 200,
        headers,
        resp_headers: capture::response(&response_headers(), &[]),
        sio_error: None,
        flags: Vec::new(),
        duration_ms: 0.412,
        bytes_in: 0,
        bytes_out: 118,
        outcome: Outcome::Complete,
        upstream_error: None,
        http_request: HttpRequest {
            request_method: "GET".into(),
            request_url: format!("http://ide.example.com/socket.io/?{QUERY}"),
            status: 200,
            request_size: 0,
            response_size: 118,
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0.0.0".into()),
            remote_ip: "203.0.113.7".into(),
            latency: std::time::Duration::from_micros(412),
            protocol: "HTTP/1.1",
        },
        trace,
    }
}

fn capture_benches(c: &mut Criterion) {
    let parts = browser_request();
    c.bench_function("capture/request_headers", |b| {
        b.iter(|| capture::request(black_box(&parts.headers), &[]))
    });
    let resp = response_headers();
    c.bench_function("capture/response_headers", |b| {
        b.iter(|| capture::response(black_box(&resp), &[]))
    });
    c.bench_function("capture/whole_request_head", |b| {
        b.iter(|| capture_request(black_box(&parts), &[], "/socket.io/", None))
    });
}

fn sio_benches(c: &mut Criterion) {
    c.bench_function("sio/from_query", |b| {
        b.iter(|| Sio::from_query(black_box(Some(QUERY))))
    });
    c.bench_function("sio/open_packet_sid", |b| {
        b.iter(|| sio::open_packet_sid(black_box(OPEN)))
    });
    let mut frame = vec![0x81, OPEN.len() as u8];
    frame.extend_from_slice(OPEN);
    c.bench_function("sio/first_frame_sid", |b| {
        b.iter(|| sio::first_frame_sid(black_box(&frame)))
    });
    let err = br#"{"code":1,"message":"Session ID unknown"}"#;
    c.bench_function("sio/decode_error", |b| {
        b.iter(|| sio::decode_error(black_box(err)))
    });
}

fn record_benches(c: &mut Criterion) {
    let ex = exchange();
    let event = Event::Request(Box::new(ex.clone()));
    let mut buf = Vec::with_capacity(2048);
    c.bench_function("record/exchange_fields_json", |b| {
        b.iter(|| {
            buf.clear();
            sockproxy::json::event_fields(&mut buf, black_box(&event)).unwrap();
        })
    });
    // The whole line as the sink makes it (time, severity, message, event, fields),
    // handed to an in-memory channel that is emptied as we go.
    let (sink, mut rx) = Sink::memory(Some("theia-7d9f8b6c5-x2x4z".into()), None);
    c.bench_function("record/sink_line", |b| {
        b.iter(|| {
            sink.emit(Record {
                severity: Severity::Info,
                message: "GET /socket.io/ 200".into(),
                event: Event::Request(Box::new(ex.clone())),
            });
            black_box(rx.try_recv().unwrap());
        })
    });
    c.bench_function("record/clone_exchange_only", |b| {
        b.iter(|| black_box(Box::new(ex.clone())))
    });
}

criterion_group!(benches, capture_benches, sio_benches, record_benches);
criterion_main!(benches);
