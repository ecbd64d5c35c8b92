//! The server's state: the deduplicated, persistent records of
//! `/pgos_event` and `/pgos_task` deliveries (`events.jsonl`, `tasks.jsonl`).

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Mutex;

use crate::json::{error, num, obj, s, Json};
use crate::logging::now_ms;

pub(crate) struct State {
    pub(crate) name: String,
    pub(crate) intranet: String,
    pub(crate) events: Mutex<Recorder>,
    pub(crate) tasks: Mutex<Recorder>,
}

/// Deduplicated, persistent record of `/pgos_event` or `/pgos_task` calls.
pub(crate) struct Recorder {
    pub(crate) path: &'static str,
    pub(crate) name_key: &'static str,
    pub(crate) time_key: &'static str,
    pub(crate) fail_first: u32,
    /// In memory, in arrival order (loaded from the file at start).
    pub(crate) records: Vec<Json>,
    pub(crate) seen: HashSet<String>,
    /// Deliveries seen per trigger id by this process.
    pub(crate) attempts: HashMap<String, u32>,
}

impl Recorder {
    pub(crate) fn load(
        path: &'static str,
        name_key: &'static str,
        time_key: &'static str,
        fail_first: u32,
    ) -> Recorder {
        let records = read_jsonl(path);
        let seen = records
            .iter()
            .filter_map(|r| r.get("trigger_id").and_then(Json::as_str))
            .map(str::to_string)
            .collect();
        Recorder {
            path,
            name_key,
            time_key,
            fail_first,
            records,
            seen,
            attempts: HashMap::new(),
        }
    }

    /// Handles one delivery: the status and the response body.
    pub(crate) fn deliver(&mut self, body: &Json, extra: &[&str]) -> (u16, Json) {
        let Some(tid) = body
            .get("trigger_id")
            .and_then(Json::as_str)
            .filter(|t| !t.is_empty())
        else {
            return (
                400,
                error("bad_request", "trigger_id must be a non-empty string"),
            );
        };
        let tid = tid.to_string();
        let attempt = {
            let n = self.attempts.entry(tid.clone()).or_insert(0);
            *n += 1;
            *n
        };
        if self.seen.contains(&tid) {
            return (
                200,
                obj(vec![
                    ("duplicate", Json::Bool(true)),
                    ("trigger_id", Json::Str(tid)),
                    ("attempt", num(attempt)),
                ]),
            );
        }
        if attempt <= self.fail_first {
            return (
                500,
                obj(vec![
                    ("error", s("induced_failure")),
                    ("trigger_id", Json::Str(tid)),
                    ("attempt", num(attempt)),
                    ("fail_first", num(self.fail_first)),
                ]),
            );
        }
        let field = |k: &str| body.get(k).cloned().unwrap_or(Json::Null);
        let seq = self.records.len() + 1;
        let mut fields = vec![
            ("seq", num(seq)),
            ("trigger_id", Json::Str(tid.clone())),
            (self.name_key, field(self.name_key)),
            (self.time_key, field(self.time_key)),
            ("args", field("args")),
        ];
        for k in extra {
            fields.push((k, field(k)));
        }
        fields.extend([
            ("attempt", num(attempt)),
            ("received_at_ms", num(now_ms())),
            ("pid", num(std::process::id())),
        ]);
        let record = obj(fields);
        let line = format!("{}\n", record.to_string_compact());
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            return (
                500,
                error("storage", &format!("cannot append to {}: {e}", self.path)),
            );
        }
        self.records.push(record);
        self.seen.insert(tid.clone());
        (
            200,
            obj(vec![
                ("ok", Json::Bool(true)),
                ("trigger_id", Json::Str(tid)),
                ("seq", num(seq)),
            ]),
        )
    }
}

pub(crate) fn read_jsonl(path: &str) -> Vec<Json> {
    std::fs::read_to_string(path)
        .map(|text| {
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .filter_map(|l| Json::parse(l).ok()) // skips a line torn by a crash
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn lock(m: &Mutex<Recorder>) -> std::sync::MutexGuard<'_, Recorder> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
