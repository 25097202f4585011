//! Errors of the featurizer and bundle layer.

use std::path::PathBuf;

/// Everything that can go wrong while loading a bundle or featurizing a prompt.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid JSON in {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    #[error("unsupported bundle manifest version {found} (this build reads {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("invalid bundle: {0}")]
    InvalidBundle(String),
    #[error("output buffer has {got} floats, featurizer dimension is {expected}")]
    DimensionMismatch { expected: usize, got: usize },
    #[error("no quality target in the bundle covers the requested target {0}")]
    NoTarget(f64),
}
