//! Errors of the training CLI.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("polars: {0}")]
    Polars(#[from] polars::error::PolarsError),
    #[error(transparent)]
    Feature(#[from] signalbox_features::FeatureError),
    #[error("{path}: {message}")]
    BadInput { path: PathBuf, message: String },
    #[error("{count} bad row(s) and --bad-rows=fail; first: {first}")]
    BadRowsFatal { count: usize, first: String },
    #[error("not enough data: {0}")]
    NotEnoughData(String),
    #[error("model fitting failed: {0}")]
    Fit(String),
    #[error("invalid argument: {0}")]
    Argument(String),
    #[error("ONNX: {0}")]
    Onnx(String),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl TrainError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
        let path = path.into();
        move |source| TrainError::Io { path, source }
    }
}
