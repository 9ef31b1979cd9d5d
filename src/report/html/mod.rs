//! `report --html FILE`: the report as one self-contained page (inline SVG and CSS, a little
//! script for sorting and hover, nothing loaded from anywhere) to open offline or attach to
//! an incident ticket.
//!
//! - `scene`: its own fold over the records: what is drawn, in bounded memory (a sample of
//!   sessions by sid hash, refusals, lifecycles, health checks, lifetimes, tallies).
//! - `escape`: every value from a record goes through it (the network controls them).
//! - `timeline`, `histogram`, `tables`: one drawing each.
//! - `page`: the page: the verdicts first (the same `Finding`s the text report prints, never
//!   decided again), then the drawings, the tables and the text report.

mod escape;
mod histogram;
mod page;
mod scene;
mod tables;
mod timeline;

pub use page::page;
pub use scene::Scene;
