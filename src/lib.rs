//! sockproxy: a transparent HTTP/1.1 + WebSocket sidecar that records, one JSON line per
//! exchange, what a Socket.IO server (Theia) really receives behind nginx and a load
//! balancer.
//!
//! Map of the crate, lower layers first; a module imports only from modules above it in
//! this list (checked in CI by `scripts/modules`):
//! - `limits`: the fixed limits and timings (pure constants).
//! - `text`, `sio`, `capture`, `record`, `flags`, `json` (pure): values cut to the
//!   logged limit; engine.io query/packets/errors; logged headers and redaction; the
//!   contract's events as types; diagnostic flags; the JSON writer of those events.
//! - `config`: the checked configuration of `run`.
//! - `sink`: one writer thread turning records into stdout lines.
//! - `metrics`, `sids`, `drain`: Prometheus counters; the bounded registry of sids this
//!   process issued; open tunnels and requests, and the shutdown signal.
//! - `memory`: gives freed heap back to the system after a burst of connections closed.
//! - `conn`: a client connection: its identity, `--max-connections` slot, status-line
//!   fix and socket handoff to a tunnel.
//! - `client_io`: the client socket as hyper writes to it (status-line version kept).
//! - `connect`, `upstream`: TCP connect with a timeout; the pool of HTTP/1.1 connections
//!   to theia.
//! - `answer`: sockproxy's own answers (405/400/502/504) and client refusals, as types.
//! - `tunnel`: splices two upgraded streams byte for byte; decides `closed_by`.
//! - `recorder`: an exchange's record from request head to written line (and a tunnel's).
//! - `body`: request and response bodies that count bytes and end the record.
//! - `proxy`: one exchange in phases: open, refuse, forward, respond, hand off an upgrade.
//! - `admin`: `/healthz`, `/readyz`, `/metrics` on the admin listener.
//! - `server`: accept within `--max-connections`, serve each connection, drain, stop.
//! - `demo`, `probe`, `report`: `sockproxy demo`; `sockproxy probe URL`, a browser-like
//!   socket.io client; the offline `sockproxy report`, records (and the load
//!   balancer's log) in, a verdict per hypothesis out.
//! - `cli`: the command line (flags, `SOCKPROXY_*` variables, defaults) → `config`.
// One exception, `memory.rs`: a call to glibc's `malloc_trim`.
#![deny(unsafe_code)]

pub(crate) mod admin;
pub(crate) mod answer;
pub(crate) mod body;
pub mod capture;
pub mod cli;
pub(crate) mod client_io;
pub mod config;
pub mod conn;
pub(crate) mod connect;
pub mod demo;
pub(crate) mod drain;
pub mod flags;
pub mod json;
pub mod limits;
pub(crate) mod memory;
pub(crate) mod metrics;
pub mod probe;
pub(crate) mod proxy;
pub mod record;
pub mod recorder;
pub mod report;
pub mod server;
pub(crate) mod sids;
pub mod sink;
pub mod sio;
pub(crate) mod text;
pub mod tunnel;
pub(crate) mod upstream;
