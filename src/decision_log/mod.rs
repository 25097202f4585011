//! Append-only decision and outcome log: JSON Lines in size-rotated segments
//! (`decisions-<replica>-<UTC start>-<seq>.jsonl`, `outcomes-<replica>-<UTC start>-<seq>.jsonl`),
//! written by one dedicated thread behind a bounded channel. A request is acknowledged only after
//! its record is queued; a full queue makes requests wait rather than drop records. Shutdown
//! drains the queue, flushes and fsyncs.
//!
//! The replica id ([`ReplicaId`]: `signalbox serve --replica-id`, by default
//! `<host name>-<port>`) keeps the segments of replicas that share one directory apart. Readers
//! ([`segments`]) also accept the names written before replica ids existed
//! (`decisions-<UTC start>-<seq>.jsonl`), and order segments by start time, then sequence, then
//! replica (see [`signalbox_features::log_segments`]).
//!
//! Each outcome segment, once closed and synced, gets a spend summary beside it
//! (`outcomes-<replica>-<UTC start>-<seq>.spend.json`: cost per tenant, user and UTC day), so a
//! restart adds up summaries instead of re-reading every outcome of the month. A segment without
//! a valid summary (the one open at a crash, say) is read record by record; both give the same
//! totals.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use signalbox_features::log_segments::segment_file_name;
use tokio::sync::mpsc;

use crate::config::{AckMode, LogPolicy};

mod read;
mod replica;
mod spend;
#[cfg(test)]
mod tests;

pub use read::{read_newest, read_records, segments};
pub use replica::{ReplicaId, ReplicaIdError, host_name};
pub use spend::{
    DaySpend, SegmentSpend, SpendReplay, outcome_spend, replay_spend, spend_summary_path,
};
use spend::{SpendTotals, write_spend_summary};

/// The records (one definition, shared with `signalbox-train`: see
/// [`signalbox_features::log_schema`]).
pub use signalbox_features::log_schema::{DecisionRecord, OutcomeRecord, ShadowRecord};

#[derive(Debug)]
pub enum LogRecord {
    Decision(Box<DecisionRecord>),
    Outcome(OutcomeRecord),
}

enum Msg {
    /// A record, and whom to tell once it is written (or fsynced), per `log.ack`.
    Record(LogRecord, Option<Ack>),
    Shutdown,
}

/// Told once its record is durable as `log.ack` asks; dropped unsent if the log gave up.
type Ack = tokio::sync::oneshot::Sender<()>;

/// Records written since the waiters were last told, at most this many per batch: under load a
/// batch is whatever arrived while the previous one was written (group commit).
const MAX_BATCH: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("decision log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("decision log is closed")]
    Closed,
    #[error("decision log cannot write at the moment (retrying); request not accepted")]
    Unwritable,
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

/// What the writer has done so far, read by the metrics while it runs.
#[derive(Debug, Default)]
pub struct LogCounters {
    pub bytes: AtomicU64,
    pub decisions: AtomicU64,
    pub outcomes: AtomicU64,
    /// Failed writes, flushes and fsyncs (each retried).
    pub write_errors: AtomicU64,
}

/// The log as the metrics see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogGauges {
    pub queue_depth: u64,
    pub queue_capacity: u64,
    pub bytes: u64,
    pub decisions: u64,
    pub outcomes: u64,
    pub write_errors: u64,
    pub writable: bool,
}

pub struct DecisionLog {
    tx: mpsc::Sender<Msg>,
    counters: Arc<LogCounters>,
    ack: AckMode,
    writer: parking_lot::Mutex<Option<JoinHandle<Result<LogStats, LogError>>>>,
    dir: PathBuf,
    writable: Arc<AtomicBool>,
    shutdown_requested: Arc<AtomicBool>,
    /// The replica id in the names of the segments opened from now on.
    replica: Arc<parking_lot::Mutex<ReplicaId>>,
}

impl DecisionLog {
    /// Create the directory and start the writer thread.
    /// Whether `dir` can hold the log: created if missing, and a file can be created, written
    /// and removed in it. `check-config` and `serve` run this before anything is bound.
    pub fn check_writable(dir: &Path) -> Result<(), LogError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let probe = dir.join(format!(".signalbox-write-check-{}", std::process::id()));
        let written = File::create(&probe)
            .and_then(|mut f| f.write_all(b"ok").and_then(|()| f.sync_all()))
            .map_err(io_err(&probe));
        // Removed whether or not the write worked.
        let removed = std::fs::remove_file(&probe).map_err(io_err(&probe));
        written.and(removed)
    }

    pub fn open(policy: &LogPolicy) -> Result<DecisionLog, LogError> {
        DecisionLog::open_giving_up_after(policy, RETRY_AT_SHUTDOWN)
    }

    /// [`DecisionLog::open`] with how long a failing writer keeps retrying once shutdown is
    /// asked for.
    fn open_giving_up_after(
        policy: &LogPolicy,
        give_up_after: Duration,
    ) -> Result<DecisionLog, LogError> {
        std::fs::create_dir_all(&policy.dir).map_err(io_err(&policy.dir))?;
        let (tx, rx) = mpsc::channel(policy.buffer_records);
        let writable = Arc::new(AtomicBool::new(true));
        let shutdown_requested = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(LogCounters::default());
        let replica = Arc::new(parking_lot::Mutex::new(
            policy.replica_id.clone().unwrap_or_else(ReplicaId::local),
        ));
        let mut writer = Writer {
            replica: replica.clone(),
            counters: counters.clone(),
            dir: policy.dir.clone(),
            ack: policy.ack,
            waiting: Vec::new(),
            max_bytes: policy.segment_max_bytes,
            flush_every: Duration::from_millis(policy.flush_interval_ms),
            decisions: Segment::new("decisions"),
            outcomes: Segment::with_spend("outcomes"),
            stats: LogStats::default(),
            seq: 0,
            writable: writable.clone(),
            shutting_down: false,
            shutdown_requested: shutdown_requested.clone(),
            give_up_after,
            give_up_at: None,
        };
        let handle = std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || writer.run(rx))
            .map_err(io_err(&policy.dir))?;
        Ok(DecisionLog {
            tx,
            counters,
            ack: policy.ack,
            writer: parking_lot::Mutex::new(Some(handle)),
            dir: policy.dir.clone(),
            writable,
            shutdown_requested,
            replica,
        })
    }

    /// The replica id the segments opened from now on carry.
    pub fn replica_id(&self) -> ReplicaId {
        self.replica.lock().clone()
    }

    /// Name the segments opened from now on after `replica` (the open ones keep their names).
    /// The server calls it once it has bound its port, before it serves, when `--replica-id` was
    /// not given (`log.replica_id = None`): no segment is open by then.
    pub fn set_replica_id(&self, replica: ReplicaId) {
        *self.replica.lock() = replica;
    }

    /// Queue depth, bytes and records written, write errors, health.
    pub fn gauges(&self) -> LogGauges {
        let c = &self.counters;
        LogGauges {
            queue_depth: (self.tx.max_capacity() - self.tx.capacity()) as u64,
            queue_capacity: self.tx.max_capacity() as u64,
            bytes: c.bytes.load(Ordering::Relaxed),
            decisions: c.decisions.load(Ordering::Relaxed),
            outcomes: c.outcomes.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            writable: self.writable(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// False while the writer is retrying a failed write. The service then refuses new
    /// requests before they change any state (and reports NOT_SERVING); everything already
    /// queued is written once the disk recovers.
    pub fn writable(&self) -> bool {
        self.writable.load(Ordering::Relaxed)
    }

    /// Queue a record and, unless `log.ack = "queued"`, wait until the writer has written it
    /// (`written`: handed to the OS) or written and fsynced it (`fsynced`); waits while the queue
    /// is full. Never refuses a record for a failing disk: a request that got this far has
    /// changed state (budget, tracker) and its record is kept for the writer's retries (the
    /// caller then waits for them). Callers check [`DecisionLog::writable`] first.
    pub async fn append(&self, record: LogRecord) -> Result<(), LogError> {
        let (ack, written) = match self.ack {
            AckMode::Queued => (None, None),
            AckMode::Written | AckMode::Fsynced => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                (Some(tx), Some(rx))
            }
        };
        self.tx
            .send(Msg::Record(record, ack))
            .await
            .map_err(|_| LogError::Closed)?;
        match written {
            // The writer gave up (shutdown with a failing disk): not durable.
            Some(rx) => rx.await.map_err(|_| LogError::Closed),
            None => Ok(()),
        }
    }

    /// Drain everything queued so far, flush, fsync and stop the writer. Call after the server
    /// has stopped accepting requests.
    pub async fn close(&self) -> Result<LogStats, LogError> {
        // A writer stuck retrying gives up 10 s from now, even before it reads the message
        // below (which waits while the queue is full, until the writer stops).
        self.shutdown_requested.store(true, Ordering::Relaxed);
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
/// Bytes buffered per segment before they are written out.
const BUFFER_BYTES: usize = 64 * 1024;
/// Retry delays after a failed write: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// At shutdown, how long a failing log keeps retrying before the writer gives up.
const RETRY_AT_SHUTDOWN: Duration = Duration::from_secs(10);

/// An open segment and the bytes not yet written to it. A failed write keeps every byte it did
/// not write, so retrying loses and duplicates nothing.
struct SegmentFile {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
}

impl SegmentFile {
    fn write_out(&mut self) -> Result<(), LogError> {
        while !self.buf.is_empty() {
            match self.file.write(&self.buf) {
                Ok(0) => {
                    return Err(io_err(&self.path)(std::io::ErrorKind::WriteZero.into()));
                }
                Ok(n) => {
                    self.buf.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(&self.path)(e)),
            }
        }
        Ok(())
    }
}

struct Segment {
    kind: &'static str,
    file: Option<SegmentFile>,
    bytes: u64,
    /// Outcome segments: spend of the records written so far, summarised when it closes.
    spend: Option<SpendTotals>,
}

impl Segment {
    fn new(kind: &'static str) -> Segment {
        Segment {
            kind,
            file: None,
            bytes: 0,
            spend: None,
        }
    }

    fn with_spend(kind: &'static str) -> Segment {
        Segment {
            spend: Some(SpendTotals::default()),
            ..Segment::new(kind)
        }
    }

    /// Write out, fsync and close the segment (then summarise its spend). On error the segment
    /// stays open with its unwritten bytes, so the call can be retried.
    fn finish(&mut self) -> Result<(), LogError> {
        if let Some(f) = &mut self.file {
            f.write_out()?;
            f.file.sync_all().map_err(io_err(&f.path))?;
        }
        if let (Some(f), Some(totals)) = (self.file.take(), &mut self.spend) {
            // Only after the segment is synced; without a summary a restart reads the segment,
            // so a failure here costs restart time, not spend.
            if let Err(err) = write_spend_summary(&f.path, &totals.take(self.bytes)) {
                tracing::warn!(%err, "could not write a spend summary");
            }
        }
        self.bytes = 0;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), LogError> {
        match &mut self.file {
            Some(f) => f.write_out(),
            None => Ok(()),
        }
    }

    fn flush_if_full(&mut self) -> Result<(), LogError> {
        match &mut self.file {
            Some(f) if f.buf.len() >= BUFFER_BYTES => f.write_out(),
            _ => Ok(()),
        }
    }
}

struct Writer {
    counters: Arc<LogCounters>,
    /// Read when a segment is opened.
    replica: Arc<parking_lot::Mutex<ReplicaId>>,
    dir: PathBuf,
    ack: AckMode,
    /// Waiters of the records written since the last flush.
    waiting: Vec<Ack>,
    max_bytes: u64,
    flush_every: Duration,
    decisions: Segment,
    outcomes: Segment,
    stats: LogStats,
    seq: u64,
    writable: Arc<AtomicBool>,
    shutting_down: bool,
    shutdown_requested: Arc<AtomicBool>,
    give_up_after: Duration,
    /// Set at the first failure after shutdown was asked for: one deadline for all retries.
    give_up_at: Option<Instant>,
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
                    // Group commit: the queue is drained, so this batch is complete; write it
                    // out (and fsync) once, then tell its waiters.
                    if !self.waiting.is_empty() {
                        self.commit()?;
                        last_flush = Instant::now();
                        dirty = false;
                        continue;
                    }
                    // Under load, poll the queue instead of parking after every record: a
                    // parked writer costs every request a wake-up and a context switch.
                    if dirty && last_record.elapsed() < IDLE_BEFORE_PARK {
                        std::thread::sleep(POLL_WHILE_BUSY);
                        continue;
                    }
                    // Idle: hand everything to the OS before sleeping.
                    self.retry(Writer::flush_all)?;
                    last_flush = Instant::now();
                    match rx.blocking_recv() {
                        Some(m) => m,
                        None => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            };
            match msg {
                Msg::Record(record, ack) => {
                    self.write(&record)?;
                    self.waiting.extend(ack);
                    dirty = true;
                    last_record = Instant::now();
                }
                Msg::Shutdown => break,
            }
            if self.waiting.len() >= MAX_BATCH {
                self.commit()?;
                dirty = false;
                last_flush = Instant::now();
            } else if last_flush.elapsed() >= self.flush_every {
                if self.waiting.is_empty() {
                    self.retry(Writer::flush_all)?;
                } else {
                    self.commit()?;
                }
                dirty = false;
                last_flush = Instant::now();
            }
        }
        // Drain anything still queued (nothing acknowledged may be lost), then sync both
        // segments. A log that is failing still tries every record and both segments until the
        // shutdown deadline, and reports the first error.
        self.shutting_down = true;
        rx.close();
        let mut first_error = None;
        while let Ok(msg) = rx.try_recv() {
            if let Msg::Record(record, ack) = msg {
                match self.write(&record) {
                    Ok(()) => self.waiting.extend(ack),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        for decisions in [true, false] {
            if let Err(e) = self.retry(|w| w.segment(decisions).finish()) {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            None => {
                // Both segments are written and synced.
                for ack in self.waiting.drain(..) {
                    let _ = ack.send(());
                }
                Ok(self.stats)
            }
            // The waiters' records may not be on disk: dropping their senders tells them so.
            Some(e) => Err(e),
        }
    }

    /// Write out both segments (and fsync them with `log.ack = "fsynced"`), retrying on
    /// failure, then tell every waiter of the batch.
    fn commit(&mut self) -> Result<(), LogError> {
        self.retry(Writer::flush_all)?;
        if self.ack == AckMode::Fsynced {
            self.retry(Writer::sync_all)?;
        }
        for ack in self.waiting.drain(..) {
            // A waiter that went away (its request was cancelled) needs no answer.
            let _ = ack.send(());
        }
        Ok(())
    }

    fn sync_all(&mut self) -> Result<(), LogError> {
        for seg in [&mut self.decisions, &mut self.outcomes] {
            if let Some(f) = &mut seg.file {
                f.file.sync_data().map_err(io_err(&f.path))?;
            }
        }
        Ok(())
    }

    fn flush_all(&mut self) -> Result<(), LogError> {
        self.decisions.flush()?;
        self.outcomes.flush()
    }

    /// Run `op` until it succeeds. While it fails the log is marked unwritable (the service
    /// refuses new requests) and the writer waits, doubling the delay; once shutdown is asked
    /// for it gives up [`RETRY_AT_SHUTDOWN`] later and returns the error.
    fn retry(
        &mut self,
        mut op: impl FnMut(&mut Writer) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        let mut delay = RETRY_FIRST;
        let mut failing_since: Option<Instant> = None;
        loop {
            match op(self) {
                Ok(()) => {
                    if failing_since.is_some() {
                        self.writable.store(true, Ordering::Relaxed);
                        tracing::info!("decision log writable again; accepting records");
                    }
                    return Ok(());
                }
                Err(err) => {
                    self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if self.writable.swap(false, Ordering::Relaxed) {
                        tracing::error!(%err, "decision log write failed; refusing new records and retrying");
                    }
                    if self.shutting_down || self.shutdown_requested.load(Ordering::Relaxed) {
                        let give_up_after = self.give_up_after;
                        let deadline = *self
                            .give_up_at
                            .get_or_insert_with(|| Instant::now() + give_up_after);
                        if Instant::now() >= deadline {
                            tracing::error!(%err, failing_for = ?since.elapsed(), "decision log still failing at shutdown; giving up");
                            return Err(err);
                        }
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Append one record (rotating first when its segment is full), retrying failed writes.
    fn write(&mut self, record: &LogRecord) -> Result<(), LogError> {
        let line = match record {
            LogRecord::Decision(d) => serde_json::to_vec(d),
            LogRecord::Outcome(o) => serde_json::to_vec(o),
        };
        let line = match line {
            Ok(l) => l,
            Err(err) => {
                // Not reachable with these record types (serde_json writes NaN as null).
                tracing::error!(%err, "could not serialise a log record; skipped");
                return Ok(());
            }
        };
        let is_decision = matches!(record, LogRecord::Decision(_));
        let max_bytes = self.max_bytes;
        let needs_new =
            |seg: &Segment| seg.file.is_none() || seg.bytes + line.len() as u64 + 1 > max_bytes;
        if needs_new(self.segment(is_decision)) {
            self.retry(|w| w.rotate(is_decision))?;
        }
        self.counters
            .bytes
            .fetch_add(line.len() as u64 + 1, Ordering::Relaxed);
        let seg = self.segment(is_decision);
        if let Some(f) = &mut seg.file {
            f.buf.extend_from_slice(&line);
            f.buf.push(b'\n');
        }
        seg.bytes += line.len() as u64 + 1;
        if let (LogRecord::Outcome(o), Some(totals)) = (record, &mut seg.spend) {
            totals.add(o);
        }
        if is_decision {
            self.stats.decisions += 1;
            self.counters.decisions.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.outcomes += 1;
            self.counters.outcomes.fetch_add(1, Ordering::Relaxed);
        }
        self.retry(|w| w.segment(is_decision).flush_if_full())
    }

    fn segment(&mut self, decision: bool) -> &mut Segment {
        if decision {
            &mut self.decisions
        } else {
            &mut self.outcomes
        }
    }

    /// Close the current segment of this kind and open the next (idempotent on retry).
    fn rotate(&mut self, decision: bool) -> Result<(), LogError> {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S").to_string();
        self.segment(decision).finish()?;
        let replica = self.replica.lock().clone();
        loop {
            self.seq += 1;
            let kind = self.segment(decision).kind;
            let path = self
                .dir
                .join(segment_file_name(kind, replica.as_str(), &stamp, self.seq));
            match OpenOptions::new().create_new(true).append(true).open(&path) {
                Ok(file) => {
                    let seg = self.segment(decision);
                    seg.file = Some(SegmentFile {
                        path,
                        file,
                        buf: Vec::with_capacity(BUFFER_BYTES),
                    });
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
