//! Append-only decision and outcome log: JSON Lines in size-rotated segments
//! (`decisions-<UTC start>-<seq>.jsonl`, `outcomes-<UTC start>-<seq>.jsonl`), written by one
//! dedicated thread behind a bounded channel. A request is acknowledged only after its record is
//! queued; a full queue makes requests wait rather than drop records. Shutdown drains the queue,
//! flushes and fsyncs.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::LogPolicy;
use crate::engine::Reason;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShadowRecord {
    pub router: String,
    pub primary: String,
    pub agrees: bool,
}

/// One routing decision. Field names are the log schema read by `signalbox-train`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DecisionRecord {
    pub ts: String,
    pub decision_id: String,
    pub request_id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub task: String,
    pub task_source: String,
    pub data_class: String,
    pub mode: String,
    pub risk_tier: String,
    /// PII-redacted prompt, or null when the data class does not allow storing it.
    pub prompt: Option<String>,
    pub prompt_chars: usize,
    pub prompt_tokens_est: u32,
    pub pii: BTreeMap<String, u32>,
    pub capabilities: Vec<String>,
    pub quality_preference: Option<f64>,
    pub latency_budget_ms: Option<u32>,
    pub router: String,
    /// Empty when the request was denied.
    pub primary: String,
    pub fallbacks: Vec<String>,
    pub cascade: Vec<String>,
    pub shadow: Option<ShadowRecord>,
    pub predicted_quality: Option<BTreeMap<String, f64>>,
    /// Learned router: the quality target the request's preference asked for.
    #[serde(default)]
    pub quality_target: Option<f64>,
    pub estimated_cost_usd: f64,
    pub policy_version: String,
    pub model_version: String,
    pub reasons: Vec<Reason>,
    pub denied: bool,
}

/// One reported outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutcomeRecord {
    pub ts: String,
    pub decision_id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub model_id: String,
    pub success: bool,
    pub quality: f64,
    pub latency_ms: u32,
    pub tokens_in: u32,
    pub tokens_out: u32,
    pub cost_usd: f64,
    pub error: String,
}

#[derive(Debug)]
pub enum LogRecord {
    Decision(Box<DecisionRecord>),
    Outcome(OutcomeRecord),
}

enum Msg {
    Record(LogRecord),
    Shutdown,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("decision log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("decision log is closed")]
    Closed,
    #[error("decision log writer thread panicked")]
    WriterPanicked,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the writer wrote in its lifetime.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    pub decisions: u64,
    pub outcomes: u64,
    pub segments: u64,
}

pub struct DecisionLog {
    tx: mpsc::Sender<Msg>,
    writer: parking_lot::Mutex<Option<JoinHandle<Result<LogStats, LogError>>>>,
    dir: PathBuf,
}

impl DecisionLog {
    /// Create the directory and start the writer thread.
    pub fn open(policy: &LogPolicy) -> Result<DecisionLog, LogError> {
        std::fs::create_dir_all(&policy.dir).map_err(io_err(&policy.dir))?;
        let (tx, rx) = mpsc::channel(policy.buffer_records);
        let mut writer = Writer {
            dir: policy.dir.clone(),
            max_bytes: policy.segment_max_bytes,
            flush_every: Duration::from_millis(policy.flush_interval_ms),
            decisions: Segment::new("decisions"),
            outcomes: Segment::new("outcomes"),
            stats: LogStats::default(),
            seq: 0,
        };
        let handle = std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || writer.run(rx))
            .map_err(io_err(&policy.dir))?;
        Ok(DecisionLog {
            tx,
            writer: parking_lot::Mutex::new(Some(handle)),
            dir: policy.dir.clone(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queue a record; waits while the queue is full.
    pub async fn append(&self, record: LogRecord) -> Result<(), LogError> {
        self.tx
            .send(Msg::Record(record))
            .await
            .map_err(|_| LogError::Closed)
    }

    /// Drain everything queued so far, flush, fsync and stop the writer. Call after the server
    /// has stopped accepting requests.
    pub async fn close(&self) -> Result<LogStats, LogError> {
        // Everything acknowledged was queued before this message: the channel is FIFO.
        let _ = self.tx.send(Msg::Shutdown).await;
        let handle = self.writer.lock().take();
        match handle {
            None => Err(LogError::Closed),
            Some(h) => tokio::task::spawn_blocking(move || h.join())
                .await
                .map_err(|_| LogError::WriterPanicked)?
                .map_err(|_| LogError::WriterPanicked)?,
        }
    }
}

/// How long the writer keeps polling an empty queue after a record before it flushes and parks.
const IDLE_BEFORE_PARK: Duration = Duration::from_millis(2);
/// Poll interval while records keep arriving (a batch of requests per wake-up).
const POLL_WHILE_BUSY: Duration = Duration::from_micros(500);

struct Segment {
    kind: &'static str,
    file: Option<(PathBuf, BufWriter<File>)>,
    bytes: u64,
}

impl Segment {
    fn new(kind: &'static str) -> Segment {
        Segment {
            kind,
            file: None,
            bytes: 0,
        }
    }

    fn finish(&mut self) -> Result<(), LogError> {
        if let Some((path, mut w)) = self.file.take() {
            w.flush().map_err(io_err(&path))?;
            w.get_ref().sync_all().map_err(io_err(&path))?;
        }
        self.bytes = 0;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), LogError> {
        if let Some((path, w)) = &mut self.file {
            w.flush().map_err(io_err(path))?;
        }
        Ok(())
    }
}

struct Writer {
    dir: PathBuf,
    max_bytes: u64,
    flush_every: Duration,
    decisions: Segment,
    outcomes: Segment,
    stats: LogStats,
    seq: u64,
}

impl Writer {
    fn run(&mut self, mut rx: mpsc::Receiver<Msg>) -> Result<LogStats, LogError> {
        let mut last_flush = Instant::now();
        // Written but not yet handed to the OS, and when the last record arrived.
        let mut dirty = false;
        let mut last_record = Instant::now();
        loop {
            let msg = match rx.try_recv() {
                Ok(m) => m,
                Err(mpsc::error::TryRecvError::Empty) => {
                    // Under load, poll the queue instead of parking after every record: a
                    // parked writer costs every request a wake-up and a context switch.
                    if dirty && last_record.elapsed() < IDLE_BEFORE_PARK {
                        std::thread::sleep(POLL_WHILE_BUSY);
                        continue;
                    }
                    // Idle: hand everything to the OS before sleeping.
                    self.decisions.flush()?;
                    self.outcomes.flush()?;
                    last_flush = Instant::now();
                    match rx.blocking_recv() {
                        Some(m) => m,
                        None => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            };
            match msg {
                Msg::Record(record) => {
                    self.write(record)?;
                    dirty = true;
                    last_record = Instant::now();
                }
                Msg::Shutdown => break,
            }
            if last_flush.elapsed() >= self.flush_every {
                self.decisions.flush()?;
                self.outcomes.flush()?;
                dirty = false;
                last_flush = Instant::now();
            }
        }
        // Drain anything still queued (nothing acknowledged may be lost), then sync.
        rx.close();
        while let Ok(msg) = rx.try_recv() {
            if let Msg::Record(record) = msg {
                self.write(record)?;
            }
        }
        self.decisions.finish()?;
        self.outcomes.finish()?;
        Ok(self.stats)
    }

    fn write(&mut self, record: LogRecord) -> Result<(), LogError> {
        let line = match &record {
            LogRecord::Decision(d) => serde_json::to_vec(d),
            LogRecord::Outcome(o) => serde_json::to_vec(o),
        }
        .map_err(|e| LogError::Io {
            path: self.dir.clone(),
            source: e.into(),
        })?;
        let is_decision = matches!(record, LogRecord::Decision(_));
        let needs_new = {
            let seg = if is_decision {
                &self.decisions
            } else {
                &self.outcomes
            };
            seg.file.is_none() || seg.bytes + line.len() as u64 + 1 > self.max_bytes
        };
        if needs_new {
            self.rotate(is_decision)?;
        }
        let seg = if is_decision {
            &mut self.decisions
        } else {
            &mut self.outcomes
        };
        if let Some((path, w)) = &mut seg.file {
            w.write_all(&line).map_err(io_err(path))?;
            w.write_all(b"\n").map_err(io_err(path))?;
        }
        seg.bytes += line.len() as u64 + 1;
        if is_decision {
            self.stats.decisions += 1;
        } else {
            self.stats.outcomes += 1;
        }
        Ok(())
    }

    fn rotate(&mut self, decision: bool) -> Result<(), LogError> {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
        let seg = if decision {
            &mut self.decisions
        } else {
            &mut self.outcomes
        };
        seg.finish()?;
        loop {
            self.seq += 1;
            let path = self
                .dir
                .join(format!("{}-{stamp}-{:06}.jsonl", seg.kind, self.seq));
            match OpenOptions::new().create_new(true).append(true).open(&path) {
                Ok(f) => {
                    seg.file = Some((path, BufWriter::with_capacity(64 * 1024, f)));
                    seg.bytes = 0;
                    self.stats.segments += 1;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
    }
}

/// Segment files of one kind ("decisions" or "outcomes") in `dir`, oldest first.
pub fn segments(dir: &Path, kind: &str) -> Result<Vec<PathBuf>, LogError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let path = entry.map_err(io_err(dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(&format!("{kind}-")) && name.ends_with(".jsonl") {
            out.push(path);
        }
    }
    // Names sort by start time, then sequence.
    out.sort();
    Ok(out)
}

/// Read every record of one kind, oldest first, from segments last modified at or after
/// `modified_since` (all when `None`). A line that does not parse (e.g. cut by a crash) is
/// reported through `on_bad(path, line_no, error)` and skipped.
pub fn read_records<T: for<'de> Deserialize<'de>>(
    dir: &Path,
    kind: &str,
    modified_since: Option<std::time::SystemTime>,
    mut on_record: impl FnMut(T),
    mut on_bad: impl FnMut(&Path, usize, String),
) -> Result<(), LogError> {
    for path in segments(dir, kind)? {
        if let Some(since) = modified_since {
            let modified = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .map_err(io_err(&path))?;
            if modified < since {
                continue;
            }
        }
        let file = File::open(&path).map_err(io_err(&path))?;
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(io_err(&path))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<T>(&line) {
                Ok(r) => on_record(r),
                Err(e) => on_bad(&path, i + 1, e.to_string()),
            }
        }
    }
    Ok(())
}
