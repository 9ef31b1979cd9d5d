//! Load benchmark: sockproxy against no proxy, nginx and haproxy on the same engine.io
//! workloads in one run; the proxy pinned to CPU 0, backend and load to CPU 1.
//!
//! ```sh
//! cargo bench --bench load                 # full run, about 6 minutes
//! cargo bench --bench load -- --smoke      # a few seconds: keeps the harness working (CI)
//! cargo bench --bench load -- --rounds 3 --secs 2 --idle 1000 --only nginx,sockproxy
//! LOAD_BENCH_SOCKPROXY=/path/to/other/sockproxy cargo bench --bench load   # another build
//! LOAD_BENCH_SOCKPROXY_B=/path/to/patched/sockproxy cargo bench --bench load # adds `sockproxy-b`
//! ```
//!
//! Writes `target/bench/load.md` and `target/bench/load.json` and prints the table. Each
//! proxy's log goes to a file under `target/bench/run/`. See benches/README.md.

mod backend;
mod contender;
mod table;
mod workload;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use contender::{Kind, Running, Setup};
use serde_json::json;
use table::Results;

struct Opts {
    smoke: bool,
    rounds: usize,
    secs: f64,
    idle: usize,
    rtts: usize,
    only: Option<Vec<String>>,
}

impl Opts {
    fn parse() -> Opts {
        let args: Vec<String> = std::env::args().skip(1).collect();
        // `cargo bench` passes `--bench`; `cargo test --benches` does not, and then only
        // the smoke run makes sense.
        let smoke = args.iter().any(|a| a == "--smoke") || !args.iter().any(|a| a == "--bench");
        let mut o = if smoke {
            Opts {
                smoke,
                rounds: 1,
                secs: 0.3,
                idle: 50,
                rtts: 300,
                only: None,
            }
        } else {
            Opts {
                smoke,
                rounds: 5,
                secs: 3.0,
                idle: 9000,
                rtts: 30_000,
                only: None,
            }
        };
        let value = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let num = |name: &str| value(name).map(|v| v.parse::<f64>().expect(name));
        if let Some(v) = num("--rounds") {
            o.rounds = v as usize;
        }
        if let Some(v) = num("--secs") {
            o.secs = v;
        }
        if let Some(v) = num("--idle") {
            o.idle = v as usize;
        }
        if let Some(v) = num("--rtts") {
            o.rtts = v as usize;
        }
        o.only = value("--only").map(|v| v.split(',').map(String::from).collect());
        o
    }
}

/// CPUs we may run on (call before pinning ourselves).
/// How long a workload's end is given before the proxy's CPU is read: the proxy still
/// closes the workload's connections (and writes their records) just after it ends.
const CPU_SETTLE: Duration = Duration::from_millis(100);

/// The proxy's CPU time so far, in µs, read [`CPU_SETTLE`] after a workload ended.
async fn cpu_settled(c: &Running, us_per_tick: f64) -> f64 {
    tokio::time::sleep(CPU_SETTLE).await;
    c.cpu_ticks() as f64 * us_per_tick
}

/// This process's open-file limit (`Max open files` in /proc/self/limits).
fn fd_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            let line = l.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        })
        .unwrap_or(1024)
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A full run installs the peers it lacks (nginx-light, haproxy) with `benches/setup`
/// (apt-get, as root); a contender still missing afterwards is skipped and named.
fn install_peers() {
    if contender::available("nginx") && contender::available("haproxy") {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/setup");
    eprintln!("load bench: nginx or haproxy missing; running {script}");
    match Command::new("bash").arg(script).status() {
        Ok(s) if s.success() => {}
        other => eprintln!("load bench: {script} failed ({other:?}); going on without"),
    }
}

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let mut o = Opts::parse();
    let pid = std::process::id().to_string();
    let cpus = cpus();
    // Pin ourselves (backend + load, all threads to come) to CPU 1, the proxy to CPU 0.
    let pinned = cpus >= 2 && run("taskset", &["-a", "-p", "-c", "1", &pid]).is_some();
    let _ = run("prlimit", &["--pid", &pid, "--nofile=65536:65536"]);
    let fd_limit = fd_limit();
    // Each idle tunnel holds two sockets in this process (client and backend side) and
    // two in the proxy: stay under the open-file limit with room for the rest.
    let idle_max = fd_limit.saturating_sub(1536) / 2;
    if o.idle > idle_max {
        eprintln!(
            "load bench: {} idle tunnels would pass the open-file limit ({fd_limit}); opening {idle_max}",
            o.idle
        );
        o.idle = idle_max;
    }
    let clk_tck: f64 = run("getconf", &["CLK_TCK"])
        .and_then(|v| v.parse().ok())
        .unwrap_or(100.0);
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let out_dir = tmp.parent().expect("target/tmp has a parent").join("bench");
    let run_dir = out_dir.join("run");
    std::fs::create_dir_all(&run_dir).expect("creating target/bench/run");
    // Another build (main's, a patched copy) can stand in for this one.
    let sockproxy = std::env::var_os("LOAD_BENCH_SOCKPROXY").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_sockproxy")),
        PathBuf::from,
    );

    if !o.smoke {
        install_peers();
    }
    let mut kinds = vec![Kind::Direct, Kind::Nginx];
    let mut skipped = Vec::new();
    for k in [Kind::Haproxy] {
        if k.program().is_some_and(contender::available) {
            kinds.push(k);
        } else {
            skipped.push(k.name());
        }
    }
    kinds.push(Kind::Sockproxy);
    let sockproxy_b = std::env::var_os("LOAD_BENCH_SOCKPROXY_B").map(PathBuf::from);
    if sockproxy_b.is_some() {
        kinds.push(Kind::SockproxyB);
    }
    if !contender::available("nginx") {
        kinds.retain(|k| *k != Kind::Nginx);
        skipped.push("nginx");
    }
    if let Some(only) = &o.only {
        kinds.retain(|k| only.iter().any(|n| n == k.name()));
    }
    eprintln!(
        "load bench: {} mode, {} round(s) of {:?}, {} s per timed workload, {} idle tunnels; \
         pinned: {pinned}; not installed: {skipped:?}",
        if o.smoke { "smoke" } else { "full" },
        o.rounds,
        kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
        o.secs,
        o.idle
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the runtime");
    let started = std::time::Instant::now();
    let (results, problems) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the backend");
        let backend = listener.local_addr().expect("backend address");
        tokio::spawn(backend::serve(listener));
        let setup = Setup {
            backend,
            dir: &run_dir,
            sockproxy: &sockproxy,
            sockproxy_b: sockproxy_b.as_deref(),
            proxy_cpu: pinned.then_some("0"),
            max_conns: o.idle + 1024,
            fd_limit,
        };
        let mut results = Results::default();
        let mut problems = Vec::new();
        for k in &kinds {
            // Table order is contender order, whatever the round's order.
            results.order.push(k.name().to_string());
        }
        for round in 0..o.rounds {
            // Interleave: each round starts with a different contender.
            let n = kinds.len();
            for i in 0..n {
                let kind = kinds[(round + i) % n];
                eprint!("round {}/{} {:<9} ", round + 1, o.rounds, kind.name());
                let problem = match contender::start(kind, &setup, round) {
                    Ok(c) => measure(c, &o, clk_tck, &mut results).await,
                    Err(e) => Some(format!("{}: failed to start: {e}", kind.name())),
                };
                if let Some(p) = problem {
                    eprintln!("PROBLEM {p}");
                    problems.push(p);
                }
            }
        }
        (results, problems)
    });
    let secs = started.elapsed().as_secs_f64();

    let kernel = run("uname", &["-r"]).unwrap_or_default();
    let header = format!(
        "Load bench ({} mode): {} round(s), medians with ± half the range over rounds, (ratio \
         to the best peer's median: the better of nginx and haproxy on that figure). Proxy \
         on CPU 0, backend + load on CPU 1 (pinned: {pinned}); {} s per timed workload, {} \
         idle tunnels (all closed at once before the RSS after them is read), {} RTT samples \
         per round; run took {secs:.0} s. Linux {kernel}, {} CPUs.",
        if o.smoke { "smoke" } else { "full" },
        o.rounds,
        o.secs,
        o.idle,
        o.rtts,
        cpus
    );
    let md = results.markdown(&header);
    println!("{md}");
    let meta = json!({
        "mode": if o.smoke { "smoke" } else { "full" },
        "rounds": o.rounds,
        "secs_per_workload": o.secs,
        "idle_tunnels": o.idle,
        "rtt_samples": o.rtts,
        "pinned": pinned,
        "cpus": cpus,
        "clk_tck": clk_tck,
        "kernel": kernel,
        "not_installed": skipped,
        "nginx": run("nginx", &["-v"]).or_else(|| Some(String::new())),
        "haproxy": run("haproxy", &["-v"]).and_then(|v| v.lines().next().map(String::from)),
        "run_seconds": secs,
        "sockproxy_binary": sockproxy.display().to_string(),
    });
    std::fs::write(out_dir.join("load.md"), &md).expect("writing load.md");
    let js = serde_json::to_string_pretty(&results.json(meta)).expect("serialising");
    std::fs::write(out_dir.join("load.json"), js).expect("writing load.json");
    eprintln!("wrote {}/load.md and load.json", out_dir.display());
    // Only a smoke run fails on problems (CI keeps the harness working with it); a full
    // run reports them in the table and goes on.
    if o.smoke && !problems.is_empty() {
        eprintln!("smoke run failed: {}", problems.join("; "));
        std::process::exit(1);
    }
}

/// Busy clock ticks of the whole machine, from the `cpu` line of /proc/stat (user, nice,
/// system, irq, softirq, steal).
fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    [0, 1, 2, 5, 6, 7].iter().filter_map(|i| f.get(*i)).sum()
}

/// utime + stime of this process (backend and load generator), in clock ticks.
fn own_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// What a contender's workloads owe its log, added up as they run.
#[derive(Default)]
struct Owed {
    /// Log lines: one per answered request or upgrade.
    expected: u64,
    /// Upgrades (sockproxy owes a `tunnel_closed` for each).
    upgrades: u64,
    /// Failed attempts.
    errors: u64,
}

/// Runs every workload against one started contender and adds its figures; returns a
/// problem that should fail a smoke run, if any.
async fn measure(c: Running, o: &Opts, clk_tck: f64, r: &mut Results) -> Option<String> {
    let name = c.kind.name();
    let settle = Duration::from_millis(if o.smoke { 50 } else { 300 });
    let mut owed = Owed::default();

    tokio::time::sleep(settle).await;
    if c.is_proxy() {
        r.push(name, "rss_start_mib", c.rss_kib() as f64 / 1024.0);
    }
    let context0 = (
        std::time::Instant::now(),
        machine_busy_ticks(),
        own_ticks(),
        c.cpu_ticks(),
    );
    idle_tunnels(&c, o, settle, r, &mut owed).await;
    request_workloads(&c, o, clk_tck, r, &mut owed).await;
    websocket_workloads(&c, o, clk_tck, r, &mut owed).await;

    let (t0, busy0, own0, proxy0) = context0;
    let foreign = (machine_busy_ticks() - busy0) as f64
        - (own_ticks() - own0) as f64
        - (c.cpu_ticks() - proxy0) as f64;
    r.push(
        name,
        "foreign_cpu_pct",
        (foreign / clk_tck / t0.elapsed().as_secs_f64() * 100.0).max(0.0),
    );
    let mut problem = None;
    if r.values
        .get(name)
        .is_none_or(|v| !v.contains_key("rtt_p50_us"))
    {
        problem = Some(format!("{name}: the websocket workloads failed"));
    }
    check_log(c, &owed, r).or(problem)
}

/// Idle tunnels first, so that no earlier workload's freed memory hides their cost; then
/// they all close at once, and what the proxy holds after that burst is read.
async fn idle_tunnels(c: &Running, o: &Opts, settle: Duration, r: &mut Results, owed: &mut Owed) {
    let name = c.kind.name();
    let rss0 = c.rss_kib();
    let fds0 = c.open_fds();
    let (open, errs) = workload::open_idle(c.addr, o.idle).await;
    tokio::time::sleep(settle * 2).await;
    let rss1 = c.rss_kib();
    if c.is_proxy() && !open.is_empty() {
        r.push(
            name,
            "idle_rss_kib",
            (rss1 as f64 - rss0 as f64) / open.len() as f64,
        );
    }
    owed.expected += open.len() as u64;
    owed.upgrades += open.len() as u64;
    owed.errors += errs;
    drop(open);
    if c.is_proxy() {
        // "Closed" means the proxy closed its sockets (nginx may take seconds for 9000 on
        // a busy machine): wait for its descriptors to come back near where they were,
        // at most 30 s, then give it the settle time to free what they held.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while c.open_fds() > fds0 + 16 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(settle * 2).await;
        r.push(name, "burst_rss_mib", c.rss_kib() as f64 / 1024.0);
    } else {
        tokio::time::sleep(settle * 2).await;
    }
}

/// Polling GETs on keep-alive connections, then one per new connection.
async fn request_workloads(c: &Running, o: &Opts, clk_tck: f64, r: &mut Results, owed: &mut Owed) {
    let name = c.kind.name();
    let dur = Duration::from_secs_f64(o.secs);
    let us_per_tick = 1e6 / clk_tck;

    let c0 = c.cpu_ticks() as f64 * us_per_tick;
    let d = workload::polling_keepalive(c.addr, 32, dur).await;
    let c1 = cpu_settled(c, us_per_tick).await;
    owed.expected += d.requests;
    owed.errors += d.errors;
    rate(r, c, "poll_rps", "poll_cpu_us", &d, c1 - c0);

    let c0 = c.cpu_ticks() as f64 * us_per_tick;
    let mut d = workload::polling_new_conn(c.addr, 16, dur).await;
    let c1 = cpu_settled(c, us_per_tick).await;
    owed.expected += d.requests;
    owed.errors += d.errors;
    rate(r, c, "newconn_rps", "newconn_cpu_us", &d, c1 - c0);
    if !d.latencies_us.is_empty() {
        let lat = &mut d.latencies_us;
        r.push(name, "newconn_p50_ms", percentile(lat, 0.50) / 1000.0);
        r.push(name, "newconn_p99_ms", percentile(lat, 0.99) / 1000.0);
    }
}

/// The `p` quantile (0..1) of `v`, which it sorts.
fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// Websocket round trips on one connection, bulk throughput, then handshakes.
async fn websocket_workloads(
    c: &Running,
    o: &Opts,
    clk_tck: f64,
    r: &mut Results,
    owed: &mut Owed,
) {
    let name = c.kind.name();
    let dur = Duration::from_secs_f64(o.secs);
    let us_per_tick = 1e6 / clk_tck;

    let c0 = c.cpu_ticks() as f64 * us_per_tick;
    match workload::ws_rtt(c.addr, o.rtts).await {
        Ok((mut rtts, _)) => {
            let c1 = cpu_settled(c, us_per_tick).await;
            r.push(name, "rtt_p50_us", percentile(&mut rtts, 0.50));
            r.push(name, "rtt_p90_us", percentile(&mut rtts, 0.90));
            r.push(name, "rtt_p99_us", percentile(&mut rtts, 0.99));
            if c.is_proxy() {
                r.push(name, "rtt_cpu_us", (c1 - c0) / rtts.len() as f64);
            }
            owed.expected += 1;
            owed.upgrades += 1;
        }
        Err(e) => {
            eprint!("[ws rtt failed: {e}] ");
            owed.errors += 1;
        }
    }

    let c0 = c.cpu_ticks() as f64 * us_per_tick;
    match workload::ws_throughput(c.addr, 4, 64 * 1024, 8, dur).await {
        Ok((in_time, total, _)) => {
            let c1 = cpu_settled(c, us_per_tick).await;
            r.push(name, "ws_mbps", in_time as f64 / 1e6 / o.secs);
            if c.is_proxy() && total > 0 {
                r.push(name, "ws_cpu_us_per_mb", (c1 - c0) / (total as f64 / 1e6));
            }
            owed.expected += 4;
            owed.upgrades += 4;
        }
        Err(e) => {
            eprint!("[ws throughput failed: {e}] ");
            owed.errors += 1;
        }
    }

    let c0 = c.cpu_ticks() as f64 * us_per_tick;
    let d = workload::handshakes(c.addr, 16, dur).await;
    let c1 = cpu_settled(c, us_per_tick).await;
    owed.expected += d.count;
    owed.upgrades += d.upgrades;
    owed.errors += d.errors;
    rate(r, c, "hs_rate", "hs_cpu_us", &d, c1 - c0);
}

/// Stops the contender and checks its log against what the workloads owe it: missing
/// lines (a problem for sockproxy) and the bytes of a polling GET's line.
fn check_log(c: Running, owed: &Owed, r: &mut Results) -> Option<String> {
    let (kind, name) = (c.kind, c.kind.name());
    let Some(log) = c.stop() else {
        eprintln!("{} failed attempts", owed.errors);
        return None;
    };
    let is_sockproxy = matches!(kind, Kind::Sockproxy | Kind::SockproxyB);
    let mut missing = owed.expected as f64 - log.lines as f64;
    if is_sockproxy {
        // Every upgrade also owes a tunnel_closed.
        missing += (owed.upgrades as f64 - log.closed as f64).max(0.0);
    }
    r.push(name, "records_missing", missing);
    if let Some(b) = log.poll_bytes_mean() {
        r.push(name, "log_bytes_poll", b);
    }
    eprint!("expected {} log lines, found {}", owed.expected, log.lines);
    if is_sockproxy {
        eprint!(" (+{} tunnel_closed of {})", log.closed, owed.upgrades);
    }
    eprintln!("; {} failed attempts", owed.errors);
    (is_sockproxy && missing != 0.0).then(|| format!("{name}: {missing} records missing"))
}

/// Adds a rate figure and, for a proxy, its CPU per completed unit.
fn rate(
    r: &mut Results,
    c: &Running,
    rate_key: &'static str,
    cpu_key: &'static str,
    d: &workload::Done,
    cpu_us: f64,
) {
    let name = c.kind.name();
    if d.count == 0 {
        return;
    }
    r.push(name, rate_key, d.count as f64 / d.elapsed.as_secs_f64());
    if c.is_proxy() {
        r.push(name, cpu_key, cpu_us / d.count as f64);
    }
}
