//! The one featurizer, model-bundle format and decision/outcome log schema shared by the
//! signalbox service and its training CLI (`signalbox-train`).
//!
//! A bundle directory (`models/<name>/`) holds `manifest.json` ([`BundleManifest`]),
//! `tokenizer.json` (a `tokenizers` tokenizer trained on the training prompts),
//! `idf.json` (per-bucket inverse document frequencies), `model.onnx` (the
//! classifier) and `MODEL_CARD.md`.
//!
//! Serving flow: [`Featurizer::load`] once, then per request
//! [`Featurizer::featurize_into`] into a reused `Vec<f32>` of [`Featurizer::dim`]
//! floats, run `model.onnx` on it (input/output names in [`OnnxSpec`]), and pick a
//! model with [`routing::choose`] (margins from [`BundleManifest::margin_for_target`],
//! costs from the caller's catalog).
//!
//! The service's decision and outcome log records, and the projections its readers parse, are
//! in [`log_schema`]; the log's file names (one set of segments per replica) in [`log_segments`].

pub mod error;
pub mod fast_tokenizer;
pub mod featurizer;
pub mod hashing;
pub mod log_schema;
pub mod log_segments;
pub mod manifest;
pub mod meta;
pub mod routing;
pub mod vocab;

pub use error::FeatureError;
pub use featurizer::Featurizer;
pub use manifest::{
    BundleManifest, CvCandidate, CvSelection, CvSettings, FeatureConfig, MANIFEST_FILE,
    MANIFEST_VERSION, ModelEntry, OnnxSpec, QualityTarget, TrainingInfo,
};
pub use meta::MetaFeature;
