//! sockproxy: a transparent HTTP/1.1 + WebSocket sidecar that records, one JSON line per
//! exchange, what a Socket.IO server (Theia) really receives behind nginx and a load
//! balancer.
//!
//! Map of the crate:
//! - `config`: flags, `SOCKPROXY_*` variables and defaults → one checked [`config::Config`].
//! - `server`: accept loop on a given listener, one task per client connection, the drain;
//!   hands a connection's socket to its tunnel after a 101.
//! - `client_io`: the client socket as hyper writes to it; puts back theia's status-line
//!   version where hyper writes its own.
//! - `proxy`: one exchange: capture, forward, answer (or 502/504), upgrade handoff.
//! - `exchange`: an exchange's record as it builds up; written once, on finish or drop.
//! - `body`: request/response body wrappers that count bytes and fire the record.
//! - `tunnel`: splices two upgraded streams byte for byte; decides `closed_by`.
//! - `drain`: counts open tunnels and requests; tells tunnels to close at shutdown.
//! - `capture`, `sio`, `flags`, `record` (pure): logged headers and redaction; engine.io
//!   query/packets/errors; diagnostic flags; the contract's events as types.
//! - `sids`: the bounded registry of sids this process saw issued.
//! - `sink`: one writer thread turning records into stdout lines.
//! - `error`: upstream failures and the answer each one means.
//! - `admin`, `metrics`: `/healthz`, `/readyz`, `/metrics` on the admin listener.
//! - `demo`: the self-contained demonstration behind `sockproxy demo`.
//! - `probe`: `sockproxy probe URL`, a browser-like socket.io client, step by step.
//! - `report`: the offline `sockproxy report`: records in, a verdict per hypothesis out.
#![forbid(unsafe_code)]

pub mod admin;
pub mod answer;
pub mod body;
pub mod capture;
pub mod cli;
pub mod client_io;
pub mod config;
pub mod conn;
pub mod connect;
pub mod demo;
pub mod drain;
pub mod flags;
pub mod json;
pub mod limits;
pub mod metrics;
pub mod probe;
pub mod proxy;
pub mod record;
pub mod recorder;
pub mod report;
pub mod server;
pub mod sids;
pub mod sink;
pub mod sio;
pub mod text;
pub mod tunnel;
pub mod upstream;
