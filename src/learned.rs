//! The learned router: a trained bundle (`models/<name>/`: manifest, tokenizer, IDF table,
//! ONNX classifier) predicting, per catalog model, the probability that it answers acceptably.
//! Featurization is the shared `signalbox-features` crate, the same code training used.
//! Loading validates everything (shapes, model ids against the catalog, canary prompts) so a
//! bad bundle is rejected before it can serve.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Instant;

use signalbox_features::{BundleManifest, FeatureError, Featurizer, routing};

use crate::config::{BackendChoice, LearnedMode, LearnedPolicy, ModelIdx, Policy};
use crate::domain::Reason;
use crate::inference::{self, Backend, InferenceError, Scorer};
use crate::telemetry::phases::{Interval, RoutePhases};

#[derive(Debug, thiserror::Error)]
pub enum LearnedError {
    #[error("bundle {bundle}: {source}")]
    Feature {
        bundle: PathBuf,
        source: FeatureError,
    },
    #[error("bundle {bundle}: model: {source}")]
    Inference {
        bundle: PathBuf,
        source: InferenceError,
    },
    #[error("bundle {bundle}: names model {model:?}, which is not in the policy's catalog")]
    UnknownModel { bundle: PathBuf, model: String },
    #[error("bundle {bundle}: {message}")]
    Mismatch { bundle: PathBuf, message: String },
    #[error("bundle {bundle}: canary {canary:?} gave invalid predictions {predictions:?}")]
    Canary {
        bundle: PathBuf,
        canary: String,
        predictions: Vec<f32>,
    },
    #[error(
        "no ONNX Runtime library found: set learned.onnxruntime_library or ORT_DYLIB_PATH, or pip install onnxruntime"
    )]
    NoOnnxRuntime,
    #[error(transparent)]
    Backend(#[from] InferenceError),
    #[error("prediction failed: {0}")]
    Predict(String),
}

/// Prompts every bundle must score to finite probabilities before it may serve.
const CANARIES: [&str; 5] = [
    "What is the capital of Australia?",
    "Write a Python function that merges two sorted lists.",
    "Janet has 16 eggs and eats 3. How many are left?",
    "",
    "Which of the following is a prime number?\nA. 4\nB. 6\nC. 7\nD. 9\nAnswer:",
];

/// First 12 hex digits of the sha256 over the files that define the bundle's predictions
/// (manifest, ONNX model, tokenizer, IDF table), in that order.
fn artifact_hash(dir: &std::path::Path, manifest: &BundleManifest) -> Result<String, FeatureError> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for name in [
        signalbox_features::manifest::MANIFEST_FILE,
        manifest.onnx.file.as_str(),
        manifest.features.tokenizer_file.as_str(),
        manifest.features.idf_file.as_str(),
    ] {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|source| FeatureError::Io { path, source })?;
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(h.finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Map the policy's backend choice to a concrete backend and make it the process's backend.
pub fn init_backend(choice: &BackendChoice) -> Result<Backend, LearnedError> {
    let backend = match choice {
        BackendChoice::Tract => Backend::Tract,
        BackendChoice::OnnxRuntime(Some(path)) => Backend::OnnxRuntime {
            library: path.clone(),
        },
        BackendChoice::OnnxRuntime(None) => Backend::OnnxRuntime {
            library: inference::find_onnxruntime().ok_or(LearnedError::NoOnnxRuntime)?,
        },
    };
    inference::init_backend(&backend)?;
    Ok(backend)
}

/// What the learned router decided among the eligible models.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnedChoice {
    pub primary: ModelIdx,
    pub fallbacks: Vec<ModelIdx>,
    /// Cheaper models worth trying first in a cascade, cheapest first (excludes the primary).
    pub cascade_first: Vec<ModelIdx>,
    pub quality_target: f64,
    pub margin: f64,
    pub reasons: Vec<Reason>,
}

pub struct LearnedRouter {
    version: String,
    mode: LearnedMode,
    manifest: BundleManifest,
    featurizer: Featurizer,
    scorer: Scorer,
    /// ONNX output column → policy model.
    columns: Vec<ModelIdx>,
    /// Catalog price per column (micro-USD for 1k tokens in + 1k out): the one cost every
    /// learned choice uses (routing rule, fallback order, cascade).
    costs: Vec<f64>,
    min_target: f64,
    max_target: f64,
    cascade_band: f64,
}

thread_local! {
    static FEATURES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl LearnedRouter {
    /// Load and validate the bundle named by `learned` against `policy`'s catalog. The backend
    /// must already be initialised ([`init_backend`]).
    pub fn load(learned: &LearnedPolicy, policy: &Policy) -> Result<LearnedRouter, LearnedError> {
        let dir = &learned.bundle;
        let feature_err = |source| LearnedError::Feature {
            bundle: dir.clone(),
            source,
        };
        let manifest = BundleManifest::load(dir).map_err(feature_err)?;
        let featurizer = Featurizer::load_with(dir, &manifest.features).map_err(feature_err)?;
        let sessions = if learned.sessions == 0 {
            Scorer::default_sessions()
        } else {
            learned.sessions
        };
        let scorer = Scorer::load(&dir.join(&manifest.onnx.file), sessions).map_err(|source| {
            LearnedError::Inference {
                bundle: dir.clone(),
                source,
            }
        })?;
        let mismatch = |message: String| LearnedError::Mismatch {
            bundle: dir.clone(),
            message,
        };
        if scorer.input_dim() != featurizer.dim() {
            return Err(mismatch(format!(
                "model input has {} features, the featurizer makes {}",
                scorer.input_dim(),
                featurizer.dim()
            )));
        }
        if scorer.output_dim() != manifest.models.len() {
            return Err(mismatch(format!(
                "model outputs {} columns, the manifest lists {} models",
                scorer.output_dim(),
                manifest.models.len()
            )));
        }
        let mut columns = Vec::with_capacity(manifest.models.len());
        for m in &manifest.models {
            columns.push(
                policy
                    .find_model(&m.id)
                    .ok_or_else(|| LearnedError::UnknownModel {
                        bundle: dir.clone(),
                        model: m.id.clone(),
                    })?,
            );
        }
        let costs: Vec<f64> = columns
            .iter()
            .map(|&m| policy.model(m).cost(1000, 1000).0 as f64)
            .collect();
        check_cost_order(&manifest, &costs, policy, &columns).map_err(mismatch)?;
        // Every quality target the policy can ask for must be calibrated.
        for t in [learned.min_quality_target, learned.max_quality_target] {
            for task_known in [true, false] {
                manifest
                    .margin_for_target(t, task_known)
                    .map_err(feature_err)?;
            }
        }
        let version = format!(
            "{}@{}",
            manifest.name,
            artifact_hash(dir, &manifest).map_err(feature_err)?
        );
        let router = LearnedRouter {
            version,
            mode: learned.mode,
            manifest,
            featurizer,
            scorer,
            columns,
            costs,
            min_target: learned.min_quality_target,
            max_target: learned.max_quality_target,
            cascade_band: learned.cascade_band,
        };
        for canary in CANARIES {
            let p = router.predict(canary, None)?;
            if p.len() != router.columns.len()
                || p.iter().any(|v| !v.is_finite() || !(0.0..=1.0).contains(v))
            {
                return Err(LearnedError::Canary {
                    bundle: dir.clone(),
                    canary: canary.to_string(),
                    predictions: p,
                });
            }
        }
        Ok(router)
    }

    /// `<bundle name>@<12 hex digits of the sha256 of the bundle's files>`: another model,
    /// tokenizer, IDF table or manifest is another version, even when trained on the same data.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The bundle's name (its manifest's).
    pub fn bundle_name(&self) -> &str {
        &self.manifest.name
    }

    pub fn mode(&self) -> LearnedMode {
        self.mode
    }

    pub fn models(&self) -> &[ModelIdx] {
        &self.columns
    }

    /// P(acceptable) per bundle model, in [`LearnedRouter::models`] order, for `text` of task
    /// `task` (used when the bundle has a column for it; see `FeatureConfig::tasks`).
    pub fn predict(&self, text: &str, task: Option<&str>) -> Result<Vec<f32>, LearnedError> {
        self.predict_timed(text, task, &mut RoutePhases::default())
    }

    /// [`LearnedRouter::predict`], noting when featurizing and the model run happened.
    pub fn predict_timed(
        &self,
        text: &str,
        task: Option<&str>,
        phases: &mut RoutePhases,
    ) -> Result<Vec<f32>, LearnedError> {
        FEATURES.with(|buf| {
            let mut buf = buf.borrow_mut();
            let started = Instant::now();
            buf.resize(self.featurizer.dim(), 0.0);
            self.featurizer
                .featurize_into(text, task, &mut buf)
                .map_err(|e| LearnedError::Predict(e.to_string()))?;
            let featurized = Interval::since(started);
            phases.featurize = Some(featurized);
            let mut out = vec![0.0; self.columns.len()];
            self.scorer
                .score(&buf, &mut out)
                .map_err(|e| LearnedError::Predict(e.to_string()))?;
            phases.inference = Some(Interval::since(featurized.end));
            Ok(out)
        })
    }

    /// The quality target (fraction of the best model's quality) for a preference in [0, 1].
    pub fn quality_target(&self, preference: f64) -> f64 {
        self.min_target + (self.max_target - self.min_target) * preference.clamp(0.0, 1.0)
    }

    /// Choose among `eligible` with predictions `probs`: the cheapest eligible model whose
    /// predicted quality is within the calibrated margin of the best eligible prediction.
    /// `None` when the bundle knows none of the eligible models.
    pub fn choose(
        &self,
        policy: &Policy,
        probs: &[f32],
        eligible: &[ModelIdx],
        preference: f64,
        task: Option<&str>,
    ) -> Option<LearnedChoice> {
        let allowed: Vec<bool> = self.columns.iter().map(|m| eligible.contains(m)).collect();
        let target = self.quality_target(preference);
        let task_known = task.is_some_and(|t| self.featurizer.task_input_column(t).is_some());
        let margin = self.manifest.margin_for_target(target, task_known).ok()?;
        let col = routing::choose(probs, &self.costs, &allowed, margin as f32)?;
        let primary = self.columns[col];
        let best = (0..probs.len())
            .filter(|&i| allowed[i])
            .map(|i| f64::from(probs[i]))
            .fold(f64::NEG_INFINITY, f64::max);
        let prob_of = |m: ModelIdx| -> Option<f64> {
            self.columns
                .iter()
                .position(|&c| c == m)
                .map(|i| f64::from(probs[i]))
        };
        let cost_of = |m: ModelIdx| -> f64 {
            match self.columns.iter().position(|&c| c == m) {
                Some(i) => self.costs[i],
                None => policy.model(m).cost(1000, 1000).0 as f64,
            }
        };
        // Fallbacks: other eligible bundle models by prediction (best first), then eligible
        // models the bundle does not know by prior quality.
        let mut known: Vec<(f64, ModelIdx)> = eligible
            .iter()
            .filter(|&&m| m != primary)
            .filter_map(|&m| prob_of(m).map(|p| (p, m)))
            .collect();
        known.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then(cost_of(a.1).total_cmp(&cost_of(b.1)))
        });
        let mut unknown: Vec<ModelIdx> = eligible
            .iter()
            .copied()
            .filter(|&m| m != primary && prob_of(m).is_none())
            .collect();
        unknown.sort_by(|&a, &b| policy.model(b).quality.total_cmp(&policy.model(a).quality));
        let fallbacks: Vec<ModelIdx> = known.iter().map(|(_, m)| *m).chain(unknown).collect();
        // Cascade: cheaper known models whose prediction is near the bar the primary met.
        let bar = best - margin - self.cascade_band;
        let mut cascade_first: Vec<(ModelIdx, f64)> = known
            .iter()
            .filter(|(p, m)| *p >= bar && cost_of(*m) < cost_of(primary))
            .map(|(p, m)| (*m, *p))
            .collect();
        cascade_first.sort_by(|a, b| cost_of(a.0).total_cmp(&cost_of(b.0)));

        let preds = self
            .columns
            .iter()
            .zip(probs)
            .map(|(&m, p)| format!("{} {p:.2}", policy.model(m).id))
            .collect::<Vec<_>>()
            .join(", ");
        let reasons = vec![Reason {
            policy_id: "learned.route".into(),
            message: format!(
                "learned router {}: predicted P(acceptable) {preds}; quality target {target:.3} → margin {margin:.3}: cheapest eligible model within the margin of the best is {}",
                self.version,
                policy.model(primary).id
            ),
        }];
        Some(LearnedChoice {
            primary,
            fallbacks,
            cascade_first: cascade_first.into_iter().map(|(m, _)| m).collect(),
            quality_target: target,
            margin,
            reasons,
        })
    }
}

/// The bundle's margins were calibrated with its manifest's cost order (which model is the
/// cheap one); serving prices come from the catalog. The two must order the bundle's models
/// the same way, or every calibrated margin would mean the opposite trade.
fn check_cost_order(
    manifest: &BundleManifest,
    catalog_costs: &[f64],
    policy: &Policy,
    columns: &[ModelIdx],
) -> Result<(), String> {
    let n = manifest.models.len();
    for i in 0..n {
        for j in 0..n {
            let (mi, mj) = (&manifest.models[i], &manifest.models[j]);
            if mi.cost < mj.cost && catalog_costs[i] > catalog_costs[j] {
                return Err(format!(
                    "the bundle was calibrated with {} cheaper than {}, but the catalog prices {} at {} and {} at {} per 1k+1k tokens",
                    mi.id,
                    mj.id,
                    policy.model(columns[i]).id,
                    policy.model(columns[i]).cost(1000, 1000),
                    policy.model(columns[j]).id,
                    policy.model(columns[j]).cost(1000, 1000),
                ));
            }
        }
    }
    Ok(())
}
