//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn datasets() -> PathBuf {
    repo().join("datasets")
}

/// RouteLLM data beside the repository (`../shared/datasets/routellm`).
pub fn routellm() -> PathBuf {
    repo().join("../shared/datasets/routellm")
}

/// The last decision record of a service log directory (its newest segment, whichever replica
/// wrote it).
pub fn last_decision(dir: &std::path::Path) -> serde_json::Value {
    let files = signalbox_train::ingest::segment_files(dir, "decisions").unwrap();
    let text = std::fs::read_to_string(files.last().expect("a decision segment")).unwrap();
    serde_json::from_str(text.lines().last().expect("a decision line")).unwrap()
}
