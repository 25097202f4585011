//! Reading the log back: segment listing, every record of a kind, or the newest ones first.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use signalbox_features::log_segments;

use super::{LogError, io_err};

/// Segment files of one kind ("decisions" or "outcomes") in `dir`, oldest first: those of every
/// replica that writes into `dir`, and those named before replica ids existed, ordered by start
/// time, then sequence, then replica id ([`log_segments::segment_order`]).
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
        if log_segments::is_segment_of(name, kind) {
            out.push(path);
        }
    }
    log_segments::sort_segments(&mut out, kind);
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
    for (path, _) in segments_since(dir, kind, modified_since)? {
        read_segment(&path, &mut on_record, &mut on_bad)?;
    }
    Ok(())
}

/// [`segments`] last modified at or after `modified_since` (all when `None`), with their
/// metadata.
pub(super) fn segments_since(
    dir: &Path,
    kind: &str,
    modified_since: Option<std::time::SystemTime>,
) -> Result<Vec<(PathBuf, std::fs::Metadata)>, LogError> {
    let mut out = Vec::new();
    for path in segments(dir, kind)? {
        let meta = std::fs::metadata(&path).map_err(io_err(&path))?;
        if let Some(since) = modified_since
            && meta.modified().map_err(io_err(&path))? < since
        {
            continue;
        }
        out.push((path, meta));
    }
    Ok(out)
}

/// The newest `keep` records of one kind that `accept` maps to `Some`, oldest first. Segments
/// are read newest first until `keep` are found; segments last modified before `modified_since`
/// are not read. Unparsable lines go to `on_bad(path, line_no, error)`.
pub fn read_newest<T: for<'de> Deserialize<'de>, U>(
    dir: &Path,
    kind: &str,
    modified_since: Option<std::time::SystemTime>,
    keep: usize,
    mut accept: impl FnMut(T) -> Option<U>,
    mut on_bad: impl FnMut(&Path, usize, String),
) -> Result<Vec<U>, LogError> {
    let mut newest_first: Vec<Vec<U>> = Vec::new();
    let mut found = 0usize;
    for (path, _) in segments_since(dir, kind, modified_since)?.into_iter().rev() {
        if found >= keep {
            break;
        }
        let mut records = Vec::new();
        read_segment(&path, |r: T| records.extend(accept(r)), &mut on_bad)?;
        found += records.len();
        newest_first.push(records);
    }
    let mut out: Vec<U> = newest_first.into_iter().rev().flatten().collect();
    let extra = out.len().saturating_sub(keep);
    out.drain(..extra);
    Ok(out)
}

/// Read one segment's records; unparsable lines go to `on_bad(path, line_no, error)`.
pub(super) fn read_segment<T: for<'de> Deserialize<'de>>(
    path: &Path,
    mut on_record: impl FnMut(T),
    mut on_bad: impl FnMut(&Path, usize, String),
) -> Result<(), LogError> {
    let file = File::open(path).map_err(io_err(path))?;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<T>(&line) {
            Ok(r) => on_record(r),
            Err(e) => on_bad(path, i + 1, e.to_string()),
        }
    }
    Ok(())
}
