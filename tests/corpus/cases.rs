//! The corpus's cases: a cluster, what goes wrong in it (or nothing), how the logs were
//! collected, and the verdict each hypothesis must get, with the reason.
//!
//! The verdicts come from the situation simulated (what really failed, and why), never
//! from what any version of the report says.

use serde_json::{Value, json};

use super::clients::{self, Bot, Client, Kind};
use super::formats::{self, File, Fmt};
use super::rng::Rng;
use super::world::{
    Drain, HOUR, HealthCheck, MIN, Nginx, PodLog, Probe, SEC, T, Template, World, secs,
};

/// What a hypothesis must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// It is the real cause of client-visible failures here.
    Confirmed,
    /// Its signature may appear as noise, but it is not the cause: any verdict except
    /// `confirmed`.
    NotConfirmed,
    /// Seen, but it does not explain the failures (a few clients, one bot).
    Isolated,
    /// Positive evidence against it.
    RuledOut,
    /// Nothing in the records bears on it.
    NoEvidence,
}

impl Want {
    pub fn key(self) -> &'static str {
        match self {
            Want::Confirmed => "confirmed",
            Want::NotConfirmed => "not_confirmed",
            Want::Isolated => "isolated",
            Want::RuledOut => "ruled_out",
            Want::NoEvidence => "no_evidence",
        }
    }

    /// True when the report's verdict `got` meets this expectation.
    pub fn accepts(self, got: &str) -> bool {
        match self {
            Want::NotConfirmed => got != "confirmed",
            w => w.key() == got,
        }
    }
}

/// One hypothesis's expectation.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    pub want: Want,
    pub why: &'static str,
}

/// Shorthands for the expectation tables.
const fn c(why: &'static str) -> Expect {
    Expect {
        want: Want::Confirmed,
        why,
    }
}
const fn n(why: &'static str) -> Expect {
    Expect {
        want: Want::NotConfirmed,
        why,
    }
}
const fn i(why: &'static str) -> Expect {
    Expect {
        want: Want::Isolated,
        why,
    }
}
const fn r(why: &'static str) -> Expect {
    Expect {
        want: Want::RuledOut,
        why,
    }
}
const fn e(why: &'static str) -> Expect {
    Expect {
        want: Want::NoEvidence,
        why,
    }
}

pub const IDS: [&str; 6] = ["H1", "H2", "H3", "H4", "H5", "H6"];

/// One case: its files and the verdicts they must get.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub story: &'static str,
    pub files: Vec<File>,
    pub expected: [Expect; 6],
    pub pods: usize,
    pub visits: u64,
    pub sessions: u64,
    pub records: usize,
    pub hours: f64,
    /// Every record line as the sink wrote it, before any format or damage (for the
    /// field-set test).
    pub plain: Vec<Vec<u8>>,
}

impl Case {
    /// `expected.json`.
    pub fn expected_json(&self) -> Value {
        let mut exp = serde_json::Map::new();
        for (id, x) in IDS.iter().zip(&self.expected) {
            exp.insert(
                id.to_string(),
                json!({"verdict": x.want.key(), "why": x.why}),
            );
        }
        json!({
            "case": self.name,
            "story": self.story,
            "pods": self.pods,
            "visits": self.visits,
            "sessions": self.sessions,
            "records": self.records,
            "hours": self.hours,
            "files": self.files.iter().map(|f| json!({
                "name": f.name,
                "format": f.fmt.name(),
                "bytes": f.bytes.len(),
                "damaged_lines": f.damaged,
            })).collect::<Vec<_>>(),
            "expected": exp,
        })
    }

    /// Writes the files and `expected.json` into `dir/<name>/`; returns the log paths.
    pub fn write_to(&self, dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
        let d = dir.join(self.name);
        std::fs::create_dir_all(&d)?;
        let mut paths = Vec::new();
        for f in &self.files {
            let p = d.join(&f.name);
            std::fs::write(&p, &f.bytes)?;
            paths.push(p);
        }
        let exp = serde_json::to_vec_pretty(&self.expected_json()).expect("serialisable");
        std::fs::write(d.join("expected.json"), exp)?;
        Ok(paths)
    }

    /// The formats of the case's files, deduplicated, for a summary line.
    pub fn formats(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self.files.iter().map(|f| f.fmt.name()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// `H1..H6` as one letter each: C confirmed, N not confirmed, I isolated,
    /// R ruled out, E no evidence.
    pub fn letters(&self) -> String {
        self.expected
            .iter()
            .map(|x| match x.want {
                Want::Confirmed => 'C',
                Want::NotConfirmed => 'N',
                Want::Isolated => 'I',
                Want::RuledOut => 'R',
                Want::NoEvidence => 'E',
            })
            .collect()
    }
}

/// How a case's logs were collected.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// Each pod saved on its own, in this format.
    PerPod(Fmt),
    /// `kubectl logs -l app=theia --prefix [--timestamps]` for the running pods (one
    /// file); the pods a rollout removed, from a Cloud Logging sink.
    Kubectl { timestamps: bool },
    /// Everything from `gcloud logging read --format=json`.
    CloudArray,
    /// Per pod: plain or `--timestamps`; removed pods from `gcloud logging read`.
    Mixed,
}

fn collect(logs: &[PodLog], plan: Plan, rng: &mut Rng, damage: (i64, i64)) -> Vec<File> {
    let mut files = Vec::new();
    let live: Vec<&PodLog> = logs.iter().filter(|l| !l.gone).collect();
    let gone: Vec<&PodLog> = logs.iter().filter(|l| l.gone).collect();
    let mut add = |name: String, fmt: Fmt, pods: Vec<&PodLog>, rng: &mut Rng| {
        if pods.is_empty() {
            return;
        }
        let mut f = formats::write(&name, fmt, &pods, rng);
        let k = rng.int(damage.0, damage.1).max(0) as usize;
        formats::damage(&mut f, &pods, k, rng);
        files.push(f);
    };
    match plan {
        Plan::PerPod(fmt) => {
            for p in logs {
                add(format!("{}.log", p.pod), fmt, vec![p], rng);
            }
        }
        Plan::Kubectl { timestamps } => {
            let fmt = if timestamps {
                Fmt::PrefixTimestamps
            } else {
                Fmt::Prefix
            };
            add("kubectl-logs-l-app-theia.txt".into(), fmt, live, rng);
            add(
                "cloud-logging-sink.jsonl".into(),
                Fmt::CloudLines,
                gone,
                rng,
            );
        }
        Plan::CloudArray => {
            add(
                "logs-explorer.json".into(),
                Fmt::CloudArray,
                logs.iter().collect(),
                rng,
            );
        }
        Plan::Mixed => {
            for (k, p) in live.iter().enumerate() {
                let fmt = if k % 2 == 0 {
                    Fmt::Plain
                } else {
                    Fmt::Timestamps
                };
                add(format!("{}.log", p.pod), fmt, vec![p], rng);
            }
            add(
                "gcloud-logging-read.json".into(),
                Fmt::CloudArray,
                gone,
                rng,
            );
        }
    }
    files
}

/// The start of case `k`'s window: a different morning for each case.
fn morning(k: u64) -> T {
    let base = humantime::parse_rfc3339("2026-11-02T07:00:00Z").expect("a valid date");
    let t = base
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_micros() as T;
    t + (k as T) * 24 * HOUR + (k as T % 5) * 17 * MIN
}

fn finish(
    name: &'static str,
    story: &'static str,
    w: World,
    plan: Plan,
    expected: [Expect; 6],
    rng: &mut Rng,
) -> Case {
    let hours = (w.end - w.start) as f64 / HOUR as f64;
    let (visits, sessions) = (w.visits, w.sessions);
    let logs = w.finish();
    let pods = logs.len();
    let records = logs.iter().map(|l| l.lines.len()).sum();
    let plain = logs
        .iter()
        .flat_map(|l| l.lines.iter().map(|x| x.text.clone()))
        .collect();
    let files = collect(&logs, plan, rng, (1, 3));
    Case {
        name,
        story,
        files,
        expected,
        pods,
        visits,
        sessions,
        records,
        hours,
        plain,
    }
}

fn scaled(n: usize, scale: f64) -> usize {
    ((n as f64) * scale).round().max(1.0) as usize
}

fn uniform(lo_s: f64, hi_s: f64) -> impl FnMut(&mut Rng, Kind) -> T {
    move |rng, _| secs(rng.range(lo_s, hi_s))
}

fn usual() -> impl FnMut(&mut Rng, Kind) -> T {
    |rng, _| clients::visit_length(rng)
}

const HC_OK: HealthCheck = HealthCheck {
    path: "/",
    fail_from: None,
    fail_path: "/",
    fail_status: 404,
    transient: None,
};

/// The mix of clients on a normal day: Theia's default client, a few corporate
/// networks that block websockets (long-polling only), a few websocket-only clients.
const NORMAL_MIX: &[(Kind, f64)] = &[
    (Kind::Browser, 0.9),
    (Kind::WsBlocked, 0.05),
    (Kind::WsOnly, 0.05),
];

// Reasons shared by several cases.
const H1_OK: &str = "browser websockets arrive with Upgrade and Sec-WebSocket-Key and get 101; \
    the only requests without Upgrade are scanners' keyless probes, not stripped handshakes";
const H2_OK: &str = "with several pods serving at once, sessions' later requests (POST, polls, \
    upgrade) all reach the pod that issued their sid";
const H2_ONE_POD: &str = "one pod: affinity cannot be tested";
const H3_UNSEEN: &str = "without --log-all no health check is recorded";
const H3_OK: &str = "GoogleHC checks pass on every pod (after theia starts); the only failures \
    are kube-probe's during each pod's startup";
const H4_OK: &str = "every Origin (POSTs, upgrades, websocket handshakes) matches Host and \
    nothing is refused with code 4";
const H5_NONE: &str = "no pod drained in the window";
const H5_NORMAL: &str = "normal rollout: theia closed its sessions at SIGTERM, the drain \
    finished (drained=true), clients came back with fresh handshakes";
const H6_LONG: &str = "tunnel lifetimes are spread and many lasted over an hour: no cut-off \
    at any fixed duration";

const BUILDERS: &[(&str, Builder)] = &[
    ("healthy", healthy),
    ("start-stop", start_stop),
    ("scanner-websocket", scanner_websocket),
    ("h1-nginx-no-upgrade", h1_nginx_no_upgrade),
    ("h1-corporate-proxy", h1_corporate_proxy),
    ("h2-no-affinity", h2_no_affinity),
    ("h2-rollout-affinity", h2_rollout_affinity),
    ("h3-hc-health-404", h3_hc_health_404),
    ("h3-hc-root-404", h3_hc_root_404),
    ("h3-probe-noise", h3_probe_noise),
    ("h4-host-localhost", h4_host_localhost),
    ("h4-noise", h4_noise),
    ("h5-short-drain", h5_short_drain),
    ("h5-normal-rollouts", h5_normal_rollouts),
    ("h6-lb-timeout-30", h6_lb_timeout_30),
    ("h6-lb-timeout-60", h6_lb_timeout_60),
    ("h6-tab-closes", h6_tab_closes),
    ("h6-four-of-fifty", h6_four_of_fifty),
    ("multi-h2-h6", multi_h2_h6),
    ("multi-h1-h5", multi_h1_h5),
    ("multi-h4-h6", multi_h4_h6),
];

type Builder = fn(u64, u64, f64) -> Case;

fn build(seed: u64, scale: f64, k: usize) -> Case {
    let case_seed = seed ^ (k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (BUILDERS[k].1)(case_seed, k as u64, scale)
}

/// All the cases at `scale` (1.0: the sizes the test uses), built on all cores (each
/// case is deterministic on its own, so the order of work does not matter).
pub fn all(seed: u64, scale: f64) -> Vec<Case> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..workers.min(BUILDERS.len()) {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if k >= BUILDERS.len() {
                        break;
                    }
                    let case = build(seed, scale, k);
                    done.lock().unwrap().push((k, case));
                }
            });
        }
    });
    let mut cases = done.into_inner().unwrap();
    cases.sort_by_key(|(k, _)| *k);
    cases.into_iter().map(|(_, c)| c).collect()
}

/// Builds the case named `name`, or the large one (`large`).
pub fn by_name(seed: u64, scale: f64, name: &str) -> Option<Case> {
    if name == "large" {
        return Some(large(seed, scale));
    }
    let k = BUILDERS.iter().position(|(n, _)| *n == name)?;
    Some(build(seed, scale, k))
}

fn traffic(w: &mut World, n: usize, mix: &[(Kind, f64)], mut len: impl FnMut(&mut Rng, Kind) -> T) {
    clients::traffic(w, n, mix, &mut len);
}

fn healthy(seed: u64, k: u64, scale: f64) -> Case {
    let mut w = World::new(seed, morning(k), 4.0, 3);
    w.hc = Some(HC_OK);
    w.probe = Probe::ViaNginx("/");
    w.initial_pods(4, Template::SEED);
    // The rollout that turned --log-all on: health checks are recorded from then on.
    let tpl = Template {
        log_all: true,
        ..Template::SEED
    };
    let at = w.start + secs(2.1 * 3600.0);
    w.rollout(at, tpl);
    traffic(&mut w, scaled(360, scale), NORMAL_MIX, usual());
    clients::health_checks(&mut w);
    clients::scanners(&mut w, 6.0);
    let mut rng = Rng::new(seed ^ 1);
    finish(
        "healthy",
        "4 pods, affinity (GENERATED_COOKIE), timeoutSec 86400; a rollout enabling --log-all; \
         passing health checks; scanners; a few websocket-blocked and websocket-only clients",
        w,
        Plan::Kubectl { timestamps: true },
        [
            r(H1_OK),
            r(H2_OK),
            r(H3_OK),
            r(H4_OK),
            n(H5_NORMAL),
            r(H6_LONG),
        ],
        &mut rng,
    )
}

/// The case (a): a pod starts (one early poll gets sockproxy's own 502), ten
/// healthy sessions, SIGTERM with nothing open.
fn start_stop(seed: u64, k: u64, _scale: f64) -> Case {
    let mut w = World::new(seed, morning(k), 0.25, 1);
    let hash = w.template_hash();
    let p = w.add_pod(&hash, w.start, Template::SEED);
    // Ready as soon as sockproxy is (/readyz), theia still booting: up just after the
    // first poll (socket.io's first retry comes at least 0.5 s later).
    let t0 = w.pods[p].start + secs(1.5);
    w.pods[p].ready = w.pods[p].start + secs(0.8);
    w.pods[p].theia_up = t0 + secs(0.3);
    let mut rng = Rng::new(seed ^ 2);
    // A tab open across the restart reconnects at once: the early poll, a 502.
    let mut early = Client::new(&mut w, Kind::Browser);
    early.token = Some(w.pods[p].token);
    clients::reconnecting_tab(&mut w, &mut early, t0, t0 + secs(rng.range(12.0, 20.0)));
    let mut t = w.pods[p].theia_up + secs(5.0);
    for _ in 0..9 {
        let mut c = Client::new(&mut w, Kind::Browser);
        let life = secs(rng.range(4.0, 25.0));
        clients::visit(&mut w, &mut c, t, t + life);
        t += secs(rng.range(10.0, 60.0));
    }
    let last = w.end - secs(20.0);
    w.terminate(p, last.max(t + secs(60.0)));
    finish(
        "start-stop",
        "issue case (a): a pod starts, one early poll gets sockproxy's own 502 (theia not up), \
         ten healthy sessions (handshake, poll, 101, echo, closed by the client), SIGTERM with \
         nothing open",
        w,
        Plan::PerPod(Fmt::Plain),
        [
            r("ten websockets with Upgrade got 101"),
            e(H2_ONE_POD),
            e(H3_UNSEEN),
            r("POSTs and upgrades carry an Origin equal to Host and succeed"),
            r("the only drain found nothing open and finished (drained=true)"),
            e("every tunnel was closed by the client within seconds: no timeout is tested"),
        ],
        &mut rng,
    )
}

/// The case (b): 20 healthy sessions and one scanner's keyless websocket probe.
fn scanner_websocket(seed: u64, k: u64, _scale: f64) -> Case {
    let mut w = World::new(seed, morning(k), 0.5, 1);
    let hash = w.template_hash();
    let p = w.add_pod(&hash, w.start, Template::SEED);
    w.pods[p].theia_up = w.pods[p].start + secs(7.0);
    w.pods[p].ready = w.pods[p].theia_up + secs(3.0);
    let mut rng = Rng::new(seed ^ 3);
    let mut t = w.pods[p].ready + secs(10.0);
    for _ in 0..20 {
        let mut c = Client::new(&mut w, Kind::Browser);
        let life = secs(rng.range(3.0, 25.0));
        clients::visit(&mut w, &mut c, t, t + life);
        t += secs(rng.range(20.0, 80.0));
    }
    let at = w.start + secs(rng.range(400.0, 1200.0));
    let ip = clients::public_ip(&mut rng);
    clients::bot(
        &mut w,
        &mut rng,
        at,
        Bot::WebsocketProbe,
        &ip,
        "Mozilla/5.0 (compatible; CensysInspect/1.1; +https://about.censys.io/)",
    );
    finish(
        "scanner-websocket",
        "issue case (b): 20 healthy sessions and one scanner's GET \
         /socket.io/?EIO=4&transport=websocket with no Upgrade, no Sec-WebSocket-Key, no sid",
        w,
        Plan::PerPod(Fmt::Timestamps),
        [
            r(
                "20 browser websockets with Upgrade got 101; the scanner's request has no \
               Sec-WebSocket-Key: not a handshake that lost its Upgrade",
            ),
            e(H2_ONE_POD),
            e(H3_UNSEEN),
            r("POSTs and upgrades carry an Origin equal to Host and succeed"),
            e(H5_NONE),
            e("every tunnel was closed by the client within seconds: no timeout is tested"),
        ],
        &mut rng,
    )
}

fn h1_nginx_no_upgrade(seed: u64, k: u64, scale: f64) -> Case {
    let mut w = World::new(seed, morning(k), 2.0, 2);
    let tpl = Template {
        nginx: Nginx {
            pass_upgrade: false,
            ..Nginx::SEED
        },
        ..Template::SEED
    };
    w.initial_pods(3, tpl);
    let at = w.start + secs(1.2 * 3600.0);
    w.rollout(at, tpl);
    traffic(
        &mut w,
        scaled(90, scale),
        &[
            (Kind::Browser, 0.93),
            (Kind::WsBlocked, 0.05),
            (Kind::WsOnly, 0.02),
        ],
        uniform(60.0, 1500.0),
    );
    clients::scanners(&mut w, 4.0);
    let mut rng = Rng::new(seed ^ 4);
    finish(
        "h1-nginx-no-upgrade",
        "the pod nginx lacks proxy_set_header Upgrade/Connection: every browser websocket \
         attempt arrives with Sec-WebSocket-Key/Version but no Upgrade (Connection: close), \
         gets 400 code 3, and the clients stay on long-polling; 3 pods, a normal rollout",
        w,
        Plan::Kubectl { timestamps: false },
        [
            c(
                "every browser websocket attempt, on every pod, arrives with Sec-WebSocket-Key \
               but no Upgrade and is refused with code 3; no websocket ever opens",
            ),
            r("long-polling sessions keep every request on their issuing pod, with 3 pods serving"),
            e(H3_UNSEEN),
            r(H4_OK),
            n(H5_NORMAL),
            n("no websocket opened, and polls end at the server's ping, never cut"),
        ],
        &mut rng,
    )
}

fn h1_corporate_proxy(seed: u64, k: u64, scale: f64) -> Case {
    let mut w = World::new(seed, morning(k), 3.0, 3);
    w.hc = Some(HC_OK);
    w.probe = Probe::ViaNginx("/");
    w.initial_pods(4, Template::SEED);
    // The rollout that turned --log-all on.
    let tpl = Template {
        log_all: true,
        ..Template::SEED
    };
    w.rollout(w.start + secs(1.5 * 3600.0), tpl);
    traffic(
        &mut w,
        scaled(330, scale),
        &[
            (Kind::Browser, 0.90),
            (Kind::Stripped, 0.03),
            (Kind::WsBlocked, 0.04),
            (Kind::WsOnly, 0.03),
        ],
        usual(),
    );
    clients::health_checks(&mut w);
    clients::scanners(&mut w, 8.0);
    let mut rng = Rng::new(seed ^ 5);
    finish(
        "h1-corporate-proxy",
        "healthy cluster (4 pods, --log-all) where ~3 % of clients sit behind a corporate \
         proxy (its own Via entry) that forwards the websocket attempt without Upgrade; they \
         fall back to polling; scanners' keyless websocket probes",
        w,
        Plan::Mixed,
        [
            i(
                "only the clients behind one kind of corporate proxy (their own Via entry) lose \
               Upgrade, on every attempt; everyone else's Upgrade reaches the same pods and \
               gets 101, so the LB and nginx pass it: not the cause of an outage",
            ),
            r(H2_OK),
            r(H3_OK),
            r(H4_OK),
            n(H5_NORMAL),
            r(H6_LONG),
        ],
        &mut rng,
    )
}

fn h2_no_affinity(seed: u64, k: u64, scale: f64) -> Case {
    let mut w = World::new(seed, morning(k), 2.0, 2);
    w.affinity = false;
    w.initial_pods(3, Template::SEED);
    traffic(
        &mut w,
        scaled(50, scale),
        &[(Kind::Browser, 0.97), (Kind::WsBlocked, 0.03)],
        uniform(45.0, 240.0),
    );
    clients::scanners(&mut w, 4.0);
    let mut rng = Rng::new(seed ^ 6);
    finish(
        "h2-no-affinity",
        "no session affinity on the backend service (Service sessionAffinity is ignored with \
         NEGs), 3 pods: a session's later requests land on random pods and get \"Session ID \
         unknown\"; clients reconnect over and over",
        w,
        Plan::PerPod(Fmt::Prefix),
        [
            r(
                "the upgrades that reach the issuing pod carry Upgrade and get 101; the refused \
               ones are code 1, not code 3",
            ),
            c(
                "most sessions' POSTs, polls and upgrades reach a pod that never issued their \
               sid and get code 1, continuously, on every pod, with every pod up",
            ),
            e(H3_UNSEEN),
            r(H4_OK),
            e(H5_NONE),
            n("the few websockets that open live until the tab closes (minutes)"),
        ],
        &mut rng,
    )
}

fn h2_rollout_affinity(seed: u64, k: u64, scale: f64) -> Case {
    let mut w = World::new(seed, morning(k), 3.5, 3);
    w.initial_pods(3, Template::SEED);
    w.rollout(w.start + secs(0.5 * 3600.0), Template::SEED);
    w.rollout(w.start + secs(2.1 * 3600.0), Template::SEED);
    traffic(
        &mut w,
        scaled(280, scale),
        &[
            (Kind::Browser, 0.82),
            (Kind::WsBlocked, 0.15),
            (Kind::WsOnly, 0.03),
        ],
        usual(),
    );
    clients::scanners(&mut w, 5.0);
    let mut rng = Rng::new(seed ^ 7);
    finish(
        "h2-rollout-affinity",
        "affinity on, 3 pods, two normal rollouts; long-polling sessions of a drained pod \
         come back once with their old sid to a new pod, are refused, and handshake again",
        w,
        Plan::Kubectl { timestamps: true },
        [
            r(H1_OK),
            r(
                "between rollouts every session stays on its issuing pod; the only refusals \
               are sids of pods that had just drained, which no pod can serve whatever the \
               affinity (H5's territory)",
            ),
            e(H3_UNSEEN),
            r(H4_OK),
            n(
                "normal rollouts: theia closed sessions at SIGTERM, drains finished; one \
               refusal per moved polling session is the price of any rollout",
            ),
            r(H6_LONG),
        ],
        &mut rng,
    )
}

fn h3_hc_health_404(seed: u64, k: u64, scale: f64) -> Case {
    let mut w = World::new(seed, morning(k), 2.0, 2);
    // Run with --gcp-project to correlate with the LB's logs.
    w.project = Some("coditect-prod");
    let switch = w.start + secs(25.0 * 60.0);
    w.hc = Some(HealthCheck {
        path: "/",
        fail_from: Some(switch),
        fail_path: "/health",
        fail_status: 404,
        transient: None,
    });
    w.probe = Probe::ViaNginx("/");
    let tpl = Template {
        log_all: true,
        ..Template::SEED
    };
    w.initial_pods(3, tpl);
    traffic(
        &mut w,
        scaled(200, scale),
        &[(Kind::Browser, 0.95), (Kind::WsBlocked, 0.05)],
        usual(),
    );
    clients::health_checks(&mut w);
    clients::scanners(&mut w, 5.0);
    let mut rng = Rng::new(seed ^ 8);
    for _ in 0..4 {
        let p = rng.below(w.pods.len() as u64) as usize;
        let t = switch + secs(rng.range(600.0, 5000.0));
        clients::internal_curl(&mut w, p, t, &mut rng);
    }
    finish(
        "h3-hc-health-404",
        "25 minutes in, the BackendConfig's health check moves to /health, which theia \
         answers 404 on every pod: the LB marks every backend unhealthy and answers browsers \
         itself; only health checks, kube-probe and an operator's in-pod curl reach the pods",
        w,
        Plan::CloudArray,
        [
            r("before the change browser websockets with Upgrade got 101"),
            r("before the change sessions stayed on their issuing pod, 3 pods serving"),
            c(
                "from 25 min on, every GoogleHC check on every pod gets 404 for 95 minutes; new \
               browser sessions stop reaching any pod at the same moment",
            ),
            r(H4_OK),
            e(H5_NONE),
            n("websockets opened before the change live on until their tabs close"),
        ],
        &mut rng,
    )
}

fn h3_hc_root_404(seed: u64, k: u64, _scale: f64) -> Case {
    let mut w = World::new(seed, morning(k), 1.5, 2);
    w.hc = Some(HealthCheck {
        path: "/",
        fail_from: Some(w.start - 24 * HOUR),
        fail_path: "/",
        fail_status: 404,
        transient: None,
    });
    w.probe = Probe::ViaNginx("/theia/");
    let tpl = Template {
        log_all: true,
        ..Template::SEED
    };
    w.initial_pods(3, tpl);
    w.rollout(w.start + secs(0.6 * 3600.0), tpl);
    traffic(&mut w, 150, NORMAL_MIX, usual());
    clients::health_checks(&mut w);
    let mut rng = Rng::new(seed ^ 9);
    for _ in 0..3 {
        let p = rng.below(w.pods.len() as u64) as usize;
        let t = w.start + secs(rng.range(60.0, 5000.0));
        if w.pods[p].accepting(t) && t > w.pods[p].theia_up {
            clients::internal_curl(&mut w, p, t, &mut rng);
        }
    }
    finish(
        "h3-hc-root-404",
        "theia is served under /theia/, so the LB's default health check GET / gets 404 on \
         every pod while kube-probe (readiness on /theia/) passes: pods are Ready in \
         Kubernetes but never healthy in the LB; no browser request reaches a pod",
        w,
        Plan::Kubectl { timestamps: true },
        [
            e("no websocket request reaches any pod"),
            e("no session beyond an operator's single handshakes"),
            c(
                "every GoogleHC check on every pod, old and new, gets 404 for the whole window, \
               and no browser traffic arrives",
            ),
            e("no browser request, so no Origin to compare"),
            n("the rollout's drains found nothing open"),
            e("no tunnel"),
        ],
        &mut rng,
    )
}

fn h3_probe_noise(seed: u64, k: u64, scale: f64) -> Case {
    let mut w = World::new(seed, morning(k), 2.0, 3);
    w.hc = Some(HealthCheck {
        transient: Some(morning(k) + secs(1.3 * 3600.0)),
        ..HC_OK
    });
    w.probe = Probe::ViaNginx("/");
    let tpl = Template {
        log_all: true,
        ..Template::SEED
    };
    w.initial_pods(3, tpl);
    w.rollout(w.start + secs(0.5 * 3600.0), tpl);
    w.rollout(w.start + secs(1.4 * 3600.0), tpl);
    traffic(&mut w, scaled(220, scale), NORMAL_MIX, usual());
    clients::health_checks(&mut w);
    clients::scanners(&mut w, 6.0);
    let mut rng = Rng::new(seed ^ 10);
    finish(
        "h3-probe-noise",
        "healthy, --log-all, two rollouts: kube-probe readiness fails (sockproxy's 502) for \
         the first seconds of every new pod while theia boots, and one GoogleHC check times \
         out once",
        w,
        Plan::Kubectl { timestamps: false },
        [
            r(H1_OK),
            r(H2_OK),
            r(
                "GoogleHC passes on every pod all the time except one timeout (one failure \
               cannot mark a backend unhealthy: the threshold is 2); kube-probe fails only \
               while theia starts, before the pod is Ready",
            ),
            r(H4_OK),
            n(H5_NORMAL),
            r(H6_LONG),
        ],
        &mut rng,
    )
}

fn h4_host_localhost(seed: u64, k: u64, scale: f64) -> Case {
    let mut w = World::new(seed, morning(k), 2.5, 2);
    let tpl = Template {
        nginx: Nginx {
            fixed_host: Some("localhost:3000"),
            ..Nginx::SEED
        },
        ..Template::SEED
    };
    w.initial_pods(3, tpl);
    traffic(
        &mut w,
        scaled(220, scale),
        &[
            (Kind::WsOnly, 0.65),
            (Kind::Browser, 0.32),
            (Kind::WsBlocked, 0.03),
        ],
        |rng: &mut Rng, kind| match kind {
            // Nothing works for them; people give up after a few minutes.
            Kind::WsOnly => secs(rng.range(60.0, 600.0)),
            _ => clients::visit_length(rng),
        },
    );
    clients::scanners(&mut w, 4.0);
    let mut rng = Rng::new(seed ^ 11);
    finish(
        "h4-host-localhost",
        "the pod nginx sets Host to localhost:3000; Theia >= 1.73 refuses every handshake that \
         carries Origin https://ide.example.com: the websocket-only clients (most of them) \
         never connect; polling-first tabs (no Origin on the handshake GET) work",
        w,
        Plan::PerPod(Fmt::PrefixTimestamps),
        [
            r("polling-first tabs upgrade with Upgrade and get 101"),
            r(H2_OK),
            e(H3_UNSEEN),
            c(
                "every request with an Origin carries Host localhost:3000; every handshake \
               with an Origin is refused with code 4 (400 Forbidden), for most clients, on \
               every pod",
            ),
            e(H5_NONE),
            r(H6_LONG),
        ],
        &mut rng,
    )
}

fn h4_noise(seed: u64, k: u64, scale: f64) -> Case {
    let mut w = World::new(seed, morning(k), 3.0, 2);
    w.token_check = true;
    w.initial_pods(3, Template::SEED);
    traffic(
        &mut w,
        scaled(380, scale),
        &[
            (Kind::Browser, 0.9),
            (Kind::WsOnly, 0.07),
            (Kind::WsBlocked, 0.03),
        ],
        usual(),
    );
    let mut rng = Rng::new(seed ^ 12);
    // Tabs restored after a night away: their connection-token cookie belongs to a
    // theia process that is gone; refused (code 4, Origin = Host) until reloaded.
    for kind in [
        Kind::WsOnly,
        Kind::WsOnly,
        Kind::WsOnly,
        Kind::Browser,
        Kind::Browser,
    ] {
        let mut c = Client::new(&mut w, kind);
        c.token = Some(rng.u64());
        let t0 = w.start + secs(rng.range(300.0, 9000.0));
        clients::reconnecting_tab(&mut w, &mut c, t0, t0 + secs(rng.range(600.0, 3600.0)));
    }
    // One bot with a foreign Origin, now and then: refused, as it should be.
    let ip = clients::public_ip(&mut rng);
    let mut t = w.start + secs(rng.range(60.0, 900.0));
    while t < w.end {
        clients::bot(
            &mut w,
            &mut rng,
            t,
            Bot::ForeignOrigin,
            &ip,
            "python-requests/2.32.3",
        );
        t += secs(rng.range(300.0, 1800.0));
    }
    clients::scanners(&mut w, 5.0);
    finish(
        "h4-noise",
        "healthy (Theia >= 1.73, 3 pods); one bot sends Origin https://evil.example and is \
         refused (403 code 4, Origin != Host); five restored tabs with a stale \
         connection-token cookie are refused with code 4 while Origin = Host, until reloaded",
        w,
        Plan::Mixed,
        [
            r(H1_OK),
            r(H2_OK),
            e(H3_UNSEEN),
            i(
                "the only Origin/Host mismatch is one bot's foreign Origin, refused correctly; \
               browsers' Origin equals Host; the other code-4 refusals have a matching \
               Origin (Theia's connection-token check), not a rewritten Host",
            ),
            e(H5_NONE),
            r(H6_LONG),
        ],
        &mut rng,
    )
}

fn h5_short_drain(seed: u64, k: u64, scale: f64) -> Case {
    let mut w = World::new(seed, morning(k), 4.0, 3);
    let tpl = Template {
        drain: Drain::Cut,
        drain_timeout_s: 3.0,
        ..Template::SEED
    };
    w.initial_pods(3, tpl);
    for h in [0.5, 2.0, 3.6] {
        w.rollout(w.start + secs(h * 3600.0), tpl);
    }
    traffic(
        &mut w,
        scaled(180, scale),
        &[
            (Kind::Browser, 0.77),
            (Kind::WsBlocked, 0.20),
            (Kind::WsOnly, 0.03),
        ],
        usual(),
    );
    clients::scanners(&mut w, 5.0);
    let mut rng = Rng::new(seed ^ 13);
    finish(
        "h5-short-drain",
        "sockproxy's --drain-timeout 3 while theia keeps serving (preStop sleep): three \
         rollouts cut every open tunnel (closed_by shutdown) and pending long-poll mid-traffic; \
         long-polling clients return with their old sid to another pod and are refused",
        w,
        Plan::Kubectl { timestamps: true },
        [
            r(H1_OK),
            r(
                "between rollouts sessions stay on their issuing pod; cross-pod refusals come \
               only right after a drain, for the drained pod's sids",
            ),
            e(H3_UNSEEN),
            r(H4_OK),
            c(
                "every drain is cut short (drained=false): tunnels closed by shutdown and \
               long-polls cut while busy, then refusals of the drained pods' sids",
            ),
            r(H6_LONG),
        ],
        &mut rng,
    )
}

fn h5_normal_rollouts(seed: u64, k: u64, scale: f64) -> Case {
    let mut w = World::new(seed, morning(k), 3.0, 3);
    w.initial_pods(4, Template::SEED);
    for h in [0.4, 1.1, 1.8, 2.5] {
        w.rollout(w.start + secs(h * 3600.0), Template::SEED);
    }
    traffic(
        &mut w,
        scaled(240, scale),
        &[
            (Kind::Browser, 0.85),
            (Kind::WsBlocked, 0.10),
            (Kind::WsOnly, 0.05),
        ],
        usual(),
    );
    clients::scanners(&mut w, 5.0);
    let mut rng = Rng::new(seed ^ 14);
    finish(
        "h5-normal-rollouts",
        "a busy deploy day: four normal rollouts of 4 pods; readiness on sockproxy's /readyz, \
         so each new pod answers its first requests with sockproxy's own 502 until theia is up; \
         theia closes sessions at SIGTERM and every drain finishes",
        w,
        Plan::Mixed,
        [
            r(H1_OK),
            r(H2_OK),
            e(H3_UNSEEN),
            r(H4_OK),
            n(
                "every drain finished (drained=true) with sessions closed by theia and clients \
               back through fresh handshakes; startup 502s come before theia is up",
            ),
            n("rollouts every 40 minutes end tunnels at varied lifetimes"),
        ],
        &mut rng,
    )
}

fn h6_lb_timeout_30(seed: u64, k: u64, scale: f64) -> Case {
    let mut w = World::new(seed, morning(k), 2.0, 2);
    w.lb_timeout = 30.0;
    w.initial_pods(3, Template::SEED);
    traffic(
        &mut w,
        scaled(60, scale),
        &[
            (Kind::Browser, 0.88),
            (Kind::WsBlocked, 0.08),
            (Kind::WsOnly, 0.04),
        ],
        uniform(120.0, 1500.0),
    );
    clients::scanners(&mut w, 4.0);
    let mut rng = Rng::new(seed ^ 15);
    finish(
        "h6-lb-timeout-30",
        "no BackendConfig timeoutSec: the LB's default 30 s ends every websocket at 30 s \
         (closed by the client side); socket.io reconnects each time; idle long-polls held \
         just past 30 s are cut too",
        w,
        Plan::CloudArray,
        [
            r("websockets with Upgrade get 101"),
            r(H2_OK),
            e(H3_UNSEEN),
            r(H4_OK),
            e(H5_NONE),
            c(
                "every tunnel that outlived the others ends at 29.9-30.0 s, closed by the \
               client side, followed by a new handshake; long-polls cut at 30.0 s then \
               \"Session ID unknown\" on the same pod",
            ),
        ],
        &mut rng,
    )
}

fn h6_lb_timeout_60(seed: u64, k: u64, scale: f64) -> Case {
    let mut w = World::new(seed, morning(k), 3.0, 2);
    w.lb_timeout = 60.0;
    w.initial_pods(2, Template::SEED);
    traffic(
        &mut w,
        scaled(75, scale),
        &[
            (Kind::Browser, 0.35),
            (Kind::WsBlocked, 0.62),
            (Kind::WsOnly, 0.03),
        ],
        uniform(120.0, 1800.0),
    );
    clients::scanners(&mut w, 4.0);
    let mut rng = Rng::new(seed ^ 16);
    finish(
        "h6-lb-timeout-60",
        "timeoutSec 60, most clients on long-polling (websockets blocked by their networks): \
         the fewer tunnels all end at 60 s and reconnect",
        w,
        Plan::Kubectl { timestamps: false },
        [
            r("websockets with Upgrade get 101"),
            r(H2_OK),
            e(H3_UNSEEN),
            r(H4_OK),
            e(H5_NONE),
            c(
                "every tunnel whose tab stayed open ends at 59.9-60.0 s, closed by the client \
               side, and reconnects",
            ),
        ],
        &mut rng,
    )
}

fn h6_tab_closes(seed: u64, k: u64, scale: f64) -> Case {
    let mut w = World::new(seed, morning(k), 5.0, 2);
    w.initial_pods(2, Template::SEED);
    traffic(
        &mut w,
        scaled(420, scale),
        NORMAL_MIX,
        |rng: &mut Rng, _| {
            if rng.chance(0.5) {
                secs(rng.range(8.0, 300.0))
            } else {
                clients::visit_length(rng)
            }
        },
    );
    clients::scanners(&mut w, 5.0);
    let mut rng = Rng::new(seed ^ 17);
    finish(
        "h6-tab-closes",
        "2 pods, timeoutSec 86400: tabs close at random lifetimes (many within minutes, some \
         by chance near 30 s) while others keep their websocket for hours",
        w,
        Plan::PerPod(Fmt::Timestamps),
        [
            r(H1_OK),
            r(H2_OK),
            e(H3_UNSEEN),
            r(H4_OK),
            e(H5_NONE),
            r(
                "lifetimes spread from seconds to hours (closed by tab closes); many tunnels \
               lived over an hour, far beyond 30 s, 60 s or 3600 s",
            ),
        ],
        &mut rng,
    )
}

fn h6_four_of_fifty(seed: u64, k: u64, _scale: f64) -> Case {
    let mut w = World::new(seed, morning(k), 6.0, 1);
    w.initial_pods(1, Template::SEED);
    let mut rng = Rng::new(seed ^ 18);
    for j in 0..50 {
        let kind = if j % 12 == 5 {
            Kind::Cut60
        } else {
            Kind::Browser
        };
        let mut c = Client::new(&mut w, kind);
        let t0 = w.start + secs(rng.range(60.0, 1.5 * 3600.0));
        let leave = if kind == Kind::Cut60 {
            // Cut at 60 s by their proxy; back on once, then they leave.
            t0 + secs(rng.range(68.0, 90.0))
        } else {
            t0 + secs(rng.range(1.2 * 3600.0, 4.0 * 3600.0))
        };
        clients::visit(&mut w, &mut c, t0, leave);
    }
    finish(
        "h6-four-of-fifty",
        "one pod, 50 tabs: 4 sit behind a proxy that ends websockets at 60 s (their tunnels \
         end at ~60 s), the other 46 keep theirs for hours",
        w,
        Plan::PerPod(Fmt::Plain),
        [
            r("websockets with Upgrade get 101"),
            e(H2_ONE_POD),
            e(H3_UNSEEN),
            r(H4_OK),
            e(H5_NONE),
            i(
                "4 tunnels end at ~60 s (a cut-off on their path), but 46 outlive 60 s by \
               hours: the LB timeout is not 60 s; neither confirmed nor ruled out",
            ),
        ],
        &mut rng,
    )
}

fn multi_h2_h6(seed: u64, k: u64, scale: f64) -> Case {
    let mut w = World::new(seed, morning(k), 2.0, 2);
    w.affinity = false;
    w.lb_timeout = 30.0;
    w.initial_pods(2, Template::SEED);
    traffic(
        &mut w,
        scaled(30, scale),
        &[(Kind::Browser, 0.95), (Kind::WsBlocked, 0.05)],
        uniform(60.0, 480.0),
    );
    clients::scanners(&mut w, 4.0);
    let mut rng = Rng::new(seed ^ 19);
    finish(
        "multi-h2-h6",
        "two causes: no affinity over 2 pods (code 1 refusals across pods) and the default \
         30 s timeoutSec (the websockets that do open end at 30 s)",
        w,
        Plan::Kubectl { timestamps: true },
        [
            r("upgrades reaching the issuing pod carry Upgrade and get 101"),
            c(
                "about half of the sessions' later requests reach the other pod, which never \
               issued their sid, and get code 1, all the time",
            ),
            e(H3_UNSEEN),
            r(H4_OK),
            e(H5_NONE),
            c(
                "every websocket that outlives its upgrade's first second (the others die \
               with their session) ends at 29.9-30.0 s, closed by the client side",
            ),
        ],
        &mut rng,
    )
}

fn multi_h1_h5(seed: u64, k: u64, scale: f64) -> Case {
    let mut w = World::new(seed, morning(k), 3.0, 3);
    let tpl = Template {
        drain: Drain::Cut,
        drain_timeout_s: 3.0,
        nginx: Nginx {
            pass_upgrade: false,
            ..Nginx::SEED
        },
        ..Template::SEED
    };
    w.initial_pods(3, tpl);
    for h in [0.6, 1.5, 2.4] {
        w.rollout(w.start + secs(h * 3600.0), tpl);
    }
    traffic(
        &mut w,
        scaled(80, scale),
        &[(Kind::Browser, 0.95), (Kind::WsBlocked, 0.05)],
        uniform(120.0, 1800.0),
    );
    clients::scanners(&mut w, 4.0);
    let mut rng = Rng::new(seed ^ 20);
    finish(
        "multi-h1-h5",
        "two causes: the pod nginx drops Upgrade (everyone long-polls) and a 3 s drain cuts \
         the pending long-polls at every rollout; clients return with old sids and are refused",
        w,
        Plan::Mixed,
        [
            c(
                "every browser websocket attempt arrives with Sec-WebSocket-Key but no Upgrade \
               and is refused with code 3",
            ),
            r("between rollouts long-polling sessions stay on their issuing pod"),
            e(H3_UNSEEN),
            r(H4_OK),
            c(
                "every drain is cut short (drained=false) with long-polls pending; the drained \
               pods' sids are refused elsewhere right after",
            ),
            n("no websocket opened; polls end at the server's ping"),
        ],
        &mut rng,
    )
}

fn multi_h4_h6(seed: u64, k: u64, scale: f64) -> Case {
    let mut w = World::new(seed, morning(k), 2.0, 2);
    w.lb_timeout = 30.0;
    let tpl = Template {
        nginx: Nginx {
            fixed_host: Some("localhost:3000"),
            ..Nginx::SEED
        },
        ..Template::SEED
    };
    w.initial_pods(3, tpl);
    traffic(
        &mut w,
        scaled(70, scale),
        &[(Kind::WsOnly, 0.5), (Kind::Browser, 0.5)],
        uniform(60.0, 1200.0),
    );
    clients::scanners(&mut w, 4.0);
    let mut rng = Rng::new(seed ^ 21);
    finish(
        "multi-h4-h6",
        "two causes: Host rewritten to localhost:3000 (websocket-only clients refused with \
         code 4) and the default 30 s timeoutSec (polling-first tabs' websockets end at 30 s)",
        w,
        Plan::PerPod(Fmt::Timestamps),
        [
            r("polling-first tabs upgrade with Upgrade and get 101"),
            r(H2_OK),
            e(H3_UNSEEN),
            c(
                "every handshake with an Origin is refused with code 4 while Host is \
               localhost:3000: half the clients never connect",
            ),
            e(H5_NONE),
            c("every websocket that opens ends at 29.9-30.0 s, closed by the client side"),
        ],
        &mut rng,
    )
}

/// The timing case: 10 pods, 6 hours, a normal day (~200k records at scale 1).
pub fn large(seed: u64, scale: f64) -> Case {
    let mut w = World::new(seed ^ 0x1A56E, morning(40), 6.0, 5);
    w.hc = Some(HC_OK);
    w.probe = Probe::ViaNginx("/");
    let tpl = Template {
        log_all: true,
        ..Template::SEED
    };
    w.initial_pods(10, tpl);
    w.rollout(w.start + secs(3.0 * 3600.0), tpl);
    traffic(&mut w, scaled(6500, scale), NORMAL_MIX, usual());
    clients::health_checks(&mut w);
    clients::scanners(&mut w, 10.0);
    let mut rng = Rng::new(seed ^ 0x1A56E);
    finish(
        "large",
        "10 pods, 6 hours, a normal day with --log-all: for timing",
        w,
        Plan::Kubectl { timestamps: true },
        [
            r(H1_OK),
            r(H2_OK),
            r(H3_OK),
            r(H4_OK),
            n(H5_NORMAL),
            r(H6_LONG),
        ],
        &mut rng,
    )
}
