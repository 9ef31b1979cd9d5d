//! Writes the report's field corpus (tests/corpus/README.md) to a folder: one folder per
//! case with its log files and `expected.json`.
//!
//! ```text
//! cargo run --example corpus -- OUT_DIR [--scale N] [--seed N] [--large] [--only NAME]
//! ```
//! `--scale` multiplies the number of browser visits; `--large` adds the timing case
//! (10 pods, ~200k records at scale 1); `--only` writes one case (`large` included).

// Shared with tests/corpus.rs; each uses a part of it.
#[allow(dead_code, unused_imports)]
#[path = "../tests/corpus/mod.rs"]
mod corpus;

use std::path::PathBuf;
use std::process::ExitCode;

fn usage(msg: &str) -> ExitCode {
    eprintln!("corpus: {msg}");
    eprintln!("usage: corpus OUT_DIR [--scale N] [--seed N] [--large] [--only NAME]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut out, mut scale, mut seed, mut large, mut only) =
        (None::<PathBuf>, 1.0f64, corpus::SEED, false, None::<String>);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--scale" => match args.next().and_then(|v| v.parse().ok()) {
                Some(v) if v > 0.0 => scale = v,
                _ => return usage("--scale needs a positive number"),
            },
            "--seed" => match args.next().and_then(|v| v.parse().ok()) {
                Some(v) => seed = v,
                None => return usage("--seed needs an integer"),
            },
            "--large" => large = true,
            "--only" => match args.next() {
                Some(v) => only = Some(v),
                None => return usage("--only needs a case name"),
            },
            "-h" | "--help" => return usage("writes the corpus"),
            _ if out.is_none() && !a.starts_with('-') => out = Some(PathBuf::from(a)),
            _ => return usage(&format!("unexpected argument {a}")),
        }
    }
    let Some(out) = out else {
        return usage("OUT_DIR is required");
    };
    let mut cases = match &only {
        Some(name) => match corpus::by_name(seed, scale, name) {
            Some(c) => vec![c],
            None => return usage(&format!("no case named {name}")),
        },
        None => corpus::all(seed, scale),
    };
    if large && only.is_none() {
        cases.push(corpus::large(seed, scale));
    }
    println!(
        "{:<22} {:>4} {:>7} {:>6} {:>8} {:>8}  H1..H6  formats",
        "case", "pods", "visits", "sids", "records", "MB"
    );
    for case in &cases {
        if let Err(e) = case.write_to(&out) {
            eprintln!("corpus: writing {}: {e}", case.name);
            return ExitCode::FAILURE;
        }
        let bytes: usize = case.files.iter().map(|f| f.bytes.len()).sum();
        println!(
            "{:<22} {:>4} {:>7} {:>6} {:>8} {:>8.1}  {}  {}",
            case.name,
            case.pods,
            case.visits,
            case.sessions,
            case.records,
            bytes as f64 / 1e6,
            case.letters(),
            case.formats().join(", ")
        );
    }
    println!("(C confirmed, N not confirmed, I isolated, R ruled out, E no evidence)");
    ExitCode::SUCCESS
}
