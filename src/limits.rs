//! The proxy's fixed limits and timings: every tunable constant that is not a flag.
//! Pure: the modules that use these import nothing else for them.

use std::time::Duration;

/// Idle pooled upstream connections are closed after this long. Node's default
/// `keepAliveTimeout` is 5 s: staying below it avoids sending a request on a
/// connection the upstream is closing at the same moment.
pub const UPSTREAM_POOL_IDLE: Duration = Duration::from_secs(4);
/// At most this many bytes of a socket.io response body are copied aside to decode
/// the open packet or an engine.io error (contract §2: "read at most 4 KiB").
pub const BODY_PEEK_BYTES: usize = 4096;
/// At most this many bytes of the first upstream→client websocket frame are copied
/// aside to find the engine.io open packet of a websocket-only handshake.
pub const FRAME_PEEK_BYTES: usize = 1024;
/// Size of a tunnel's copy buffer while data flows; an idle tunnel holds none.
pub const TUNNEL_BUFFER_BYTES: usize = 16 * 1024;
/// How many issued sids the registry remembers (oldest evicted first).
pub const SID_REGISTRY_CAPACITY: usize = 65_536;
/// A captured header value longer than this is cut, with a marker saying so.
pub const MAX_LOGGED_VALUE_BYTES: usize = 4096;
/// All logged header values of one message together stay under this; values past it
/// are logged as their truncation marker only.
pub const MAX_LOGGED_HEADER_BYTES: usize = 32 * 1024;
/// A header repeated more often than this is logged with its first values only.
pub const MAX_LOGGED_REPEATS: usize = 32;
/// Most headers an upstream response may carry: Node's `maxHeadersCount` default.
pub const UPSTREAM_MAX_HEADERS: usize = 2000;
/// After a failed `accept` (EMFILE, ENFILE, ENOBUFS …), wait this long before the next
/// one: the pending connection stays in the backlog, and the loop never spins a core.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Records waiting for the stdout writer; when full, records are counted, not queued.
pub const SINK_QUEUE_RECORDS: usize = 16_384;
/// Bytes of records waiting for the stdout writer, at most.
pub const SINK_QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// How long the stdout writer lets records gather before writing them as one batch.
pub const SINK_GATHER: Duration = Duration::from_millis(5);
/// After the drain deadline, how long closed tunnels get to write their records.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
