//! `manifest.json`: what a bundle contains and how to use it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::FeatureError;
use crate::meta::MetaFeature;

/// File name of the manifest inside a bundle directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Manifest format version written and read by this build.
pub const MANIFEST_VERSION: u32 = 1;
/// Longest task name a bundle may list (the service's `category` has the same limit).
pub const MAX_TASK_BYTES: usize = 64;
/// Characters a task name may use besides ASCII letters and digits.
pub const TASK_PUNCTUATION: &str = "_.:/-";

/// Whether `name` can be a task column: 1 to [`MAX_TASK_BYTES`] bytes of ASCII letters, digits
/// and [`TASK_PUNCTUATION`], the names a request's `category` may carry (so no column is one
/// the service can never be sent).
pub fn is_valid_task_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TASK_BYTES
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || TASK_PUNCTUATION.contains(c))
}
/// The only feature kind this build implements.
pub const FEATURE_KIND: &str = "hashed_tfidf_v1";

/// Top-level bundle manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleManifest {
    /// Always [`MANIFEST_VERSION`].
    pub version: u32,
    /// Bundle name (the directory name under `models/`).
    pub name: String,
    /// RFC 3339 UTC creation time.
    pub created_at: String,
    /// Model ids in the order of the ONNX output columns.
    pub models: Vec<ModelEntry>,
    /// A model "answers acceptably" when its quality is >= this (labels of the classifier).
    pub quality_threshold: f64,
    pub features: FeatureConfig,
    pub onnx: OnnxSpec,
    /// Routing rule: see [`crate::routing::choose`].
    pub routing_rule: String,
    /// Calibrated margins per quality target, ascending by `target`.
    pub quality_targets: Vec<QualityTarget>,
    /// The same calibration on the prompt-only scores, for requests whose task the bundle does
    /// not list (their scores have another distribution). Empty: `quality_targets` serve every
    /// request (bundles without task columns).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quality_targets_prompt_only: Vec<QualityTarget>,
    pub training: TrainingInfo,
    /// Held-out metrics per router name (`learned`, `random`, `oracle`, ...).
    pub metrics: BTreeMap<String, RouterMetrics>,
}

/// One model of the bundle, at ONNX output column `index`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub id: String,
    /// Relative cost of one call, used to order models from cheapest to dearest.
    pub cost: f64,
}

/// How text becomes the float vector fed to the ONNX model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureConfig {
    /// Always `hashed_tfidf_v1`.
    pub kind: String,
    /// Bundle-relative path of the tokenizer (`tokenizer.json`).
    pub tokenizer_file: String,
    /// Bundle-relative path of the IDF table (`idf.json`, `2^hash_bits` floats).
    pub idf_file: String,
    /// Number of hash buckets is `2^hash_bits`.
    pub hash_bits: u32,
    /// Token n-grams of orders `1..=ngram_max` are hashed.
    pub ngram_max: usize,
    /// Only the first `max_prompt_bytes` bytes (cut at a char boundary) are tokenized.
    pub max_prompt_bytes: usize,
    /// Only the first `max_tokens` tokens of that window are used.
    pub max_tokens: usize,
    /// `tf -> 1 + ln(tf)` before the IDF weighting.
    pub sublinear_tf: bool,
    /// Meta features appended after the `2^hash_bits` TF-IDF floats, in this order.
    pub meta: Vec<MetaFeature>,
    /// Task one-hot columns appended after the meta features, strictly ascending: a request's
    /// task (the caller's category, else the service's task type) sets its column to 1 when it
    /// is listed here exactly; an unlisted or absent task sets none. Absent: no task columns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<String>,
    /// The columns of the full feature vector (`2^hash_bits` buckets, the meta features, then
    /// the task columns)
    /// the classifier uses, strictly ascending: the featurizer emits only these, in this order
    /// (the TF-IDF L2 norm is still taken over all buckets). Absent: every column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<u32>>,
    /// Input width: `columns.len()`, or `2^hash_bits + meta.len() + tasks.len()` without
    /// `columns`.
    pub dim: usize,
}

impl FeatureConfig {
    pub fn hash_dim(&self) -> usize {
        1usize << self.hash_bits
    }

    /// Width of the full feature vector: `2^hash_bits + meta.len() + tasks.len()`.
    pub fn full_dim(&self) -> usize {
        self.hash_dim() + self.meta.len() + self.tasks.len()
    }

    /// Position of `task` in [`Self::tasks`], if listed.
    pub fn task_index(&self, task: &str) -> Option<usize> {
        self.tasks.binary_search_by(|t| t.as_str().cmp(task)).ok()
    }

    /// Column of the full feature vector that `task` sets, if it is one of [`Self::tasks`].
    pub fn task_column(&self, task: &str) -> Option<usize> {
        self.task_index(task)
            .map(|i| self.hash_dim() + self.meta.len() + i)
    }

    /// Checks internal consistency (kind, ranges, `dim`).
    pub fn validate(&self) -> Result<(), FeatureError> {
        let bad = |m: String| Err(FeatureError::InvalidBundle(m));
        if self.kind != FEATURE_KIND {
            return bad(format!(
                "feature kind {:?} is not {FEATURE_KIND:?}",
                self.kind
            ));
        }
        if !(4..=24).contains(&self.hash_bits) {
            return bad(format!("hash_bits {} outside 4..=24", self.hash_bits));
        }
        if !(1..=4).contains(&self.ngram_max) {
            return bad(format!("ngram_max {} outside 1..=4", self.ngram_max));
        }
        if self.max_tokens == 0 || self.max_prompt_bytes == 0 {
            return bad("max_tokens and max_prompt_bytes must be positive".into());
        }
        if let Some(t) = self.tasks.iter().find(|t| !is_valid_task_name(t)) {
            return bad(format!(
                "task {t:?} is not 1 to {MAX_TASK_BYTES} bytes of A-Z a-z 0-9 {TASK_PUNCTUATION}"
            ));
        }
        if self.tasks.windows(2).any(|w| w[0] >= w[1]) {
            return bad("tasks must be strictly ascending (sorted, no repeats)".into());
        }
        match &self.columns {
            None if self.dim != self.full_dim() => {
                return bad(format!(
                    "dim {} != 2^hash_bits + meta features ({})",
                    self.dim,
                    self.full_dim()
                ));
            }
            None => {}
            Some(cols) => {
                if cols.is_empty() || cols.len() != self.dim {
                    return bad(format!(
                        "dim {} != number of selected columns ({})",
                        self.dim,
                        cols.len()
                    ));
                }
                if cols.windows(2).any(|w| w[0] >= w[1]) {
                    return bad("columns must be strictly ascending".into());
                }
                if cols.last().is_some_and(|&c| c as usize >= self.full_dim()) {
                    return bad(format!(
                        "column {:?} outside the {} features",
                        cols.last(),
                        self.full_dim()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Names, shapes and opset of `model.onnx`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnnxSpec {
    pub file: String,
    pub opset: i64,
    pub ir_version: i64,
    /// Input tensor name (`features`), float32 `[batch, dim]`.
    pub input_name: String,
    /// Output tensor name (`p_acceptable`), float32 `[batch, models.len()]`.
    pub output_name: String,
    /// Shapes with `"batch"` for the dynamic dimension.
    pub input_shape: Vec<String>,
    pub output_shape: Vec<String>,
}

/// Calibration of one quality target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityTarget {
    /// Requested quality as a fraction of the best single model's quality (e.g. 0.95).
    pub target: f64,
    /// Margin to pass to [`crate::routing::choose`]: the cheapest model whose predicted
    /// P(acceptable) is within `margin` of the highest prediction is chosen.
    pub margin: f64,
    /// Quality reached on the calibration split, as a fraction of the best model's.
    pub achieved_quality_ratio: f64,
    /// Mean cost on the calibration split, as a fraction of always using the best model.
    pub cost_ratio: f64,
}

/// Provenance of the bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingInfo {
    /// sha256 (hex) of the canonical training table file(s).
    pub data_sha256: String,
    pub data_sources: Vec<String>,
    pub train_prompts: usize,
    pub test_prompts: usize,
    /// How the split was made (`seeded random 70/30, seed 42` or explicit files).
    pub split: String,
    /// Which split the quality targets were calibrated on.
    pub calibration_split: String,
    /// Classifier description (`linfa-logistic L2 logistic regression per model`).
    pub classifier: String,
    /// L2 strength of the classifier (linfa-ftrl's `l2_ratio`).
    pub l2_alpha: f64,
    pub tokenizer_vocab_size: usize,
    pub signalbox_train_version: String,
    /// How the classifier's settings were chosen, when they were chosen by cross-validation
    /// on the training split (bundles written before this field have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<CvSelection>,
}

/// Hyperparameters chosen by seeded k-fold cross-validation on the training prompts only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CvSelection {
    pub folds: usize,
    pub seed: u64,
    /// What the candidates were scored by (lower is better).
    pub criterion: String,
    pub chosen: CvCandidate,
    /// Every candidate of the grid with its score.
    pub candidates: Vec<CvCandidate>,
}

/// One candidate of a [`CvSelection`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CvCandidate {
    pub settings: CvSettings,
    /// The criterion on the pooled out-of-fold predictions.
    pub score: f64,
    /// The criterion on each fold's held-out prompts.
    pub fold_scores: Vec<f64>,
}

/// The classifier settings one candidate tries.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CvSettings {
    pub epochs: usize,
    pub learning_rate: f64,
    pub l1: f64,
    pub l2: f64,
    /// Hashed n-gram columns kept before fitting.
    pub columns: usize,
    pub task_lambda: f64,
}

impl std::fmt::Display for CvSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} epochs, learning rate {}, L1 {}, L2 {}, {} n-gram columns, task λ {}",
            self.epochs, self.learning_rate, self.l1, self.l2, self.columns, self.task_lambda
        )
    }
}

/// RouteLLM metrics of one router on the held-out split (fractions, not percent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterMetrics {
    pub apgr: f64,
    pub cpt50: Option<f64>,
    pub cpt80: Option<f64>,
}

impl BundleManifest {
    /// Reads and validates `<dir>/manifest.json`.
    pub fn load(dir: &Path) -> Result<BundleManifest, FeatureError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| FeatureError::Io {
            path: path.clone(),
            source,
        })?;
        let manifest: BundleManifest =
            serde_json::from_str(&text).map_err(|source| FeatureError::Json { path, source })?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Writes `<dir>/manifest.json` (pretty JSON).
    pub fn save(&self, dir: &Path) -> Result<(), FeatureError> {
        let path = dir.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|source| FeatureError::Json {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&path, text + "\n").map_err(|source| FeatureError::Io { path, source })
    }

    /// Checks version and internal consistency.
    pub fn validate(&self) -> Result<(), FeatureError> {
        if self.version != MANIFEST_VERSION {
            return Err(FeatureError::UnsupportedVersion {
                found: self.version,
                supported: MANIFEST_VERSION,
            });
        }
        self.features.validate()?;
        if self.models.is_empty() {
            return Err(FeatureError::InvalidBundle("no models".into()));
        }
        if self.routing_rule != crate::routing::RULE_CHEAPEST_WITHIN_MARGIN {
            return Err(FeatureError::InvalidBundle(format!(
                "unknown routing rule {:?}",
                self.routing_rule
            )));
        }
        if [&self.quality_targets, &self.quality_targets_prompt_only]
            .iter()
            .any(|q| q.windows(2).any(|w| w[0].target > w[1].target))
        {
            return Err(FeatureError::InvalidBundle(
                "quality_targets must be sorted by target".into(),
            ));
        }
        Ok(())
    }

    /// Position of `model_id` in the ONNX output, if the bundle knows it.
    pub fn model_index(&self, model_id: &str) -> Option<usize> {
        self.models.iter().position(|m| m.id == model_id)
    }

    /// The calibrated margin for a requested quality `target` (fraction of the best
    /// model's quality): the entry with the smallest target >= the request.
    /// With `task_known = false` (the request's task is not one of the bundle's task columns)
    /// the prompt-only calibration is used when the bundle has one.
    pub fn margin_for_target(&self, target: f64, task_known: bool) -> Result<f64, FeatureError> {
        let targets = if task_known || self.quality_targets_prompt_only.is_empty() {
            &self.quality_targets
        } else {
            &self.quality_targets_prompt_only
        };
        targets
            .iter()
            .find(|q| q.target + 1e-12 >= target)
            .map(|q| q.margin)
            .ok_or(FeatureError::NoTarget(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(columns: Option<Vec<u32>>, dim: usize) -> FeatureConfig {
        FeatureConfig {
            kind: FEATURE_KIND.into(),
            tokenizer_file: "tokenizer.json".into(),
            idf_file: "idf.json".into(),
            hash_bits: 4,
            ngram_max: 2,
            max_prompt_bytes: 100,
            max_tokens: 10,
            sublinear_tf: true,
            meta: vec![MetaFeature::LogBytes, MetaFeature::DigitShare],
            tasks: Vec::new(),
            columns,
            dim,
        }
    }

    #[test]
    fn task_columns_follow_the_meta_features_and_are_validated() {
        let mut c = config(None, 20);
        c.tasks = vec!["algebra".into(), "biology".into()];
        assert!(c.validate().is_ok());
        assert_eq!(c.full_dim(), 16 + 2 + 2);
        assert_eq!(c.task_column("algebra"), Some(18));
        assert_eq!(c.task_column("biology"), Some(19));
        assert_eq!(c.task_column("chemistry"), None);
        assert_eq!(c.task_column(""), None);
        // A column past the meta features is in range only because of the tasks.
        let mut sel = config(Some(vec![0, 19]), 2);
        assert!(sel.validate().unwrap_err().to_string().contains("outside"));
        sel.tasks = c.tasks.clone();
        assert!(sel.validate().is_ok());
        let err = |tasks: &[&str]| {
            let mut c = config(None, 16 + 2 + tasks.len());
            c.tasks = tasks.iter().map(|t| t.to_string()).collect();
            c.validate().unwrap_err().to_string()
        };
        assert!(err(&["b", "a"]).contains("ascending"));
        assert!(err(&["a", "a"]).contains("ascending"));
        assert!(err(&[""]).contains("not 1 to 64 bytes"));
        assert!(err(&[&"x".repeat(MAX_TASK_BYTES + 1)]).contains("not 1 to 64 bytes"));
        assert!(err(&["tax forms"]).contains("\"tax forms\""));
        assert!(err(&["géographie"]).contains("not 1 to 64 bytes"));
        assert!(is_valid_task_name("support-bot/code_review:v2.1"));
        // The field is optional in manifests (bundles written before it load unchanged) and
        // not written when empty.
        let json = serde_json::to_value(config(None, 18)).unwrap();
        assert!(json.get("tasks").is_none());
        let back: FeatureConfig = serde_json::from_value(json).unwrap();
        assert!(back.tasks.is_empty());
    }

    #[test]
    fn column_selection_is_validated() {
        assert!(config(None, 18).validate().is_ok());
        assert!(config(None, 17).validate().is_err());
        assert!(config(Some(vec![0, 5, 17]), 3).validate().is_ok());
        let err = |c: FeatureConfig| c.validate().unwrap_err().to_string();
        assert!(err(config(Some(vec![0, 5, 17]), 4)).contains("selected columns"));
        assert!(err(config(Some(vec![5, 5]), 2)).contains("ascending"));
        assert!(err(config(Some(vec![3, 1]), 2)).contains("ascending"));
        assert!(err(config(Some(vec![0, 18]), 2)).contains("outside"));
        assert!(err(config(Some(vec![]), 0)).contains("selected columns"));
    }
}
