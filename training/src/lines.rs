//! Line-by-line reading of JSON Lines files (service log segments, canonical tables). Below both
//! `table` and `ingest`, which read lines through it and depend on nothing else of each other's
//! for it.

use std::io::BufRead;
use std::ops::ControlFlow;
use std::path::Path;

use crate::error::TrainError;

/// Calls `f(line_number, line)` for each non-blank line of a JSONL file.
pub fn for_each_line(
    path: &Path,
    mut f: impl FnMut(usize, &str) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    let _always_continues = try_for_each_line(path, |n, line| {
        f(n, line).map(|()| ControlFlow::Continue(()))
    })?;
    Ok(())
}

/// Like [`for_each_line`], stopping early when `f` returns `ControlFlow::Break`.
pub fn try_for_each_line(
    path: &Path,
    mut f: impl FnMut(usize, &str) -> Result<ControlFlow<()>, TrainError>,
) -> Result<ControlFlow<()>, TrainError> {
    let file = std::fs::File::open(path).map_err(TrainError::io(path))?;
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(TrainError::io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        if f(i + 1, &line)?.is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
}
