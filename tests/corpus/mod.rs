//! The report's field corpus (issue 14, part 3): a generator of realistic multi-pod
//! sockproxy logs, and the verdict each hypothesis must get on them.
//!
//! Records are real `sockproxy::record::Record`s built with the project's own capture,
//! sio, flags and sink code (`records`), for exchanges a simulated cluster produces
//! (`world`: pods, rollouts, the load balancer; `clients`: browsers running Theia's
//! socket.io client, health checks, scanners), collected the ways people collect them
//! (`formats`). `cases` holds the scenarios and their ground truth. Everything is
//! deterministic from a seed. See tests/corpus/README.md.

mod cases;
mod clients;
mod formats;
mod records;
mod rng;
mod world;

pub use cases::{Case, IDS, Want, all, by_name, large};

/// The seed the test and the example use unless told otherwise.
pub const SEED: u64 = 0x0050_C49A_0C14;
