//! The ways records reach whoever runs `sockproxy report`: a pod's stdout saved as is,
//! `kubectl logs --prefix` / `--timestamps`, and Cloud Logging exports; plus the damage
//! real collections carry (stderr lines, truncated and garbled lines).

use serde_json::{Map, Value, json};

use super::rng::Rng;
use super::world::{Line, MS, PodLog, T, system_time};

/// How one pod's records were collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fmt {
    /// `kubectl logs POD > POD.log`: the lines as written (stdout and stderr).
    Plain,
    /// `kubectl logs --timestamps`: the runtime's RFC 3339 nanosecond time first.
    Timestamps,
    /// `kubectl logs -l app=theia --prefix`: `[pod/NAME/sockproxy] ` first.
    Prefix,
    /// `--prefix --timestamps`.
    PrefixTimestamps,
    /// A Cloud Logging sink: one LogEntry per line, `pod` only in the resource labels.
    CloudLines,
    /// `gcloud logging read --format=json`: one pretty-printed array, newest first.
    CloudArray,
}

impl Fmt {
    pub fn name(self) -> &'static str {
        match self {
            Fmt::Plain => "plain",
            Fmt::Timestamps => "kubectl --timestamps",
            Fmt::Prefix => "kubectl --prefix",
            Fmt::PrefixTimestamps => "kubectl --prefix --timestamps",
            Fmt::CloudLines => "Cloud Logging sink (JSON lines)",
            Fmt::CloudArray => "gcloud logging read --format=json",
        }
    }

    fn cloud(self) -> bool {
        matches!(self, Fmt::CloudLines | Fmt::CloudArray)
    }
}

/// One file of a case.
#[derive(Debug, Clone)]
pub struct File {
    pub name: String,
    pub fmt: Fmt,
    pub bytes: Vec<u8>,
    /// Lines damaged or added by [`damage`].
    pub damaged: usize,
}

/// RFC 3339 with nanoseconds, as containerd stamps lines.
fn nanos(t: T, extra_ns: u32) -> String {
    let micros = humantime::format_rfc3339_micros(system_time(t)).to_string();
    // `…T12:00:00.123456Z` → `…T12:00:00.123456789Z`
    format!("{}{:03}Z", &micros[..micros.len() - 1], extra_ns % 1000)
}

/// A tracing line sockproxy writes to stderr (kubectl logs shows both streams).
fn stderr_line(rng: &mut Rng, t: T) -> Vec<u8> {
    let msg = rng.pick(&[
        "WARN sockproxy::server: accept failed error=Too many open files (os error 24)",
        "WARN sockproxy::proxy: upstream failed error=connect failed: Connection refused (os error 111)",
        "WARN sockproxy::sink: stdout blocked, records queued",
    ]);
    format!(
        "{}  {msg}\n",
        humantime::format_rfc3339_micros(system_time(t))
    )
    .into_bytes()
}

/// The Cloud Logging entry for one record line: `time`, `severity`, `httpRequest` and
/// the `logging.googleapis.com/*` keys move out of `jsonPayload`, as the agent does.
fn entry(line: &Line, pod: &str, keep_pod: bool, rng: &mut Rng) -> Value {
    let mut payload: Map<String, Value> =
        serde_json::from_slice(&line.text).expect("the sink writes JSON objects");
    let time = payload.remove("time").unwrap_or(Value::Null);
    let severity = payload.remove("severity").unwrap_or(Value::Null);
    let http = payload.remove("httpRequest");
    let trace = payload.remove("logging.googleapis.com/trace");
    let span = payload.remove("logging.googleapis.com/spanId");
    if !keep_pod {
        payload.remove("pod");
    }
    let receive = line.at + rng.int(300 * MS, 4000 * MS);
    let mut e = json!({
        "insertId": rng.hex(16),
        "jsonPayload": payload,
        "resource": {
            "type": "k8s_container",
            "labels": {
                "project_id": "coditect-prod",
                "location": "us-central1",
                "cluster_name": "coditect",
                "namespace_name": "coditect-app",
                "pod_name": pod,
                "container_name": "sockproxy",
            }
        },
        "timestamp": time,
        "severity": severity,
        "labels": {
            "compute.googleapis.com/resource_name": "gke-coditect-pool-1-6f1c2a9e-x7kq",
            "k8s-pod/app": "theia",
        },
        "logName": "projects/coditect-prod/logs/stdout",
        "receiveTimestamp": nanos(receive, rng.below(1000) as u32),
    });
    let obj = e.as_object_mut().expect("an object");
    if let Some(h) = http {
        obj.insert("httpRequest".into(), h);
    }
    if let Some(t) = trace {
        obj.insert("trace".into(), t);
    }
    if let Some(s) = span {
        obj.insert("spanId".into(), s);
    }
    e
}

/// Writes the pods in `pods` (in that order, as `kubectl logs -l` does) into one file.
pub fn write(name: &str, fmt: Fmt, pods: &[&PodLog], rng: &mut Rng) -> File {
    let mut bytes = Vec::new();
    match fmt {
        Fmt::CloudArray => {
            let mut all: Vec<(T, Value)> = Vec::new();
            for p in pods {
                for l in &p.lines {
                    all.push((l.clock, entry(l, &p.pod, true, rng)));
                }
            }
            // Newest first, by the entry's timestamp (the pod's clock).
            all.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
            let arr = Value::Array(all.into_iter().map(|(_, v)| v).collect());
            bytes = serde_json::to_vec_pretty(&arr).expect("serialisable");
            bytes.push(b'\n');
        }
        Fmt::CloudLines => {
            let mut all: Vec<(T, Vec<u8>)> = Vec::new();
            for p in pods {
                for l in &p.lines {
                    let mut v =
                        serde_json::to_vec(&entry(l, &p.pod, false, rng)).expect("serialisable");
                    v.push(b'\n');
                    all.push((l.clock, v));
                }
            }
            all.sort_by_key(|(t, _)| *t);
            for (_, v) in all {
                bytes.extend_from_slice(&v);
            }
        }
        _ => {
            for p in pods {
                for l in &p.lines {
                    match fmt {
                        Fmt::Prefix | Fmt::PrefixTimestamps => {
                            bytes.extend_from_slice(
                                format!("[pod/{}/sockproxy] ", p.pod).as_bytes(),
                            );
                        }
                        _ => {}
                    }
                    if matches!(fmt, Fmt::Timestamps | Fmt::PrefixTimestamps) {
                        let stamp = nanos(l.clock + rng.int(20, 3000), rng.below(1000) as u32);
                        bytes.extend_from_slice(stamp.as_bytes());
                        bytes.push(b' ');
                    }
                    bytes.extend_from_slice(&l.text);
                }
            }
        }
    }
    File {
        name: name.to_string(),
        fmt,
        bytes,
        damaged: 0,
    }
}

/// Damages up to `n` lines of a line-based file the way real collections are damaged:
/// a stderr line in between, a line cut short, a byte that is not UTF-8, a blank line,
/// a CRLF. Only lines marked expendable (a 200 poll or health check, whose loss changes
/// no verdict) are cut or garbled.
pub fn damage(file: &mut File, pods: &[&PodLog], n: usize, rng: &mut Rng) {
    if file.fmt == Fmt::CloudArray || n == 0 {
        return;
    }
    // Rebuild the file's lines with their expendable marks (the same order as `write`).
    let marks: Vec<(bool, T)> = if file.fmt.cloud() {
        let mut v: Vec<(bool, T)> = pods
            .iter()
            .flat_map(|p| {
                p.lines
                    .iter()
                    .map(|l| (l.expendable && !l.lifecycle, l.clock))
            })
            .collect();
        v.sort_by_key(|(_, t)| *t);
        v
    } else {
        pods.iter()
            .flat_map(|p| {
                p.lines
                    .iter()
                    .map(|l| (l.expendable && !l.lifecycle, l.clock))
            })
            .collect()
    };
    let mut lines: Vec<Vec<u8>> = file
        .bytes
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    if lines.len() != marks.len() || lines.is_empty() {
        return;
    }
    let expendable: Vec<usize> = (0..lines.len()).filter(|&i| marks[i].0).collect();
    let mut inserts: Vec<(usize, Vec<u8>)> = Vec::new();
    for _ in 0..n {
        let what = rng.below(5);
        match what {
            0 | 1 if !expendable.is_empty() => {
                let i = rng.pick(&expendable);
                let l = &mut lines[i];
                if what == 0 {
                    // Cut short: the rest of the line never made it.
                    let keep = rng.int(10, (l.len() as i64 - 2).max(11)) as usize;
                    l.truncate(keep.min(l.len() - 1));
                    l.push(b'\n');
                } else {
                    // A byte flipped into something that is not UTF-8.
                    let at = rng.int(1, (l.len() as i64 - 2).max(1)) as usize;
                    l[at] = 0xff;
                }
            }
            2 => {
                let i = rng.below(lines.len() as u64) as usize;
                let mut text = stderr_line(rng, marks[i].1);
                if matches!(file.fmt, Fmt::Prefix | Fmt::PrefixTimestamps) {
                    let prefix_end = lines[i].iter().position(|b| *b == b'{').unwrap_or(0);
                    let mut p = lines[i][..prefix_end].to_vec();
                    if file.fmt == Fmt::PrefixTimestamps {
                        // Keep `[pod/…] ` only; the stamp of the stderr line is its own.
                        if let Some(sp) = p.iter().position(|b| *b == b' ') {
                            p.truncate(sp + 1);
                        }
                        p.extend_from_slice(nanos(marks[i].1, 0).as_bytes());
                        p.push(b' ');
                    }
                    p.extend_from_slice(&text);
                    text = p;
                }
                inserts.push((i, text));
            }
            3 => {
                let i = rng.below(lines.len() as u64) as usize;
                inserts.push((i, b"\n".to_vec()));
            }
            _ => {
                let i = rng.below(lines.len() as u64) as usize;
                let l = &mut lines[i];
                if l.ends_with(b"\n") && !l.ends_with(b"\r\n") {
                    l.pop();
                    l.extend_from_slice(b"\r\n");
                }
            }
        }
        file.damaged += 1;
    }
    inserts.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
    for (i, text) in inserts {
        lines.insert(i, text);
    }
    file.bytes = lines.concat();
}
