//! signalbox-train: logged outcomes -> canonical table -> routing classifier (linfa)
//! -> ONNX bundle + RouteLLM-style evaluation report.

pub mod bundle;
pub mod dataset;
pub mod error;
pub mod evaluate;
pub mod featurize;
pub mod ingest;
pub mod lines;
pub mod metrics;
pub mod model;
pub mod onnx;
pub mod pipeline;
pub mod progress;
pub mod reliability;
pub mod report;
#[cfg(feature = "rules-baseline")]
pub mod rules;
pub mod select;
pub mod shadow;
pub mod synth;
pub mod table;

pub use error::TrainError;
