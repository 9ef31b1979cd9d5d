//! The ways records reach whoever runs `sockproxy report`: a pod's stdout saved as is,
//! `kubectl logs --prefix` / `--timestamps`, and Cloud Logging exports; plus the damage
//! real collections carry (stderr lines, truncated and garbled lines).

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

/// The top-level members of a JSON object's text, as (key, raw value) slices.
fn members(obj: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out = Vec::with_capacity(24);
    let mut i = obj
        .iter()
        .position(|b| *b == b'{')
        .map_or(obj.len(), |p| p + 1);
    let structural = |b: &u8| matches!(b, b'"' | b'{' | b'}' | b'[' | b']' | b',');
    while i < obj.len() {
        // The key: a string without escapes (every key the sink writes is plain).
        let Some(q) = obj[i..].iter().position(|b| *b == b'"') else {
            break;
        };
        let k0 = i + q + 1;
        let Some(k1) = obj[k0..].iter().position(|b| *b == b'"').map(|p| k0 + p) else {
            break;
        };
        let v0 = k1 + 2; // past `":`
        let (mut depth, mut v1) = (0i32, v0);
        loop {
            let Some(k) = obj[v1..].iter().position(structural) else {
                v1 = obj.len();
                break;
            };
            v1 += k;
            match obj[v1] {
                b'"' => {
                    // Skip the string, and its escaped characters.
                    v1 += 1;
                    while let Some(k) = obj[v1..].iter().position(|c| *c == b'"' || *c == b'\\') {
                        v1 += k;
                        if obj[v1] == b'\\' {
                            v1 += 2;
                        } else {
                            break;
                        }
                    }
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth > 0 => depth -= 1,
                _ if depth == 0 => break,
                _ => {}
            }
            v1 += 1;
        }
        out.push((&obj[k0..k1], &obj[v0..v1]));
        i = v1 + 1;
    }
    out
}

/// The Cloud Logging entry for one record line: `time`, `severity`, `httpRequest` and
/// the `logging.googleapis.com/*` keys move out of `jsonPayload`, as the agent does.
/// Built as text: the payload keeps the sink's key order.
fn entry(line: &Line, pod: &str, keep_pod: bool, rng: &mut Rng) -> Vec<u8> {
    let text = line.text.strip_suffix(b"\n").unwrap_or(&line.text);
    let mut payload = b"{".to_vec();
    let (mut time, mut severity): (&[u8], &[u8]) = (b"null", b"null");
    let (mut http, mut trace, mut span) = (None, None, None);
    for (k, v) in members(text) {
        match k {
            b"time" => time = v,
            b"severity" => severity = v,
            b"httpRequest" => http = Some(v),
            b"logging.googleapis.com/trace" => trace = Some(v),
            b"logging.googleapis.com/spanId" => span = Some(v),
            b"pod" if !keep_pod => {}
            _ => {
                if payload.len() > 1 {
                    payload.push(b',');
                }
                payload.push(b'"');
                payload.extend_from_slice(k);
                payload.extend_from_slice(b"\":");
                payload.extend_from_slice(v);
            }
        }
    }
    payload.push(b'}');
    let receive = line.at + rng.int(300 * MS, 4000 * MS);
    let mut e = format!("{{\"insertId\":\"{}\",\"jsonPayload\":", rng.hex(16)).into_bytes();
    e.extend_from_slice(&payload);
    e.extend_from_slice(
        format!(
            ",\"resource\":{{\"type\":\"k8s_container\",\"labels\":{{\"project_id\":\"coditect-prod\",\
             \"location\":\"us-central1\",\"cluster_name\":\"coditect\",\"namespace_name\":\"coditect-app\",\
             \"pod_name\":\"{pod}\",\"container_name\":\"sockproxy\"}}}},\"timestamp\":"
        )
        .as_bytes(),
    );
    e.extend_from_slice(time);
    e.extend_from_slice(b",\"severity\":");
    e.extend_from_slice(severity);
    e.extend_from_slice(
        format!(
            ",\"labels\":{{\"compute.googleapis.com/resource_name\":\"gke-coditect-pool-1-6f1c2a9e-x7kq\",\
             \"k8s-pod/app\":\"theia\"}},\"logName\":\"projects/coditect-prod/logs/stdout\",\
             \"receiveTimestamp\":\"{}\"",
            nanos(receive, rng.below(1000) as u32)
        )
        .as_bytes(),
    );
    for (key, v) in [("httpRequest", http), ("trace", trace), ("spanId", span)] {
        if let Some(v) = v {
            e.extend_from_slice(format!(",\"{key}\":").as_bytes());
            e.extend_from_slice(v);
        }
    }
    e.push(b'}');
    e
}

/// Re-indents compact JSON text the way `gcloud --format=json` (and serde_json's
/// pretty printer) lays it out: two spaces, `": "`, empty containers kept as `{}`/`[]`.
fn pretty(json: &[u8], base: usize, out: &mut Vec<u8>) {
    fn indent(out: &mut Vec<u8>, n: usize) {
        out.push(b'\n');
        out.resize(out.len() + 2 * n, b' ');
    }
    let special = |b: &u8| matches!(b, b'"' | b'{' | b'}' | b'[' | b']' | b',' | b':');
    let mut depth = base;
    let mut i = 0;
    while i < json.len() {
        // Copy the run up to the next structural byte in one go.
        let run = json[i..].iter().position(special).unwrap_or(json.len() - i);
        out.extend_from_slice(&json[i..i + run]);
        i += run;
        let Some(&b) = json.get(i) else { break };
        match b {
            b'"' => {
                // A string: up to its closing quote, skipping escaped characters.
                let mut j = i + 1;
                while j < json.len() {
                    match json[j..].iter().position(|c| *c == b'"' || *c == b'\\') {
                        Some(k) if json[j + k] == b'\\' => j += k + 2,
                        Some(k) => {
                            j += k + 1;
                            break;
                        }
                        None => j = json.len(),
                    }
                }
                let j = j.min(json.len());
                out.extend_from_slice(&json[i..j]);
                i = j;
                continue;
            }
            b'{' | b'[' => {
                out.push(b);
                if matches!(json.get(i + 1), Some(b'}' | b']')) {
                    out.push(json[i + 1]);
                    i += 1;
                } else {
                    depth += 1;
                    indent(out, depth);
                }
            }
            b'}' | b']' => {
                depth -= 1;
                indent(out, depth);
                out.push(b);
            }
            b',' => {
                out.push(b);
                indent(out, depth);
            }
            _ => out.extend_from_slice(b": "),
        }
        i += 1;
    }
}

/// Writes the pods in `pods` (in that order, as `kubectl logs -l` does) into one file.
pub fn write(name: &str, fmt: Fmt, pods: &[&PodLog], rng: &mut Rng) -> File {
    let mut bytes = Vec::new();
    match fmt {
        Fmt::CloudArray => {
            let mut all: Vec<(T, Vec<u8>)> = Vec::new();
            for p in pods {
                for l in &p.lines {
                    all.push((l.clock, entry(l, &p.pod, true, rng)));
                }
            }
            // Newest first, by the entry's timestamp (the pod's clock).
            all.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
            bytes.push(b'[');
            for (k, (_, e)) in all.iter().enumerate() {
                bytes.extend_from_slice(if k == 0 { b"\n  " } else { b",\n  " });
                pretty(e, 1, &mut bytes);
            }
            bytes.extend_from_slice(b"\n]\n");
        }
        Fmt::CloudLines => {
            let mut all: Vec<(T, Vec<u8>)> = Vec::new();
            for p in pods {
                for l in &p.lines {
                    let mut v = entry(l, &p.pod, false, rng);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const LINE: &str = r#"{"time":"2026-11-25T12:55:54.616753Z","severity":"INFO","message":"GET /socket.io/?EIO=4 200 1.0ms","event":"request","pod":"theia-x","pod_ip":"10.8.1.2","id":"a-1","sio":{"eio":"4","t":null,"handshake":false},"headers":{"upgrade":null,"user-agent":"a \"quoted\" {brace}, [x]"},"flags":[],"httpRequest":{"requestMethod":"GET","latency":"0.001000s"},"trace":"abc","logging.googleapis.com/trace":"projects/p/traces/abc","logging.googleapis.com/spanId":"00000000000000ff"}"#;

    fn line() -> Line {
        Line {
            at: 0,
            clock: 0,
            text: format!("{LINE}\n").into_bytes(),
            lifecycle: false,
            expendable: false,
        }
    }

    #[test]
    fn a_cloud_entry_moves_what_the_agent_moves() {
        let mut rng = Rng::new(1);
        let e: Value = serde_json::from_slice(&entry(&line(), "theia-x", false, &mut rng)).unwrap();
        let rec: Value = serde_json::from_str(LINE).unwrap();
        assert_eq!(e["timestamp"], rec["time"]);
        assert_eq!(e["severity"], "INFO");
        assert_eq!(e["httpRequest"], rec["httpRequest"]);
        assert_eq!(e["trace"], "projects/p/traces/abc");
        assert_eq!(e["spanId"], "00000000000000ff");
        assert_eq!(e["resource"]["labels"]["pod_name"], "theia-x");
        let p = e["jsonPayload"].as_object().unwrap();
        for gone in [
            "time",
            "severity",
            "httpRequest",
            "pod",
            "logging.googleapis.com/trace",
        ] {
            assert!(!p.contains_key(gone), "{gone}");
        }
        assert_eq!(p["headers"], rec["headers"]);
        assert_eq!(p["trace"], "abc");
    }

    #[test]
    fn pretty_printing_keeps_the_value() {
        let mut out = Vec::new();
        pretty(LINE.as_bytes(), 0, &mut out);
        let a: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(a, serde_json::from_str::<Value>(LINE).unwrap());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\n  \"severity\": \"INFO\",\n"), "{text}");
        assert!(text.contains("\"flags\": [],"), "{text}");
    }
}
