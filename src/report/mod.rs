//! The offline `report` subcommand: sockproxy records in, a diagnosis per hypothesis out.
//!
//! - `input`: files or stdin, gzip, line prefixes, JSON arrays → JSON objects.
//! - `parse`: one JSON object (a record, or a Cloud Logging entry holding one) → a flat view.
//! - `evidence`, `pods`: the shared small pieces (pod ids, quoted examples, how values are
//!   written) and each pod's counts and lifecycle; they import no other part.
//! - `analyze`: records folded into bounded state: counts, pod lifecycles; hands each
//!   record to the session join and to every hypothesis.
//! - `sessions`: the sid join (issued where, used where), which H2, H5 and H6 read.
//! - `h1` … `h6`: one module per hypothesis: its state, its fold, its rule.
//! - `recent`: the bounded table the joins keep their entries in.
//! - `verdict`: what a verdict and a finding are (confirmed / isolated / ruled out / no
//!   evidence).
//! - `findings`: the six verdicts in order, each from the state it reads.
//! - `render`: the terminal and JSON output.
//! - `lb`: the load balancer's own log entries (the format, in one file); `lb_join` joins
//!   them to the records by trace id, `lb_verdict` adds their evidence to H1, H3 and H6,
//!   `lb_render` writes the load balancer section.
//! - `html`: `--html FILE`, the same verdicts as a page with drawings (its own fold for those).

pub mod analyze;
pub(crate) mod evidence;
pub(crate) mod findings;
pub(crate) mod h1;
pub(crate) mod h2;
pub(crate) mod h3;
pub(crate) mod h4;
pub(crate) mod h5;
pub(crate) mod h6;
pub mod html;
pub mod input;
pub(crate) mod lb;
pub(crate) mod lb_join;
pub(crate) mod lb_render;
pub(crate) mod lb_verdict;
pub mod parse;
pub(crate) mod pods;
pub(crate) mod recent;
pub(crate) mod render;
pub(crate) mod sessions;
pub mod verdict;

use std::fs::File;
use std::io::{IsTerminal, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use analyze::{Analyzer, Skipped};
use input::{Item, Skip, Source};
use parse::{Parsed, Rec};
use verdict::{Finding, Verdict};

/// `sockproxy report [FILE...]`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Record files: JSON lines, `kubectl logs --prefix` output, gzip, Cloud Logging
    /// exports (a JSON array or JSON lines of entries with `jsonPayload`); none or `-`
    /// reads stdin. The load balancer's own entries (`resource.type`
    /// `http_load_balancer`) may come in the same or separate files: they are joined to
    /// the records by trace id.
    pub files: Vec<PathBuf>,
    /// The same verdicts as JSON, for scripts.
    #[arg(long)]
    pub json: bool,
    /// Keep reading a growing input (stdin, or one file) and print a line each time a
    /// verdict changes; the full report follows when the input ends.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Colour: `auto` (only on a terminal, never with NO_COLOR set), `always`, `never`.
    #[arg(long, value_name = "WHEN", default_value = "auto", value_parser = ["auto", "always", "never"])]
    pub color: String,
    /// Also write the report as one self-contained HTML page to FILE: the verdicts, a
    /// timeline of pods and sessions, tunnel lifetimes, per-pod and per-client tables (exit
    /// 2 when it cannot be written).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// Records in, verdicts out: what the command does, without the terminal.
#[derive(Debug, Default)]
pub struct Report {
    pub analyzer: Analyzer,
    /// The time of the record read last (for `--follow` notices).
    pub latest: Option<i64>,
    /// What `--html` draws, when asked for.
    pub scene: Option<html::Scene>,
}

impl Report {
    pub fn new() -> Report {
        Report::default()
    }

    /// A report that also folds what `--html` draws.
    pub fn with_scene() -> Report {
        Report {
            scene: Some(html::Scene::new()),
            ..Report::default()
        }
    }

    /// The page `--html` writes (`None` unless made [`Report::with_scene`]).
    pub fn page(&self, sources: &[String]) -> Option<String> {
        let scene = self.scene.as_ref()?;
        Some(html::page(&self.analyzer, &self.findings(), scene, sources))
    }

    /// Takes one item from a source; `fallback_pod` names records that carry no pod and
    /// no `kubectl` prefix.
    pub fn feed(&mut self, item: Item<'_>, fallback_pod: &str) {
        match item {
            Item::Skipped(Skip::NotJson) => self.analyzer.skipped(Skipped::NotJson),
            Item::Skipped(Skip::TooLong) => self.analyzer.skipped(Skipped::TooLong),
            Item::Skipped(Skip::Truncated) => self.analyzer.skipped(Skipped::Truncated),
            Item::Json(bytes, prefix_pod) => {
                self.json(bytes, prefix_pod.unwrap_or(fallback_pod), true)
            }
        }
    }

    fn json(&mut self, bytes: &[u8], pod: &str, may_unwrap: bool) {
        match parse::parse(bytes) {
            Parsed::Record(raw) => self.record(&raw, pod),
            Parsed::Text(text) if may_unwrap => match text.find('{') {
                Some(i) => self.json(&text.as_bytes()[i..], pod, false),
                None => self.analyzer.skipped(Skipped::NotRecord),
            },
            Parsed::NotRecord if self.analyzer.lb.offer(lb::parse(bytes)) => {}
            Parsed::Text(_) | Parsed::NotRecord => self.analyzer.skipped(Skipped::NotRecord),
            Parsed::Invalid { truncated: true } => self.analyzer.skipped(Skipped::Truncated),
            Parsed::Invalid { truncated: false } => self.analyzer.skipped(Skipped::InvalidJson),
        }
    }

    pub fn findings(&self) -> Vec<Finding> {
        findings::all(&self.analyzer)
    }

    fn record(&mut self, raw: &parse::RawEntry<'_>, pod: &str) {
        match Rec::of(raw) {
            Some(rec) => {
                if rec.time.is_some() {
                    self.latest = rec.time;
                }
                self.analyzer.record(&rec, pod);
                if let Some(scene) = &mut self.scene {
                    scene.record(&rec, rec.pod.unwrap_or(pod));
                }
            }
            None => self.analyzer.skipped(Skipped::NotRecord),
        }
    }
}

/// Records per verdict check while `--follow` catches up with a backlog.
const FOLLOW_CHECK_EVERY: u32 = 4096;

/// Runs the report; exit 0 when no hypothesis is confirmed, 1 when one is, 2 on usage errors.
pub fn main(args: Args) -> ExitCode {
    let paths: Vec<Option<&Path>> = if args.files.is_empty() {
        vec![None]
    } else {
        args.files
            .iter()
            .map(|f| (f.as_os_str() != "-").then_some(f.as_path()))
            .collect()
    };
    if paths.iter().filter(|p| p.is_none()).count() > 1 {
        return usage("stdin (`-`) can be read only once");
    }
    if args.follow && paths.len() > 1 {
        return usage("--follow reads one input: stdin or one file");
    }
    let mut sources = Vec::new();
    for p in &paths {
        match Source::open(*p) {
            Ok(s) => sources.push(s),
            Err(e) => {
                let name = p.map_or("stdin".to_string(), |p| p.display().to_string());
                return usage(&format!("cannot read {name}: {e}"));
            }
        }
    }
    let stdout = std::io::stdout();
    let colour = match args.color.as_str() {
        "always" => true,
        "never" => false,
        _ => stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    };
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100);
    let style = render::Style { colour, width };
    let html = match &args.html {
        Some(path) => match File::create(path) {
            Ok(file) => Some((path.display().to_string(), file)),
            Err(e) => return usage(&format!("cannot write {}: {e}", path.display())),
        },
        None => None,
    };
    let out = Output {
        json: args.json,
        style,
        labels: sources.iter().map(|s| s.label.clone()).collect(),
        html,
    };
    if args.follow {
        return match sources.pop() {
            Some(source) => follow(source, out),
            None => usage("nothing to follow"),
        };
    }
    let mut report = out.report();
    for source in &mut sources {
        let fallback = fallback_pod(&source.label);
        let result = source.run(false, &mut |item, _| report.feed(item, &fallback));
        if let Err(e) = result {
            read_error(&source.label, &e);
        }
    }
    out.finish(&report, false)
}

/// How the report is written.
struct Output {
    json: bool,
    style: render::Style,
    labels: Vec<String>,
    /// `--html`: where the page goes (created before reading, so a bad path fails first).
    html: Option<(String, File)>,
}

impl Output {
    fn report(&self) -> Report {
        if self.html.is_some() {
            Report::with_scene()
        } else {
            Report::new()
        }
    }

    /// Writes the page (from the start of the file: `--follow` may finish twice); false
    /// when it could not be written.
    fn write_page(&self, report: &Report) -> bool {
        let (Some((name, mut file)), Some(page)) = (
            self.html.as_ref().map(|(n, f)| (n, f)),
            report.page(&self.labels),
        ) else {
            return true;
        };
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(page.as_bytes()))
            .and_then(|()| file.flush());
        match written {
            Ok(()) => {
                eprintln!(
                    "sockproxy report: wrote {name} ({} KB)",
                    page.len().div_ceil(1024)
                );
                true
            }
            Err(e) => {
                eprintln!("sockproxy report: cannot write {name}: {e}");
                false
            }
        }
    }

    /// Writes the whole report; the exit code follows the verdicts.
    fn finish(&self, report: &Report, follow: bool) -> ExitCode {
        let findings = report.findings();
        let a = &report.analyzer;
        let text = if self.json {
            let mut v = render::json(a, &findings, &self.labels);
            if follow {
                // One JSON object per line in --follow, this one last.
                v["event"] = "report".into();
                format!("{v}\n")
            } else {
                format!("{v:#}\n")
            }
        } else {
            render::human(a, &findings, &self.labels, self.style)
        };
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
        if !self.write_page(report) {
            return ExitCode::from(2);
        }
        exit_code(&findings)
    }

    /// `--follow`: prints a line for each verdict that changed since the last call; false
    /// when nobody reads stdout any more.
    fn notify_changes(&self, report: &Report, shown: &mut [Verdict]) -> bool {
        let findings = report.findings();
        let mut text = String::new();
        for (f, was) in findings.iter().zip(shown.iter_mut()) {
            if f.verdict == *was {
                continue;
            }
            let a = &report.analyzer;
            if self.json {
                text.push_str(&format!(
                    "{}\n",
                    render::change_json(a, report.latest, *was, f)
                ));
            } else {
                text.push_str(&render::change_line(a, report.latest, *was, f, self.style));
            }
            *was = f.verdict;
        }
        if text.is_empty() {
            return true;
        }
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_ok()
    }
}

fn exit_code(findings: &[Finding]) -> ExitCode {
    if findings.iter().any(|f| f.verdict == Verdict::Confirmed) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The pod name for records that name none: the file's name.
fn fallback_pod(label: &str) -> String {
    Path::new(label)
        .file_name()
        .map_or(label.to_string(), |n| n.to_string_lossy().into_owned())
}

fn read_error(label: &str, e: &std::io::Error) {
    eprintln!("sockproxy report: {label}: read error, the rest of it is skipped: {e}");
}

/// What `--follow` keeps between records: the report and the verdicts printed so far.
struct Following {
    report: Report,
    shown: Vec<Verdict>,
}

/// `--follow`: reads as the input grows, prints each verdict change at once, and the
/// whole report when the input ends or on Ctrl-C.
fn follow(mut source: Source, out: Output) -> ExitCode {
    let state = Arc::new(Mutex::new(Following {
        report: out.report(),
        shown: vec![Verdict::NoEvidence; verdict::TITLES.len()],
    }));
    let out = Arc::new(out);
    on_interrupt({
        let (state, out) = (state.clone(), out.clone());
        move || {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            let Following { report, shown } = &mut *st;
            out.notify_changes(report, shown);
            out.finish(report, true)
        }
    });
    let fallback = fallback_pod(&source.label);
    let mut since_check = 0u32;
    let mut reader_gone = false;
    let result = source.run(true, &mut |item, caught_up| {
        if reader_gone {
            return;
        }
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        let Following { report, shown } = &mut *st;
        report.feed(item, &fallback);
        since_check += 1;
        if caught_up || since_check >= FOLLOW_CHECK_EVERY {
            since_check = 0;
            reader_gone = !out.notify_changes(report, shown);
        }
    });
    if let Err(e) = result {
        read_error(&source.label, &e);
    }
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    let Following { report, shown } = &mut *st;
    out.notify_changes(report, shown);
    out.finish(report, true)
}

/// Runs `then` (which prints the report so far) on SIGINT or SIGTERM, then exits with its
/// code. Without a signal runtime the defaults stay.
fn on_interrupt(then: impl FnOnce() -> ExitCode + Send + 'static) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let Ok(mut term) = rt.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    }) else {
        return;
    };
    let Ok(mut int) = rt.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    }) else {
        return;
    };
    std::thread::spawn(move || {
        rt.block_on(async {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        });
        let code = then();
        // `ExitCode` has no public number: 1 means confirmed, 2 that the page could not be
        // written, as in the exit code table.
        let number = [1, 2]
            .into_iter()
            .find(|n| code == ExitCode::from(*n))
            .unwrap_or(0);
        std::process::exit(i32::from(number));
    });
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("sockproxy report: {msg}");
    ExitCode::from(2)
}
