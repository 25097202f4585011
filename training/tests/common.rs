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
