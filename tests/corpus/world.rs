//! The simulated cluster: pods with their sockproxy processes and lifecycles, the load
//! balancer's routing, and each pod's records in the order its sink wrote them.
//!
//! Time is true time in microseconds since the UNIX epoch ([`T`]); each node's clock is
//! off by a fixed skew, and a record's `time` is read from its node's clock.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sockproxy::record::{ClosedBy, Record};

use super::records::{self, Config, Ex, Slot, TunnelEnd};
use super::rng::Rng;

/// Microseconds since the UNIX epoch, true time.
pub type T = i64;
pub const MS: T = 1_000;
pub const SEC: T = 1_000_000;
pub const MIN: T = 60 * SEC;
pub const HOUR: T = 60 * MIN;

pub fn secs(s: f64) -> T {
    (s * SEC as f64).round() as T
}

pub fn dur(us: T) -> Duration {
    Duration::from_micros(us.max(0) as u64)
}

pub fn system_time(t: T) -> SystemTime {
    UNIX_EPOCH + dur(t)
}

/// What happens to a pod's open sessions after SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Theia closes its sessions within a second or two of SIGTERM (websockets closed by
    /// the upstream, pending long-polls answered with engine.io's close packet); the
    /// sidecar's drain ends well before its deadline.
    Graceful,
    /// Theia keeps serving (a preStop sleep) while the sidecar's short `--drain-timeout`
    /// runs out: open tunnels are closed by shutdown, pending long-polls cut.
    Cut,
}

/// How the pod's nginx forwards headers to sockproxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nginx {
    /// The seed's `proxy_set_header Upgrade $http_upgrade; Connection "upgrade"`.
    /// Without them nginx sends `Connection: close` and drops the hop-by-hop `Upgrade`.
    pub pass_upgrade: bool,
    /// `proxy_set_header Host`: `None` for the seed's `$host`, else a fixed value.
    pub fixed_host: Option<&'static str>,
    /// `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for` and friends; nginx's
    /// bare defaults pass the LB's X-Forwarded-* unchanged and add no X-Real-IP.
    pub forwarded_headers: bool,
}

impl Nginx {
    pub const SEED: Nginx = Nginx {
        pass_upgrade: true,
        fixed_host: None,
        forwarded_headers: true,
    };
}

/// How the load balancer's health check treats the pods.
#[derive(Debug, Clone, Copy)]
pub struct HealthCheck {
    /// Path GoogleHC asks for (the serving port: nginx → sockproxy → theia).
    pub path: &'static str,
    /// From this time on, every check on every pod gets `fail_status`; the LB then
    /// marks every backend unhealthy and answers browsers itself (they never reach a pod).
    pub fail_from: Option<T>,
    pub fail_path: &'static str,
    pub fail_status: u16,
    /// One check, on one pod, that times out (a theia stall): a single failure.
    pub transient: Option<T>,
}

/// Where the kubelet's readiness probe goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// sockproxy's admin `/readyz`: no exchange record, and the pod is ready as soon as
    /// sockproxy is, before theia (so early browser requests get sockproxy's own 502).
    Admin,
    /// nginx's serving port, this path: through sockproxy to theia; failing (502) until
    /// theia is up, and the pod is ready only then.
    ViaNginx(&'static str),
}

/// One pod: one sockproxy process (and the theia and nginx beside it).
#[derive(Debug)]
pub struct Pod {
    pub name: String,
    pub ip: String,
    pub node: usize,
    pub cfg: Config,
    /// The `listening` record.
    pub start: T,
    /// Theia accepts connections from here on.
    pub theia_up: T,
    /// In the load balancer's rotation from here on.
    pub ready: T,
    /// SIGTERM: leaves the rotation, `draining`.
    pub term: Option<T>,
    pub drain: Drain,
    /// When theia closes its sessions after SIGTERM ([`Drain::Graceful`]).
    pub theia_close: T,
    pub nginx: Nginx,
    pub id_prefix: String,
    /// Theia's per-process connection token; a cookie from another process is refused.
    pub token: u64,
    issued: HashMap<String, T>,
    sid_seq: u32,
    port: u16,
    pending: Vec<Pending>,
    seq: u64,
}

#[derive(Debug)]
struct Pending {
    arrival: T,
    seq: u64,
    dur: T,
    item: Option<Box<Item>>,
}

#[derive(Debug)]
struct Item {
    ex: Ex,
    tunnel: Option<(T, TunnelEnd)>,
}

impl Pod {
    /// When the pod's open sessions end because of its SIGTERM, if it gets one.
    pub fn session_end(&self) -> Option<T> {
        self.term.map(|t| match self.drain {
            Drain::Graceful => self.theia_close,
            Drain::Cut => t + secs(self.cfg.drain_timeout_s),
        })
    }

    /// How a tunnel open at [`Pod::session_end`] ends.
    pub fn drain_closes_by(&self) -> ClosedBy {
        match self.drain {
            Drain::Graceful => ClosedBy::Upstream,
            Drain::Cut => ClosedBy::Shutdown,
        }
    }

    /// True while the LB may send this pod new requests.
    pub fn in_rotation(&self, t: T) -> bool {
        self.ready <= t && self.term.is_none_or(|term| t < term)
    }

    /// True while sockproxy accepts connections.
    pub fn accepting(&self, t: T) -> bool {
        self.start <= t && self.term.is_none_or(|term| t < term)
    }

    /// A new engine.io sid, as engine.io's base64id makes them: random, then a
    /// per-process sequence number.
    pub fn new_sid(&mut self, rng: &mut Rng) -> String {
        const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut sid = rng.chars(B64URL, 16);
        let n = self.sid_seq;
        self.sid_seq += 1;
        for shift in [18, 12, 6, 0] {
            sid.push(B64URL[((n >> shift) & 63) as usize] as char);
        }
        sid
    }

    /// The sidecar learns `sid` at `t` (from a handshake answer or a first frame).
    pub fn learn(&mut self, sid: &str, t: T) {
        self.issued.entry(sid.to_string()).or_insert(t);
    }

    /// Whether this sidecar had seen `sid` issued by `t`.
    pub fn issued_here(&self, sid: &str, t: T) -> bool {
        self.issued.get(sid).is_some_and(|at| *at <= t)
    }

    /// An exchange that arrived at `arrival` and ended `dur` later; recorded when
    /// `record` (socket.io paths, sockproxy's own answers, or `--log-all`).
    pub fn exchange(&mut self, arrival: T, dur: T, ex: Ex, record: bool) {
        self.seq += 1;
        self.pending.push(Pending {
            arrival,
            seq: self.seq,
            dur,
            item: record.then(|| Box::new(Item { ex, tunnel: None })),
        });
    }

    /// An upgrade (101 sent `dur` after `arrival`) whose tunnel ended at `end.0`.
    pub fn upgrade(&mut self, arrival: T, dur: T, ex: Ex, end: (T, TunnelEnd)) {
        self.seq += 1;
        self.pending.push(Pending {
            arrival,
            seq: self.seq,
            dur,
            item: Some(Box::new(Item {
                ex,
                tunnel: Some(end),
            })),
        });
    }
}

/// A pod's records in sink order, each with its true time and its node-clock time.
#[derive(Debug, Clone)]
pub struct PodLog {
    pub pod: String,
    /// The pod was gone before the logs were collected (only Cloud Logging has it).
    pub gone: bool,
    pub lines: Vec<Line>,
}

#[derive(Debug, Clone)]
pub struct Line {
    /// True time.
    pub at: T,
    /// The node's clock at that moment (the record's `time`).
    pub clock: T,
    pub text: Vec<u8>,
    /// True for listening / draining / stopped: never damaged by the format noise.
    pub lifecycle: bool,
    /// True for a plain 200 poll or health check, the kind of line whose loss changes
    /// nothing: the format noise may damage it.
    pub expendable: bool,
}

/// The cluster being simulated.
pub struct World {
    pub rng: Rng,
    pub start: T,
    /// When the logs were collected: nothing later is written.
    pub end: T,
    pub pods: Vec<Pod>,
    pub node_skew: Vec<T>,
    pub affinity: bool,
    /// The LB's backend service `timeoutSec`.
    pub lb_timeout: f64,
    pub hc: Option<HealthCheck>,
    pub probe: Probe,
    pub project: Option<&'static str>,
    /// Theia ≥ 1.73: `allowRequest` refuses handshakes whose Origin host is not Host.
    pub origin_check: bool,
    /// Theia ≥ 1.73's connection-token check (a per-process cookie) is enforced.
    pub token_check: bool,
    pub public_host: &'static str,
    pub lb_ip: &'static str,
    /// Counters for the case's description.
    pub visits: u64,
    pub sessions: u64,
}

/// What makes a new pod differ from the ones before it (a rollout's new template).
#[derive(Debug, Clone, Copy)]
pub struct Template {
    pub log_all: bool,
    pub drain: Drain,
    pub drain_timeout_s: f64,
    pub nginx: Nginx,
    /// Seconds theia takes to start after sockproxy listens.
    pub theia_boot: (f64, f64),
}

impl Template {
    pub const SEED: Template = Template {
        log_all: false,
        drain: Drain::Graceful,
        drain_timeout_s: 25.0,
        nginx: Nginx::SEED,
        theia_boot: (6.0, 20.0),
    };
}

const POD_SUFFIX: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

impl World {
    pub fn new(seed: u64, start: T, hours: f64, nodes: usize) -> World {
        let mut rng = Rng::new(seed);
        let node_skew = (0..nodes).map(|_| rng.int(-2 * SEC, 2 * SEC)).collect();
        World {
            rng,
            start,
            end: start + secs(hours * 3600.0),
            pods: Vec::new(),
            node_skew,
            affinity: true,
            lb_timeout: 86_400.0,
            hc: None,
            probe: Probe::Admin,
            project: None,
            origin_check: true,
            token_check: false,
            public_host: "ide.example.com",
            lb_ip: "34.8.51.57",
            visits: 0,
            sessions: 0,
        }
    }

    /// A ReplicaSet's pod-template hash.
    pub fn template_hash(&mut self) -> String {
        self.rng.chars(b"0123456789bcdf", 9)
    }

    /// Starts a pod of ReplicaSet `hash` at `at` (container start): returns its index.
    pub fn add_pod(&mut self, hash: &str, at: T, tpl: Template) -> usize {
        let node = self.rng.below(self.node_skew.len() as u64) as usize;
        let name = format!("theia-{hash}-{}", self.rng.chars(POD_SUFFIX, 5));
        let ip = format!("10.8.{}.{}", node + 1, self.rng.int(2, 250));
        let start = at + secs(self.rng.range(0.8, 3.0));
        let theia_up = start + secs(self.rng.range(tpl.theia_boot.0, tpl.theia_boot.1));
        let ready = match self.probe {
            // The readiness gate: ready once /readyz answers, then the NEG attaches.
            Probe::Admin => start + secs(self.rng.range(1.0, 4.0)),
            Probe::ViaNginx(_) => theia_up + secs(self.rng.range(1.0, 10.0)),
        };
        let id_prefix = self.rng.hex(6);
        let port = self.rng.int(32768, 60000) as u16;
        let token = self.rng.u64();
        self.pods.push(Pod {
            name,
            ip,
            node,
            cfg: Config {
                listen: "127.0.0.1:3000".into(),
                admin: Some("0.0.0.0:9901".into()),
                upstream: "127.0.0.1:3001".into(),
                log_all: tpl.log_all,
                drain_timeout_s: tpl.drain_timeout_s,
            },
            start,
            theia_up,
            ready,
            term: None,
            drain: tpl.drain,
            theia_close: 0,
            nginx: tpl.nginx,
            id_prefix,
            token,
            issued: HashMap::new(),
            sid_seq: 0,
            port,
            pending: Vec::new(),
            seq: 0,
        });
        self.pods.len() - 1
    }

    /// SIGTERM to pod `p` at `at`.
    pub fn terminate(&mut self, p: usize, at: T) {
        let close = at + secs(self.rng.range(0.3, 1.6));
        let pod = &mut self.pods[p];
        pod.term = Some(at);
        pod.theia_close = close;
    }

    /// `n` pods that were already running at the start.
    pub fn initial_pods(&mut self, n: usize, tpl: Template) -> String {
        let hash = self.template_hash();
        for _ in 0..n {
            // Up long before the window, and before the traffic that leads into it.
            let at = self.start - secs(self.rng.range(3.0 * 3600.0, 14.0 * 3600.0));
            let p = self.add_pod(&hash, at, tpl);
            // Logs from before the window are not part of the case; the pod is up.
            let pod = &mut self.pods[p];
            pod.theia_up = pod.start + secs(10.0);
            pod.ready = pod.theia_up + secs(5.0);
        }
        hash
    }

    /// A rolling update at `at` (maxSurge 1, maxUnavailable 0): for each running pod,
    /// a new pod starts; when it is ready, the old one gets SIGTERM.
    pub fn rollout(&mut self, at: T, tpl: Template) {
        let hash = self.template_hash();
        let old: Vec<usize> = (0..self.pods.len())
            .filter(|&p| self.pods[p].term.is_none() && self.pods[p].start < at)
            .collect();
        let mut t = at;
        for p in old {
            let q = self.add_pod(&hash, t, tpl);
            let kill = self.pods[q].ready + secs(self.rng.range(1.0, 6.0));
            self.terminate(p, kill);
            t = kill + secs(self.rng.range(0.5, 3.0));
        }
    }

    /// The pod the LB sends a new request to, if any (`None`: no healthy backend, the
    /// LB answers itself and no pod sees the request).
    pub fn route(&mut self, sticky: &mut Option<usize>, t: T) -> Option<usize> {
        if let Some(hc) = self.hc
            && let Some(from) = hc.fail_from
            // Two failed checks (NEG: unhealthy threshold 2, every 15 s) and it is out.
            && t >= from + 30 * SEC
        {
            return None;
        }
        if self.affinity
            && let Some(p) = *sticky
            && self.pods[p].in_rotation(t)
        {
            return Some(p);
        }
        let live: Vec<usize> = (0..self.pods.len())
            .filter(|&p| self.pods[p].in_rotation(t))
            .collect();
        if live.is_empty() {
            return None;
        }
        let p = self.rng.pick(&live);
        if self.affinity {
            *sticky = Some(p);
        }
        Some(p)
    }

    /// Each pod's records in the order its sink wrote them, up to the end of the window.
    pub fn finish(mut self) -> Vec<PodLog> {
        let end = self.end;
        let project = self.project;
        let mut logs = Vec::new();
        for pod in &mut self.pods {
            if pod.start > end {
                continue;
            }
            let skew = self.node_skew[pod.node];
            let mut out: Vec<(T, u64, Record, bool, bool)> = Vec::new();
            let mut k = 0u64;
            let mut push = |at: T, rec: Record, lifecycle: bool, expendable: bool| {
                k += 1;
                out.push((at, k, rec, lifecycle, expendable));
            };
            let in_window = pod.start >= self.start;
            if in_window {
                push(pod.start, records::listening(&pod.cfg), true, false);
            }
            pod.pending.sort_by_key(|p| (p.arrival, p.seq));
            // A pod running since before the window has served requests already.
            let mut next_id = if in_window {
                0
            } else {
                self.rng.int(500, 60_000) as u64
            };
            let (mut open_tunnels, mut open_requests) = (0u64, 0u64);
            // Exchanges and tunnels the drain deadline cut, and the last natural end of
            // what was open at SIGTERM.
            let (mut shut_tunnels, mut shut_requests) = (0u64, 0u64);
            let mut last_open_end = 0;
            let term = pod.term.filter(|t| *t <= end);
            for p in &pod.pending {
                next_id += 1;
                pod.port = if pod.port >= 60_997 {
                    32_768 + (pod.port % 7)
                } else {
                    pod.port + 2
                };
                let done = p.arrival + p.dur;
                let open_at_term = |until: T| term.is_some_and(|t| p.arrival <= t && t < until);
                let Some(item) = &p.item else {
                    if open_at_term(done) {
                        open_requests += 1;
                        last_open_end = last_open_end.max(done);
                    }
                    continue;
                };
                let slot = Slot {
                    id: format!("{}-{next_id}", pod.id_prefix),
                    conn: next_id,
                    client: format!("127.0.0.1:{}", pod.port),
                };
                match &item.tunnel {
                    Some((closed, t_end)) => {
                        if term.is_some_and(|t| done <= t && t < *closed) {
                            open_tunnels += 1;
                            last_open_end = last_open_end.max(*closed);
                        }
                        if t_end.closed_by == ClosedBy::Shutdown {
                            shut_tunnels += 1;
                        }
                    }
                    None => {
                        if open_at_term(done) {
                            open_requests += 1;
                            last_open_end = last_open_end.max(done);
                        }
                        if item.ex.outcome == sockproxy::record::Outcome::Shutdown {
                            shut_requests += 1;
                        }
                    }
                }
                // Only what was written inside the window is in the logs: a tunnel
                // opened before it shows only its end.
                let closed = item.tunnel.as_ref().map(|(c, _)| *c);
                let last = closed.unwrap_or(done);
                if done > end || last < self.start {
                    continue;
                }
                let (rec, info) = records::exchange(&item.ex, &slot, dur(p.dur), project);
                if done >= self.start {
                    let expendable = !item.ex.upgrade
                        && item.ex.status == 200
                        && item.ex.query.as_deref().is_none_or(|q| q.contains("sid="))
                        && item.ex.method == "GET";
                    push(done, rec, false, expendable);
                }
                if let (Some(info), Some((closed, t_end))) = (info, &item.tunnel)
                    && *closed <= end
                {
                    push(*closed, records::tunnel_closed(&info, t_end), false, false);
                }
            }
            if let Some(term) = term {
                push(
                    term,
                    records::draining(open_tunnels, open_requests, pod.cfg.drain_timeout_s),
                    true,
                    false,
                );
                let deadline = term + secs(pod.cfg.drain_timeout_s);
                let drained = shut_tunnels + shut_requests == 0;
                let stop = if !drained {
                    deadline + self.rng.int(300, 3000)
                } else if open_tunnels + open_requests == 0 {
                    term + self.rng.int(100, 900)
                } else {
                    last_open_end + self.rng.int(200, 9000)
                };
                if stop <= end {
                    push(
                        stop,
                        records::stopped(drained, shut_tunnels, dur(stop - pod.start)),
                        true,
                        false,
                    );
                }
            }
            out.sort_by_key(|(at, k, ..)| (*at, *k));
            let lines = out
                .into_iter()
                .map(|(at, _, rec, lifecycle, expendable)| Line {
                    at,
                    clock: at + skew,
                    text: sockproxy::sink::line_at(
                        &rec,
                        Some(&pod.name),
                        Some(&pod.ip),
                        system_time(at + skew),
                    ),
                    lifecycle,
                    expendable,
                })
                .collect();
            logs.push(PodLog {
                pod: pod.name.clone(),
                gone: term.is_some(),
                lines,
            });
        }
        logs
    }
}
