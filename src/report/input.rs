//! Turns a file or stdin (plain or gzip) into JSON objects: one per line (plain, `kubectl
//! logs --prefix`, `--timestamps`), or the elements of a JSON array / a pretty-printed
//! stream of objects (Cloud Logging exports), with the pod a `kubectl` prefix named.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::time::Duration;

/// Lines (or array elements) longer than this are skipped without being buffered whole.
pub const MAX_LINE: usize = 4 << 20;
const BUFFER: usize = 256 << 10;
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// One input, opened.
pub struct Source {
    /// The file name, or `stdin`.
    pub label: String,
    inner: Box<dyn Read>,
    reader: BufReader<Box<dyn Read>>,
    is_file: bool,
}

/// What the reader hands on.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A JSON object's bytes, and the pod named by a `[pod/NAME/CONTAINER]` prefix.
    Json(&'a [u8], Option<&'a str>),
    /// A line that holds no JSON object.
    Skipped(Skip),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// No `{` on the line.
    NotJson,
    /// Longer than [`MAX_LINE`].
    TooLong,
    /// The input ended inside a JSON value.
    Truncated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One JSON object per line, possibly behind a prefix.
    Lines,
    /// `[ {...}, {...} ]`, over any number of lines.
    Array,
    /// `{` alone on the first line: pretty-printed objects one after another.
    Objects,
}

/// How far ahead the layout is looked for.
const SNIFF_MAX: usize = 64 << 10;

/// The layout of an input that starts with `head`: `Some(None)` for an empty input,
/// `None` when more bytes are needed to tell.
fn layout_of(head: &[u8], eof: bool) -> Option<Option<Layout>> {
    let head = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let next = |from: usize| {
        head[from..]
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .map(|i| i + from)
    };
    let enough = eof || head.len() >= SNIFF_MAX;
    let Some(first) = next(0) else {
        return if enough { Some(None) } else { None };
    };
    match head[first] {
        // `[{`, `[\n  {`, `[]`: an array; `[pod/…] {` is a kubectl prefix.
        b'[' => match next(first + 1) {
            Some(i) if matches!(head[i], b'{' | b']') => Some(Some(Layout::Array)),
            Some(_) => Some(Some(Layout::Lines)),
            None if enough => Some(Some(Layout::Lines)),
            None => None,
        },
        b'{' => match head[first + 1..].iter().position(|b| *b == b'\n') {
            Some(nl)
                if head[first + 1..first + 1 + nl]
                    .iter()
                    .all(u8::is_ascii_whitespace) =>
            {
                Some(Some(Layout::Objects))
            }
            Some(_) => Some(Some(Layout::Lines)),
            None if enough => Some(Some(Layout::Lines)),
            None => None,
        },
        _ => Some(Some(Layout::Lines)),
    }
}

impl Source {
    /// Opens `path`, or stdin for `None`; gzip is recognised by its magic bytes.
    pub fn open(path: Option<&Path>) -> io::Result<Source> {
        let (label, raw, is_file): (String, Box<dyn Read>, bool) = match path {
            None => ("stdin".to_string(), Box::new(io::stdin()), false),
            Some(p) => {
                let f = File::open(p)?;
                if f.metadata()?.is_dir() {
                    return Err(io::Error::other("is a directory"));
                }
                (p.display().to_string(), Box::new(f), true)
            }
        };
        Source::from_reader(label, raw, is_file)
    }

    /// A source over any reader (tests, benches); gzip is recognised here too.
    pub fn from_reader(label: String, mut raw: Box<dyn Read>, is_file: bool) -> io::Result<Source> {
        let mut magic = [0u8; 2];
        let mut n = 0;
        while n < 2 {
            match raw.read(&mut magic[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let rest: Box<dyn Read> = Box::new(io::Cursor::new(magic[..n].to_vec()).chain(raw));
        let inner: Box<dyn Read> = if magic[..n] == [0x1f, 0x8b] {
            Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
                BUFFER, rest,
            )))
        } else {
            rest
        };
        Ok(Source {
            label,
            inner,
            reader: BufReader::new(Box::new(io::empty())),
            is_file,
        })
    }

    /// Reads to the end (with `follow`, never ends on a file and waits on stdin), calling
    /// `on` for each item with whether the reader has nothing more buffered right now.
    pub fn run(&mut self, follow: bool, on: &mut dyn FnMut(Item<'_>, bool)) -> io::Result<()> {
        let wait_at_eof = follow && self.is_file;
        let Some(layout) = self.sniff(wait_at_eof)? else {
            return Ok(());
        };
        match layout {
            Layout::Lines => self.lines(wait_at_eof, on),
            Layout::Array | Layout::Objects => self.scan(layout, wait_at_eof, on),
        }
    }

    /// Reads ahead until the layout is clear, then puts what it read back in front.
    fn sniff(&mut self, wait_at_eof: bool) -> io::Result<Option<Layout>> {
        let mut inner: Box<dyn Read> = Box::new(io::empty());
        std::mem::swap(&mut inner, &mut self.inner);
        let mut head = Vec::new();
        let mut chunk = vec![0u8; 8192];
        let layout = loop {
            let n = match inner.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            head.extend_from_slice(&chunk[..n]);
            if n == 0 && wait_at_eof && layout_of(&head, false).is_none() {
                std::thread::sleep(FOLLOW_POLL);
                continue;
            }
            if let Some(layout) = layout_of(&head, n == 0) {
                break layout;
            }
        };
        self.reader =
            BufReader::with_capacity(BUFFER, Box::new(io::Cursor::new(head).chain(inner)));
        Ok(layout)
    }

    fn lines(&mut self, wait_at_eof: bool, on: &mut dyn FnMut(Item<'_>, bool)) -> io::Result<()> {
        let mut line = Vec::with_capacity(4096);
        let mut too_long = false;
        loop {
            let (done, eof) = read_line(&mut self.reader, &mut line, &mut too_long)?;
            if !done {
                if eof && wait_at_eof {
                    std::thread::sleep(FOLLOW_POLL);
                    continue;
                }
                if line.is_empty() && !too_long {
                    return Ok(());
                }
            }
            let caught_up = self.reader.buffer().is_empty();
            if too_long {
                on(Item::Skipped(Skip::TooLong), caught_up);
            } else if let Some(item) = split_line(&line) {
                on(item, caught_up);
            }
            line.clear();
            too_long = false;
            if !done {
                return Ok(());
            }
        }
    }

    fn scan(
        &mut self,
        layout: Layout,
        wait_at_eof: bool,
        on: &mut dyn FnMut(Item<'_>, bool),
    ) -> io::Result<()> {
        let mut scanner = Scanner::new(layout == Layout::Array);
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                if wait_at_eof {
                    std::thread::sleep(FOLLOW_POLL);
                    continue;
                }
                if scanner.in_element() {
                    on(Item::Skipped(Skip::Truncated), true);
                }
                return Ok(());
            }
            let n = buf.len();
            scanner.feed(buf, &mut |item| on(item, false));
            self.reader.consume(n);
        }
    }
}

/// Reads one line into `line` (without its `\n`), keeping at most [`MAX_LINE`] bytes and
/// setting `too_long` beyond. Returns (whether a `\n` ended it, whether the input ended).
fn read_line(
    r: &mut impl BufRead,
    line: &mut Vec<u8>,
    too_long: &mut bool,
) -> io::Result<(bool, bool)> {
    loop {
        if *too_long {
            // Drop the rest of an overlong line, a bounded piece at a time.
            line.clear();
        }
        let room = (MAX_LINE + 1).saturating_sub(line.len()) as u64;
        // `read_until` finds the newline with std's fast memchr.
        let n = r.by_ref().take(room).read_until(b'\n', line)?;
        if line.last() == Some(&b'\n') {
            line.pop();
            if *too_long {
                line.clear();
            }
            return Ok((true, false));
        }
        if n > 0 && line.len() > MAX_LINE {
            *too_long = true;
            continue;
        }
        // No newline and room left: the input ended (for now).
        return Ok((false, true));
    }
}

/// The JSON object on a line and the pod its `kubectl logs --prefix` prefix names; `None`
/// for a blank line. Anything before the first `{` is a prefix (`[pod/NAME/CONTAINER] `,
/// a `--timestamps` time, or both).
pub fn split_line(line: &[u8]) -> Option<Item<'_>> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let Some(brace) = line.iter().position(|b| *b == b'{') else {
        return Some(Item::Skipped(Skip::NotJson));
    };
    let prefix = &line[..brace];
    let pod = prefix
        .trim_ascii_start()
        .strip_prefix(b"[pod/")
        .and_then(|rest| {
            let end = rest.iter().position(|b| *b == b'/' || *b == b']')?;
            std::str::from_utf8(&rest[..end]).ok()
        })
        .filter(|p| !p.is_empty());
    Some(Item::Json(line[brace..].trim_ascii_end(), pod))
}

/// Finds the top-level objects of a JSON array (or of a stream of objects) as they stream
/// past, whatever the line breaks, keeping one element at a time.
struct Scanner {
    base: u32,
    depth: u32,
    in_string: bool,
    escaped: bool,
    element: Vec<u8>,
    too_long: bool,
}

impl Scanner {
    fn new(array: bool) -> Scanner {
        Scanner {
            base: u32::from(array),
            depth: 0,
            in_string: false,
            escaped: false,
            element: Vec::new(),
            too_long: false,
        }
    }

    fn in_element(&self) -> bool {
        self.depth > self.base
    }

    fn feed(&mut self, bytes: &[u8], on: &mut dyn FnMut(Item<'_>)) {
        for &b in bytes {
            let was_inside = self.in_element();
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
            } else {
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => self.depth = self.depth.saturating_sub(1),
                    _ => {}
                }
            }
            if was_inside || self.in_element() {
                if self.element.len() < MAX_LINE {
                    self.element.push(b);
                } else {
                    self.too_long = true;
                }
                if was_inside && !self.in_element() {
                    if self.too_long {
                        on(Item::Skipped(Skip::TooLong));
                    } else {
                        on(Item::Json(&self.element, None));
                    }
                    self.element.clear();
                    self.too_long = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Own = (String, Option<String>);

    fn own(item: Item<'_>) -> Own {
        match item {
            Item::Json(j, p) => (
                String::from_utf8_lossy(j).into_owned(),
                p.map(str::to_string),
            ),
            Item::Skipped(s) => (format!("{s:?}"), None),
        }
    }

    #[test]
    fn line_forms() {
        type Want<'a> = Option<(&'a str, Option<&'a str>)>;
        let cases: &[(&[u8], Want)] = &[
            (br#"{"a":1}"#, Some((r#"{"a":1}"#, None))),
            (b"{\"a\":1}\r", Some((r#"{"a":1}"#, None))),
            (
                br#"[pod/web-7d9f-x2/sockproxy] {"a":1}"#,
                Some((r#"{"a":1}"#, Some("web-7d9f-x2"))),
            ),
            (
                br#"[pod/pod-b/sockproxy] 2026-11-25T12:55:47.645123456Z {"a":1}  "#,
                Some((r#"{"a":1}"#, Some("pod-b"))),
            ),
            (
                br#"2026-11-25T12:55:47.645123456Z {"a":1}"#,
                Some((r#"{"a":1}"#, None)),
            ),
            (br#"[pod//c] {"a":1}"#, Some((r#"{"a":1}"#, None))),
            (br#"[pod/x] {"a":1}"#, Some((r#"{"a":1}"#, Some("x")))),
            (
                b"  WARN sockproxy: something on stderr",
                Some(("NotJson", None)),
            ),
            (b"", None),
            (b"   \r", None),
        ];
        for (line, want) in cases {
            let got = split_line(line).map(own);
            let want = want.map(|(j, p)| (j.to_string(), p.map(str::to_string)));
            assert_eq!(got, want, "{}", String::from_utf8_lossy(line));
        }
    }

    fn read_all(input: &[u8]) -> Vec<Own> {
        let mut src =
            Source::from_reader("t".into(), Box::new(io::Cursor::new(input.to_vec())), false)
                .unwrap();
        let mut out = Vec::new();
        src.run(false, &mut |item, _| out.push(own(item))).unwrap();
        out
    }

    #[test]
    fn layouts() {
        let j = |s: &str| (s.to_string(), None::<String>);
        let cases: &[(&[u8], Vec<Own>)] = &[
            (b"", vec![]),
            (b"\n\n  \n", vec![]),
            (
                b"{\"a\":1}\n{\"b\":2}",
                vec![j("{\"a\":1}"), j("{\"b\":2}")],
            ),
            (
                b"{\"a\":1}\nnoise\n{\"b\":",
                vec![j("{\"a\":1}"), j("NotJson"), j("{\"b\":")],
            ),
            (
                b"[\n  {\n    \"a\": \"}]{\\\"\"\n  },\n  {\"b\": [1, {\"c\": 2}]}\n]\n",
                vec![
                    j("{\n    \"a\": \"}]{\\\"\"\n  }"),
                    j("{\"b\": [1, {\"c\": 2}]}"),
                ],
            ),
            (b"[{\"a\":1},{\"b\":2", vec![j("{\"a\":1}"), j("Truncated")]),
            (
                b"[{\"a\":1}, 1, \"x\", [2]]",
                vec![j("{\"a\":1}"), j("[2]")],
            ),
            (b"[]", vec![]),
            (
                b"{\n  \"a\": 1\n}\n{\n  \"b\": 2\n}\n",
                vec![j("{\n  \"a\": 1\n}"), j("{\n  \"b\": 2\n}")],
            ),
            (b"\xef\xbb\xbf{\"a\":1}\n", vec![j("{\"a\":1}")]),
            (
                b"[pod/p/c] {\"a\":1}\n[pod/q/c] {\"b\":2}\n",
                vec![
                    ("{\"a\":1}".to_string(), Some("p".to_string())),
                    ("{\"b\":2}".to_string(), Some("q".to_string())),
                ],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(&read_all(input), want, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn layout_needs_enough_bytes() {
        use Layout::*;
        // (head, at end of input, layout; None = read more first)
        type Sniffed = Option<Option<Layout>>;
        let cases: &[(&[u8], bool, Sniffed)] = &[
            (b"", false, None),
            (b"", true, Some(None)),
            (b"  \n", true, Some(None)),
            (b"[", false, None),
            (b"[\n  ", false, None),
            (b"[\n  {", false, Some(Some(Array))),
            (b"[]", true, Some(Some(Array))),
            (b"[pod/a/c] {", false, Some(Some(Lines))),
            (b"[", true, Some(Some(Lines))),
            (b"{", false, None),
            (b"{\n", false, Some(Some(Objects))),
            (b"{ \r\n  \"a\"", false, Some(Some(Objects))),
            (b"{\"a\":1}\n", false, Some(Some(Lines))),
            (b"{\"a\":1}", true, Some(Some(Lines))),
            (b"2026-11-25T12:00:00Z {", false, Some(Some(Lines))),
            (b"\xef\xbb\xbf[{", false, Some(Some(Array))),
        ];
        for (head, eof, want) in cases {
            assert_eq!(
                layout_of(head, *eof),
                *want,
                "{:?} eof={eof}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn gzip_is_recognised() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"a\":1}\n[pod/p/c] {\"b\":2}\n").unwrap();
        let bytes = gz.finish().unwrap();
        assert_eq!(
            read_all(&bytes),
            vec![
                ("{\"a\":1}".to_string(), None),
                ("{\"b\":2}".to_string(), Some("p".to_string()))
            ]
        );
    }

    #[test]
    fn overlong_lines_are_skipped_whole() {
        let mut input = Vec::new();
        input.extend_from_slice(b"{\"a\":\"");
        input.resize(MAX_LINE + 10, b'x');
        input.extend_from_slice(b"\"}\n{\"b\":2}\n");
        assert_eq!(
            read_all(&input),
            vec![
                ("TooLong".to_string(), None),
                ("{\"b\":2}".to_string(), None)
            ]
        );
    }
}
