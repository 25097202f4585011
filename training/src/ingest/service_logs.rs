//! The service's own JSON Lines logs: `decisions-*.jsonl` joined with
//! `outcomes-*.jsonl` on `decision_id`. The prompt comes from the decision; outcome
//! rows whose decision stored no prompt (`prompt: null`) are reported and skipped.
//! Records are read as the projections [`DecisionPrompt`] and [`OutcomeLabel`] of the
//! service's log schema ([`signalbox_features::log_schema`]; every version of it): unknown
//! extra fields are ignored (the log schema may grow). The join is a grace hash
//! join through temporary partition files, so memory does not grow with the log
//! (see [`ingest_dirs_with`]).
//!
//! Several replicas each write their own segments (`decisions-<replica>-<start>-<seq>.jsonl`),
//! in one directory or one each, and an outcome is logged by the replica it was reported to,
//! not always the one that made the decision: the logs of all replicas are joined as one log
//! (every directory's decisions and outcomes go into the same partitions), which gives the
//! same table as one replica's log of the same traffic.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use signalbox_features::log_schema::{DecisionPrompt, OutcomeLabel};
use signalbox_features::log_segments::sort_segments;

use super::spill::{SpillReader, SpillWriter, hash64};
use super::{BadRow, BadRowPolicy, IngestReport, segment_files};
use crate::error::TrainError;
use crate::lines::{for_each_line, try_for_each_line};
use crate::table::{OutcomeRow, TableWriter};

pub const SOURCE: &str = "service";

/// The row's `task`: the caller's category when given, else the logged task type (what the
/// service featurizes as the task); `None` when neither is set or both are empty.
fn task_of(d: &DecisionPrompt) -> Option<&str> {
    fn non_empty(t: &Option<String>) -> Option<&str> {
        t.as_deref().filter(|t| !t.is_empty())
    }
    non_empty(&d.category).or(non_empty(&d.task))
}

/// Decision bytes (of the input files) per partition of the join, by default.
pub const DEFAULT_JOIN_BUDGET_BYTES: u64 = 64 << 20;
/// Upper bound on the number of partitions (each needs an open file while spilling).
pub const MAX_PARTITIONS: usize = 1024;

/// How the decision/outcome join bounds its memory.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// Decision bytes (sum of the `decisions-*.jsonl` file sizes) per partition: the join
    /// uses K = ceil(total / budget) partitions (at most [`MAX_PARTITIONS`]) and holds one
    /// partition's decisions in memory at a time.
    pub budget_bytes: u64,
    /// Directory in which the temporary partition directory is created (removed
    /// afterwards); default: the output table's directory.
    pub temp_parent: Option<PathBuf>,
}

impl Default for JoinOptions {
    fn default() -> JoinOptions {
        JoinOptions {
            budget_bytes: DEFAULT_JOIN_BUDGET_BYTES,
            temp_parent: None,
        }
    }
}

/// Number of join partitions for `decision_bytes` of decision logs.
pub fn partitions_for(decision_bytes: u64, budget_bytes: u64) -> usize {
    let k = decision_bytes.div_ceil(budget_bytes.max(1)).max(1);
    usize::try_from(k).map_or(MAX_PARTITIONS, |k| k.min(MAX_PARTITIONS))
}

fn partition_of(decision_id: &str, k: usize) -> usize {
    (hash64(decision_id) % k as u64) as usize
}

/// One outcome line on its way through the join, with where it came from.
struct Tagged {
    /// Index into the outcome file list.
    file: usize,
    line: usize,
    rec: Rec,
}

enum Rec {
    /// A valid outcome; `prompt`/`task` are filled in by the join.
    Outcome {
        decision_id: String,
        model_id: String,
        quality: f64,
        cost_usd: Option<f64>,
        latency_ms: Option<f64>,
        ts: String,
        prompt: Option<String>,
        task: Option<String>,
    },
    /// A bad row (reported with [`IngestReport::bad`]).
    Bad(String),
    /// An outcome whose decision stored no prompt.
    NoPrompt(String),
}

impl Tagged {
    fn encode(&self, w: &mut SpillWriter) -> Result<(), TrainError> {
        w.record(|e| {
            e.u64(self.file as u64);
            e.u64(self.line as u64);
            match &self.rec {
                Rec::Outcome {
                    decision_id,
                    model_id,
                    quality,
                    cost_usd,
                    latency_ms,
                    ts,
                    prompt,
                    task,
                } => {
                    e.u8(0);
                    e.str(decision_id);
                    e.str(model_id);
                    e.f64(*quality);
                    e.opt_f64(*cost_usd);
                    e.opt_f64(*latency_ms);
                    e.str(ts);
                    e.opt_str(prompt.as_deref());
                    e.opt_str(task.as_deref());
                }
                Rec::Bad(reason) => {
                    e.u8(1);
                    e.str(reason);
                }
                Rec::NoPrompt(reason) => {
                    e.u8(2);
                    e.str(reason);
                }
            }
        })
    }

    fn read(r: &mut SpillReader) -> Result<Option<Tagged>, TrainError> {
        let Some(mut d) = r.next_record()? else {
            return Ok(None);
        };
        let file = d.u64()? as usize;
        let line = d.u64()? as usize;
        let rec = match d.u8()? {
            0 => Rec::Outcome {
                decision_id: d.str()?,
                model_id: d.str()?,
                quality: d.f64()?,
                cost_usd: d.opt_f64()?,
                latency_ms: d.opt_f64()?,
                ts: d.str()?,
                prompt: d.opt_str()?,
                task: d.opt_str()?,
            },
            1 => Rec::Bad(d.str()?),
            _ => Rec::NoPrompt(d.str()?),
        };
        Ok(Some(Tagged { file, line, rec }))
    }
}

/// The directories that `--service-logs` values name, in order, each once: a value that is
/// an existing path, or has no glob character (`*`, `?`, `[`), is one directory (a missing one
/// is reported when it is read); otherwise it is a glob pattern (e.g. `logs/replica-*`), and
/// the directories it matches are taken in name order (files and hidden entries are not). A
/// pattern that matches no directory is an error naming it (`flag` names the option). A
/// directory named twice (also through a pattern or another spelling of its path) is read once.
pub fn expand_dirs(flag: &str, values: &[PathBuf]) -> Result<Vec<PathBuf>, TrainError> {
    let pattern_error = |value: &Path, message: String| {
        TrainError::Argument(format!(
            "{flag} {:?}: {message}",
            value.display().to_string()
        ))
    };
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for value in values {
        let text = value.to_string_lossy();
        let is_pattern = text.contains(['*', '?', '[']);
        let matched = if value.exists() || !is_pattern {
            vec![value.clone()]
        } else {
            let text = value
                .to_str()
                .ok_or_else(|| pattern_error(value, "a pattern must be UTF-8".into()))?;
            let options = glob::MatchOptions {
                require_literal_leading_dot: true,
                ..glob::MatchOptions::new()
            };
            let paths = glob::glob_with(text, options)
                .map_err(|e| pattern_error(value, format!("not a valid pattern: {e}")))?;
            let mut dirs = Vec::new();
            for path in paths {
                let path = path.map_err(|e| TrainError::Io {
                    path: e.path().to_path_buf(),
                    source: e.into(),
                })?;
                if path.is_dir() {
                    dirs.push(path);
                }
            }
            if dirs.is_empty() {
                return Err(pattern_error(value, "matches no directory".into()));
            }
            dirs
        };
        for dir in matched {
            let key = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
            if seen.insert(key) {
                out.push(dir);
            }
        }
    }
    Ok(out)
}

/// Ingests every decision/outcome segment in `dir` with the default [`JoinOptions`].
pub fn ingest_dir(
    dir: &Path,
    writer: &mut TableWriter,
    report: &mut IngestReport,
    policy: BadRowPolicy,
    progress: &indicatif::ProgressBar,
) -> Result<(), TrainError> {
    ingest_dir_with(
        dir,
        writer,
        report,
        policy,
        progress,
        &JoinOptions::default(),
    )
}

/// [`ingest_dirs_with`] of one directory.
pub fn ingest_dir_with(
    dir: &Path,
    writer: &mut TableWriter,
    report: &mut IngestReport,
    policy: BadRowPolicy,
    progress: &indicatif::ProgressBar,
    opts: &JoinOptions,
) -> Result<(), TrainError> {
    ingest_dirs_with(
        std::slice::from_ref(&dir.to_path_buf()),
        writer,
        report,
        policy,
        progress,
        opts,
    )
}

/// Ingests every decision/outcome segment in `dirs` (the directories of one or more replicas,
/// as [`expand_dirs`] lists them) as one log, with a grace hash join whose memory is bounded
/// by `opts.budget_bytes` of decisions:
///
/// 1. decision lines are parsed and spilled as (decision_id, prompt, task) into K
///    temporary partition files by hash of decision_id;
/// 2. outcome lines are parsed, checked and spilled (with their file and line) into the
///    K partitions by the same hash; malformed lines go along as bad-row records;
/// 3. each partition's decisions are loaded into a hash map and its outcomes joined;
/// 4. the K joined streams are merged back into input (file, line) order, so the table
///    rows, bad rows and skipped rows come out exactly as a one-pass in-memory join
///    would produce them, whatever K is.
///
/// Every directory's decisions and outcomes go into the same K partitions, so an outcome finds
/// its decision whichever replica logged either. "File order" is the order of the segments of
/// all directories together: by start time, then sequence number, then replica id, then path
/// ([`signalbox_features::log_segments::segment_order`]). A decision_id logged more than once
/// (only a corrupted or copied log has that, e.g. a copy of a replica's directory given beside
/// it) keeps its last record in that order, as within one directory; every outcome line is one
/// row, as it always was. A directory or segment given twice (also under another spelling of its
/// path) is read once.
///
/// With [`BadRowPolicy::Fail`] the outcome scan stops at the first malformed line, and
/// the merge fails at the first bad row in file order (a malformed line, or an outcome
/// whose decision_id is unknown).
///
/// A directory without segments adds nothing; none of them having any is an error.
pub fn ingest_dirs_with(
    dirs: &[PathBuf],
    writer: &mut TableWriter,
    report: &mut IngestReport,
    policy: BadRowPolicy,
    progress: &indicatif::ProgressBar,
    opts: &JoinOptions,
) -> Result<(), TrainError> {
    if dirs.is_empty() {
        return Err(TrainError::Argument(
            "no service-log directory to read".into(),
        ));
    }
    let mut decision_files = Vec::new();
    let mut outcome_files = Vec::new();
    let mut seen = HashSet::new();
    for dir in dirs {
        for (kind, files) in [
            ("decisions", &mut decision_files),
            ("outcomes", &mut outcome_files),
        ] {
            for path in segment_files(dir, kind)? {
                let key = std::fs::canonicalize(&path).map_err(TrainError::io(&path))?;
                if seen.insert(key) {
                    files.push(path);
                }
            }
        }
    }
    sort_segments(&mut decision_files, "decisions");
    sort_segments(&mut outcome_files, "outcomes");
    if decision_files.is_empty() && outcome_files.is_empty() {
        let names: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        return Err(TrainError::BadInput {
            path: PathBuf::from(names.join(", ")),
            message: "no decisions-*.jsonl or outcomes-*.jsonl segment files".into(),
        });
    }
    let mut decision_bytes = 0u64;
    for p in &decision_files {
        decision_bytes += std::fs::metadata(p).map_err(TrainError::io(p))?.len();
    }
    let k = partitions_for(decision_bytes, opts.budget_bytes);
    report.join_partitions = report.join_partitions.max(k);
    let parent = match &opts.temp_parent {
        Some(p) => p.clone(),
        None => match writer.path().parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        },
    };
    let tmp = tempfile::Builder::new()
        .prefix(".signalbox-join-")
        .tempdir_in(&parent)
        .map_err(TrainError::io(&parent))?;
    let part = |kind: &str, p: usize| tmp.path().join(format!("{kind}-{p:04}"));

    // 1. Decisions -> K partitions.
    let mut spill = (0..k)
        .map(|p| SpillWriter::create(&part("decisions", p)))
        .collect::<Result<Vec<_>, _>>()?;
    for path in &decision_files {
        report.files_read += 1;
        progress.set_message(format!("{}", path.display()));
        for_each_line(path, |line_no, line| {
            match serde_json::from_str::<DecisionPrompt>(line) {
                Ok(d) => {
                    let prompt = d.prompt.as_deref().filter(|p| !p.trim().is_empty());
                    spill[partition_of(&d.decision_id, k)].record(|e| {
                        e.str(&d.decision_id);
                        e.opt_str(prompt);
                        e.opt_str(task_of(&d));
                    })
                }
                Err(e) => report.bad(bad(path, line_no, format!("decision: {e}")), policy),
            }
        })?;
        progress.inc(1);
    }
    for w in spill {
        w.finish()?;
    }

    // 2. Outcomes -> K partitions.
    let mut spill = (0..k)
        .map(|p| SpillWriter::create(&part("outcomes", p)))
        .collect::<Result<Vec<_>, _>>()?;
    for (file, path) in outcome_files.iter().enumerate() {
        report.files_read += 1;
        progress.set_message(format!("{}", path.display()));
        let flow = try_for_each_line(path, |line_no, line| {
            let (p, rec) = match check_outcome(line) {
                Ok(o) => (
                    partition_of(&o.decision_id, k),
                    Rec::Outcome {
                        decision_id: o.decision_id,
                        model_id: o.model_id,
                        quality: o.quality,
                        cost_usd: o.cost_usd,
                        latency_ms: o.latency_ms,
                        ts: o.ts,
                        prompt: None,
                        task: None,
                    },
                ),
                Err(reason) => (line_no % k, Rec::Bad(reason)),
            };
            let stop = matches!(rec, Rec::Bad(_)) && policy == BadRowPolicy::Fail;
            Tagged {
                file,
                line: line_no,
                rec,
            }
            .encode(&mut spill[p])?;
            Ok(if stop {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })?;
        progress.inc(1);
        if flow.is_break() {
            break;
        }
    }
    for w in spill {
        w.finish()?;
    }

    // 3. + 4. Join each partition, merge back into input order.
    let mut emit = Emitter {
        writer,
        report,
        policy,
        files: &outcome_files,
        written: 0,
    };
    if k == 1 {
        join_partition(&part("decisions", 0), &part("outcomes", 0), |t| {
            emit.emit(t)
        })?;
    } else {
        for p in 0..k {
            let (d, o) = (part("decisions", p), part("outcomes", p));
            let mut joined = SpillWriter::create(&part("joined", p))?;
            join_partition(&d, &o, |t| t.encode(&mut joined))?;
            joined.finish()?;
            for f in [&d, &o] {
                std::fs::remove_file(f).map_err(TrainError::io(f))?;
            }
        }
        let mut readers = (0..k)
            .map(|p| SpillReader::open(&part("joined", p)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut heads: Vec<Option<Tagged>> = Vec::with_capacity(k);
        let mut heap = BinaryHeap::with_capacity(k);
        for (p, r) in readers.iter_mut().enumerate() {
            let head = Tagged::read(r)?;
            if let Some(t) = &head {
                heap.push(Reverse((t.file, t.line, p)));
            }
            heads.push(head);
        }
        while let Some(Reverse((_, _, p))) = heap.pop() {
            if let Some(t) = heads[p].take() {
                emit.emit(t)?;
            }
            let next = Tagged::read(&mut readers[p])?;
            if let Some(t) = &next {
                heap.push(Reverse((t.file, t.line, p)));
            }
            heads[p] = next;
        }
    }
    let written = emit.written;
    report.rows_written += written;
    report.count_source(SOURCE, written);
    let tmp_path = tmp.path().to_path_buf();
    tmp.close().map_err(TrainError::io(tmp_path))?;
    Ok(())
}

/// Parses and checks one outcome line; Err is the bad-row reason.
fn check_outcome(line: &str) -> Result<OutcomeLabel, String> {
    let o = serde_json::from_str::<OutcomeLabel>(line).map_err(|e| format!("outcome: {e}"))?;
    if !o.success.is_boolean() {
        return Err(format!("non-boolean success {}", o.success));
    }
    if !(0.0..=1.0).contains(&o.quality) {
        return Err(format!("quality {} outside [0, 1]", o.quality));
    }
    Ok(o)
}

/// Joins one partition: its decisions in a hash map (a repeated decision_id keeps the
/// last record), its outcomes streamed through `sink` in the order they were spilled.
fn join_partition(
    decisions_path: &Path,
    outcomes_path: &Path,
    mut sink: impl FnMut(Tagged) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    type Info = (Option<Box<str>>, Option<Box<str>>);
    let mut decisions: HashMap<Box<str>, Info> = HashMap::new();
    let mut r = SpillReader::open(decisions_path)?;
    while let Some(mut d) = r.next_record()? {
        let id = d.str()?;
        let prompt = d.opt_str()?.map(String::into_boxed_str);
        let task = d.opt_str()?.map(String::into_boxed_str);
        decisions.insert(id.into_boxed_str(), (prompt, task));
    }
    let mut r = SpillReader::open(outcomes_path)?;
    while let Some(mut t) = Tagged::read(&mut r)? {
        let replace = match &mut t.rec {
            Rec::Outcome {
                decision_id,
                prompt,
                task,
                ..
            } => match decisions.get(decision_id.as_str()) {
                None => Some(Rec::Bad(format!("unknown decision_id {decision_id:?}"))),
                Some((None, _)) => Some(Rec::NoPrompt(format!(
                    "decision {decision_id:?} stored no prompt"
                ))),
                Some((Some(p), tk)) => {
                    *prompt = Some(p.to_string());
                    *task = tk.as_deref().map(str::to_string);
                    None
                }
            },
            _ => None,
        };
        if let Some(rec) = replace {
            t.rec = rec;
        }
        sink(t)?;
    }
    Ok(())
}

/// Writes joined rows and records bad/skipped rows, in the order it is given them.
struct Emitter<'a> {
    writer: &'a mut TableWriter,
    report: &'a mut IngestReport,
    policy: BadRowPolicy,
    files: &'a [PathBuf],
    written: usize,
}

impl Emitter<'_> {
    fn emit(&mut self, t: Tagged) -> Result<(), TrainError> {
        let path = self
            .files
            .get(t.file)
            .map_or(Path::new("?"), PathBuf::as_path);
        match t.rec {
            Rec::Outcome {
                decision_id,
                model_id,
                quality,
                cost_usd,
                latency_ms,
                ts,
                prompt,
                task,
            } => {
                self.writer.push(OutcomeRow {
                    prompt_id: format!("{SOURCE}:{decision_id}"),
                    prompt,
                    task,
                    model_id,
                    quality,
                    cost_usd,
                    latency_ms,
                    timestamp: Some(ts),
                    source: SOURCE.to_string(),
                })?;
                self.written += 1;
            }
            Rec::Bad(reason) => self.report.bad(bad(path, t.line, reason), self.policy)?,
            Rec::NoPrompt(reason) => self
                .report
                .no_prompt_skipped
                .push(bad(path, t.line, reason)),
        }
        Ok(())
    }
}

fn bad(path: &Path, line: usize, reason: String) -> BadRow {
    BadRow {
        file: path.to_path_buf(),
        line,
        reason,
    }
}
