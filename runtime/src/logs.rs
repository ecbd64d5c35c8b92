//! Instance logs: JSON lines under `<data_dir>/logs/<title_region>/<vs_name>/v<version>/`.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use respawn_types::text::truncate_utf8;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead};

use crate::error::RuntimeError;
use crate::spec::{now_ms, InstanceSpec, LogLine, LogQuery};

/// Longer lines are cut into pieces of this many bytes.
pub(crate) const MAX_LINE: usize = 16 * 1024;

#[derive(Serialize, Deserialize)]
struct Record<'a> {
    ts_ms: u64,
    #[serde(borrow)]
    instance_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    stream: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    line: std::borrow::Cow<'a, str>,
}

/// The log file of one instance.
#[derive(Debug)]
pub(crate) struct LogFile {
    path: PathBuf,
    instance_id: String,
    file: Mutex<Option<File>>,
    last_stderr: Mutex<Option<String>>,
}

/// The directory of one VS's logs.
pub(crate) fn vs_dir(data_dir: &Path, title_region: &str, vs_name: &str) -> PathBuf {
    data_dir.join("logs").join(title_region).join(vs_name)
}

impl LogFile {
    /// Opens (appending) the log file of `spec`'s instance.
    pub fn open(data_dir: &Path, spec: &InstanceSpec) -> std::io::Result<LogFile> {
        let dir =
            vs_dir(data_dir, &spec.title_region, &spec.vs_name).join(format!("v{}", spec.version));
        fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.log", spec.instance_id));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(LogFile {
            path,
            instance_id: spec.instance_id.clone(),
            file: Mutex::new(Some(file)),
            last_stderr: Mutex::new(None),
        })
    }

    /// Appends one line (without its newline) from `stream` ("stdout" / "stderr").
    pub fn write(&self, stream: &str, line: &str) {
        let mut rest = line;
        loop {
            let piece = truncate_utf8(rest, MAX_LINE);
            let tail = &rest[piece.len()..];
            self.write_one(stream, piece);
            if tail.is_empty() {
                break;
            }
            rest = tail;
        }
        if stream == "stderr" && !line.trim().is_empty() {
            if let Ok(mut l) = self.last_stderr.lock() {
                *l = Some(line.chars().take(200).collect());
            }
        }
    }

    fn write_one(&self, stream: &str, line: &str) {
        let Ok(mut guard) = self.file.lock() else {
            return;
        };
        // The time is taken under the lock so that a file is in time order.
        let rec = Record {
            ts_ms: now_ms(),
            instance_id: self.instance_id.as_str().into(),
            stream: stream.into(),
            line: line.into(),
        };
        let Ok(mut json) = serde_json::to_vec(&rec) else {
            return;
        };
        json.push(b'\n');
        if let Some(f) = guard.as_mut() {
            if let Err(e) = f.write_all(&json) {
                tracing::warn!(path = %self.path.display(), "cannot write a log line: {e}");
            }
        }
    }

    /// The last non-empty line written to stderr, if any (cut to 200 characters).
    pub fn last_stderr(&self) -> Option<String> {
        self.last_stderr.lock().ok()?.clone()
    }

    /// Forgets the last stderr line (at a relaunch).
    pub fn clear_last_stderr(&self) {
        if let Ok(mut l) = self.last_stderr.lock() {
            *l = None;
        }
    }
}

/// Copies `reader` line by line into `log` as `stream`, until end of file.
pub(crate) async fn pump<R: AsyncRead + Unpin>(
    reader: R,
    log: std::sync::Arc<LogFile>,
    stream: &'static str,
) {
    let mut r = tokio::io::BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                while buf.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
                    buf.pop();
                }
                log.write(stream, &String::from_utf8_lossy(&buf));
            }
        }
    }
}

/// Splits chunks of output into lines, keeping the unfinished end for later.
#[derive(Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds a chunk; calls `f` with each complete line.
    pub fn feed(&mut self, chunk: &[u8], mut f: impl FnMut(&str)) {
        self.pending.extend_from_slice(chunk);
        while let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.pending.drain(..=i).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            f(&String::from_utf8_lossy(&line));
        }
        if self.pending.len() > MAX_LINE {
            let line: Vec<u8> = std::mem::take(&mut self.pending);
            f(&String::from_utf8_lossy(&line));
        }
    }

    /// Flushes an unfinished last line.
    pub fn finish(&mut self, mut f: impl FnMut(&str)) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            f(&String::from_utf8_lossy(&line));
        }
    }
}

/// Answers a [`LogQuery`] by scanning the VS's log files.
pub(crate) fn query(data_dir: &Path, q: &LogQuery) -> Result<Vec<LogLine>, RuntimeError> {
    let dir = vs_dir(data_dir, &q.title_region, &q.vs_name);
    let mut versions: Vec<(u64, PathBuf)> = Vec::new();
    match q.version {
        Some(v) => versions.push((v, dir.join(format!("v{v}")))),
        None => {
            if let Ok(rd) = fs::read_dir(&dir) {
                for e in rd.flatten() {
                    if let Some(v) = e
                        .file_name()
                        .to_str()
                        .and_then(|n| n.strip_prefix('v'))
                        .and_then(|n| n.parse::<u64>().ok())
                    {
                        versions.push((v, e.path()));
                    }
                }
            }
        }
    }
    let cap = if q.limit == 0 { usize::MAX } else { q.limit };
    // Per file keep at most what can be returned: the first `cap` matches, or the
    // last `min(tail, cap)`. Each file is in time order.
    let keep = match q.tail {
        Some(t) => t.min(cap),
        None => cap,
    };
    let mut all: Vec<LogLine> = Vec::new();
    if keep == 0 {
        return Ok(all);
    }
    for (version, vdir) in versions {
        let Ok(rd) = fs::read_dir(&vdir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        files.sort();
        for path in files {
            let Ok(f) = File::open(&path) else { continue };
            let mut window: VecDeque<LogLine> = VecDeque::new();
            for raw in BufReader::new(f).split(b'\n') {
                let Ok(raw) = raw else { break };
                let Ok(rec) = serde_json::from_slice::<Record>(&raw) else {
                    continue;
                };
                if q.since_ms.is_some_and(|s| rec.ts_ms < s)
                    || q.until_ms.is_some_and(|u| rec.ts_ms >= u)
                {
                    continue;
                }
                if q.contains.as_deref().is_some_and(|c| !rec.line.contains(c)) {
                    continue;
                }
                window.push_back(LogLine {
                    ts_ms: rec.ts_ms,
                    version,
                    instance_id: rec.instance_id.into_owned(),
                    stream: rec.stream.into_owned(),
                    line: rec.line.into_owned(),
                });
                if window.len() > keep {
                    if q.tail.is_some() {
                        window.pop_front();
                    } else {
                        window.pop_back();
                        break;
                    }
                }
            }
            all.extend(window);
        }
    }
    all.sort_by_key(|l| l.ts_ms);
    if q.tail.is_some() {
        let skip = all.len().saturating_sub(keep);
        all.drain(..skip);
    } else {
        all.truncate(keep);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Source;

    fn spec(id: &str, version: u64) -> InstanceSpec {
        InstanceSpec {
            instance_id: id.into(),
            title_region: "tr".into(),
            vs_name: "vs".into(),
            version,
            source: Source::Process {
                command: "true".into(),
            },
            args: vec![],
            env: Default::default(),
            listen_port: 8080,
            cpu_millicores: 0,
            memory_mb: 0,
        }
    }

    fn q() -> LogQuery {
        LogQuery {
            title_region: "tr".into(),
            vs_name: "vs".into(),
            version: None,
            since_ms: None,
            until_ms: None,
            contains: None,
            tail: None,
            limit: 0,
        }
    }

    #[test]
    fn writes_and_queries() {
        let d = tempfile::tempdir().unwrap();
        let a = LogFile::open(d.path(), &spec("a", 1)).unwrap();
        let b = LogFile::open(d.path(), &spec("b", 2)).unwrap();
        for i in 0..10 {
            a.write("stdout", &format!("a line {i}"));
            b.write("stderr", &format!("b line {i}"));
        }
        assert_eq!(b.last_stderr().as_deref(), Some("b line 9"));
        let all = query(d.path(), &q()).unwrap();
        assert_eq!(all.len(), 20);
        assert!(all.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));

        let v1 = query(
            d.path(),
            &LogQuery {
                version: Some(1),
                ..q()
            },
        )
        .unwrap();
        assert_eq!(v1.len(), 10);
        assert!(v1
            .iter()
            .all(|l| l.version == 1 && l.instance_id == "a" && l.stream == "stdout"));

        let c = query(
            d.path(),
            &LogQuery {
                contains: Some("line 7".into()),
                ..q()
            },
        )
        .unwrap();
        assert_eq!(c.len(), 2);

        let t = query(
            d.path(),
            &LogQuery {
                version: Some(2),
                tail: Some(3),
                ..q()
            },
        )
        .unwrap();
        let lines: Vec<&str> = t.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(lines, ["b line 7", "b line 8", "b line 9"]);

        let l = query(
            d.path(),
            &LogQuery {
                version: Some(2),
                limit: 2,
                ..q()
            },
        )
        .unwrap();
        let lines: Vec<&str> = l.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(lines, ["b line 0", "b line 1"]);

        let future = query(
            d.path(),
            &LogQuery {
                since_ms: Some(now_ms() + 60_000),
                ..q()
            },
        )
        .unwrap();
        assert!(future.is_empty());
        let past = query(
            d.path(),
            &LogQuery {
                until_ms: Some(1),
                ..q()
            },
        )
        .unwrap();
        assert!(past.is_empty());
        let none = query(
            d.path(),
            &LogQuery {
                vs_name: "other".into(),
                ..q()
            },
        )
        .unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn long_lines_are_cut() {
        let d = tempfile::tempdir().unwrap();
        let a = LogFile::open(d.path(), &spec("a", 1)).unwrap();
        a.write("stdout", &"é".repeat(MAX_LINE));
        let all = query(d.path(), &q()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            all.iter().map(|l| l.line.len()).sum::<usize>(),
            2 * MAX_LINE
        );
    }

    #[test]
    fn splitter_keeps_partial_lines() {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        s.feed(b"one\ntw", |l| out.push(l.to_string()));
        s.feed(b"o\r\nthree", |l| out.push(l.to_string()));
        s.finish(|l| out.push(l.to_string()));
        assert_eq!(out, ["one", "two", "three"]);
    }
}
