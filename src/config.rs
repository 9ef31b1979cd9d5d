//! The sidecar's checked configuration: what `run` was told, built once (by [`crate::cli`]
//! from flags, `SOCKPROXY_*` variables and defaults) and passed down.

use std::net::SocketAddr;
use std::time::Duration;

use http::uri::Authority;

/// A comma list of names (`--redact-query`), lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NameList(pub Vec<String>);

/// Where the admin listener binds, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    Off,
    On(SocketAddr),
}

/// The checked configuration of the sidecar, built once and passed down.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub upstream: Authority,
    pub admin: Admin,
    pub drain_timeout: Duration,
    pub log_all: bool,
    pub sio_path: String,
    pub capture_headers: Vec<http::HeaderName>,
    pub pod_header: bool,
    pub workers: Option<usize>,
    pub gcp_project: Option<String>,
    /// `None` when disabled (0).
    pub header_timeout: Option<Duration>,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub connect_timeout: Duration,
    pub max_connections: usize,
    /// `None` when disabled (0, the default).
    pub tunnel_idle_timeout: Option<Duration>,
    /// Lower-case query parameter names whose values are redacted in records.
    pub redact_query: Vec<String>,
    /// `POD_NAME` from the downward API.
    pub pod: Option<String>,
    /// `POD_IP` from the downward API.
    pub pod_ip: Option<String>,
}
