//! Writing a bundle directory: model.onnx, tokenizer.json, idf.json, manifest.json,
//! parity.json (reference scores for the service's parity test), MODEL_CARD.md.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use signalbox_features::manifest::RouterMetrics;
use signalbox_features::routing::RULE_CHEAPEST_WITHIN_MARGIN;
use signalbox_features::{
    BundleManifest, FeatureConfig, MANIFEST_VERSION, ModelEntry, TrainingInfo,
};

use crate::error::TrainError;
use crate::evaluate::EvalReport;
use crate::onnx;
use crate::pipeline::{Experiment, ensure_dir, files_sha256};

/// Reference prompts with the in-Rust model's scores, for serving parity tests.
#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParitySample {
    pub prompt: String,
    /// The prompt's task (featurized with it), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// P(acceptable) per model (manifest order) from the in-Rust (f64) model.
    pub p_acceptable: Vec<f64>,
}

pub const PARITY_FILE: &str = "parity.json";
const PARITY_SAMPLES: usize = 32;

/// Builds the manifest of an experiment.
pub fn manifest(name: &str, exp: &Experiment) -> Result<BundleManifest, TrainError> {
    let margs = &exp.model_args;
    let metrics: BTreeMap<String, RouterMetrics> = exp
        .report
        .routers
        .iter()
        .map(|(n, r)| {
            (
                n.clone(),
                RouterMetrics {
                    apgr: r.apgr,
                    cpt50: r.cpt50,
                    cpt80: r.cpt80,
                },
            )
        })
        .collect();
    let mut sources = exp.train.sources.clone();
    sources.extend(
        exp.test
            .sources
            .iter()
            .filter(|s| !exp.train.sources.contains(s))
            .cloned(),
    );
    Ok(BundleManifest {
        version: MANIFEST_VERSION,
        name: name.to_string(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        models: exp
            .model
            .models
            .iter()
            .zip(&exp.costs)
            .map(|(id, &cost)| ModelEntry {
                id: id.clone(),
                cost,
            })
            .collect(),
        quality_threshold: margs.quality_threshold,
        features: selected_features(exp),
        onnx: onnx::spec(),
        routing_rule: RULE_CHEAPEST_WITHIN_MARGIN.to_string(),
        quality_targets: exp.targets.clone(),
        quality_targets_prompt_only: exp.prompt_only_targets.clone(),
        training: TrainingInfo {
            data_sha256: files_sha256(&exp.data_files)?,
            data_sources: sources,
            train_prompts: exp.train.len(),
            test_prompts: exp.test.len(),
            split: exp.split.clone(),
            calibration_split: exp.calibration_split.clone(),
            classifier: format!(
                "linfa-ftrl 0.8 FTRL-Proximal logistic regression, one per model (alpha {}, beta {}, l1 {}, l2 {}, {} epochs of {}-prompt batches){}{}",
                margs.learning_rate,
                margs.beta,
                margs.l1,
                margs.l2,
                margs.epochs,
                margs.batch_size,
                if exp.featurizer.config().tasks.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; then per-task logit offsets on the text logits (ridge {})",
                        margs.task_lambda
                    )
                },
                match &exp.platt {
                    Some(p) => format!(
                        "; then Platt scaling sigmoid(a * logit + c) per model, fitted on the cross-validation's out-of-fold logits and folded into the weights: {}",
                        p.iter()
                            .zip(&exp.model.models)
                            .map(|((a, c), m)| format!("{m} a {a:.3} c {c:+.3}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None => String::new(),
                }
            ),
            l2_alpha: margs.l2,
            tokenizer_vocab_size: exp.featurizer.tokenizer().get_vocab_size(true),
            signalbox_train_version: env!("CARGO_PKG_VERSION").into(),
            selection: exp.selection.clone(),
        },
        metrics,
    })
}

/// The bundle's feature config: the training featurizer's, restricted to the columns the
/// classifier gives a weight (the others would be multiplied by zero on every request).
fn selected_features(exp: &Experiment) -> FeatureConfig {
    let mut config = exp.featurizer.config().clone();
    let used = exp.model.used_columns();
    if used.len() < config.dim {
        // `used` indexes the training featurizer's output; map to full-vector columns.
        let full: Vec<u32> = match &config.columns {
            Some(cols) => used.iter().map(|&j| cols[j]).collect(),
            None => used.iter().map(|&j| j as u32).collect(),
        };
        config.dim = full.len();
        config.columns = Some(full);
    }
    config
}

/// Writes the complete bundle into `dir`.
pub fn write(dir: &Path, name: &str, exp: &Experiment) -> Result<BundleManifest, TrainError> {
    ensure_dir(dir)?;
    let m = manifest(name, exp)?;
    let cfg = &m.features;
    let tok = dir.join(&cfg.tokenizer_file);
    exp.featurizer
        .tokenizer()
        .save(&tok, false)
        .map_err(|e| TrainError::BadInput {
            path: tok.clone(),
            message: e.to_string(),
        })?;
    let idf = dir.join(&cfg.idf_file);
    std::fs::write(&idf, serde_json::to_string(exp.featurizer.idf())?)
        .map_err(TrainError::io(&idf))?;
    let doc = format!("signalbox routing model {name}: P(acceptable) per model");
    let used = exp.model.used_columns();
    let exported = if used.len() < exp.model.dim {
        exp.model.select(&used)
    } else {
        exp.model.clone()
    };
    onnx::write(&exported, &doc, &dir.join(&m.onnx.file))?;
    let samples: Vec<ParitySample> = exp
        .test
        .prompts
        .iter()
        .zip(&exp.test.tasks)
        .zip(&exp.probs)
        .take(PARITY_SAMPLES)
        .map(|((p, task), pr)| ParitySample {
            prompt: p.clone(),
            task: task.clone(),
            p_acceptable: pr.clone(),
        })
        .collect();
    let parity = dir.join(PARITY_FILE);
    std::fs::write(&parity, serde_json::to_string_pretty(&samples)? + "\n")
        .map_err(TrainError::io(&parity))?;
    m.save(dir)?;
    let card = dir.join("MODEL_CARD.md");
    std::fs::write(&card, model_card(&m, &exp.report)).map_err(TrainError::io(&card))?;
    Ok(m)
}

/// The first few task names, for the model card.
fn task_list(tasks: &[String]) -> String {
    let shown: Vec<String> = tasks.iter().take(5).map(|t| format!("`{t}`")).collect();
    if tasks.len() > shown.len() {
        format!(
            "{}, ... and {} more",
            shown.join(", "),
            tasks.len() - shown.len()
        )
    } else {
        shown.join(", ")
    }
}

fn model_card(m: &BundleManifest, r: &EvalReport) -> String {
    let from = |prefix: &str| {
        m.training
            .data_sources
            .iter()
            .any(|s| s.starts_with(prefix))
    };
    let (routellm, llmrouter) = (from("routellm"), from("llmrouter"));
    let mut s = format!("# Model card: {}\n\n", m.name);
    s += "Routing classifier of signalbox: for each model it predicts the probability that the model answers a prompt acceptably ";
    s += &format!(
        "(quality >= {}). The service picks the cheapest model whose prediction is within a calibrated margin of the best prediction (`{}`).\n\n",
        m.quality_threshold, m.routing_rule
    );
    s += "## Data\n\n";
    for src in &m.training.data_sources {
        s += &format!("- `{src}`\n");
    }
    s += &format!(
        "\n{} training prompts, {} test prompts ({}). Data sha256 `{}`. Created {}.\n\n",
        m.training.train_prompts,
        m.training.test_prompts,
        m.training.split,
        m.training.data_sha256,
        m.created_at
    );
    if routellm {
        s += "Outcome logs from RouteLLM (LMSYS, repository lm-sys/RouteLLM, folder routellm/evals/, Apache License 2.0): per-prompt correctness of `gpt-4-1106-preview` and `mistralai/Mixtral-8x7B-Instruct-v0.1` on MMLU (Hendrycks et al., MIT license) and GSM8K (Cobbe et al., MIT license). Prompts RouteLLM lists as contaminated were dropped. Costs are the RouteLLM paper's prices in USD per 1M tokens (24.7 vs 0.24), used only to order the models.\n\n";
    }
    if llmrouter {
        s += "Outcomes from LLMRouter (U Lab @ UIUC, repository ulab-uiuc/LLMRouter, commit 4e7a796942ce, MIT License): per-prompt scores of nine open-weight models on 14 tasks (the publishers' train / test split), with the tasks from its query files and the models' prices (USD per 1M tokens) from its `models.json`. A call's cost is estimated as price x (prompt characters / 4 + 200) / 1e6 (no token counts are published).\n\n";
    }
    if let Some(sel) = &m.training.selection {
        let c = &sel.chosen;
        s += &format!(
            "Settings chosen by {}-fold cross-validation on the training prompts only (seed {}, {} candidates, by {}): {} (out-of-fold score {:.4}).\n\n",
            sel.folds,
            sel.seed,
            sel.candidates.len(),
            sel.criterion,
            c.settings,
            c.score
        );
    }
    s += "## Model\n\n";
    s += &format!(
        "- Features: `{}` — BPE tokenizer ({} tokens, trained on the training prompts with the `tokenizers` crate), token 1..{}-grams hashed into 2^{} buckets, sublinear TF x IDF, L2-normalised, first {} bytes / {} tokens; plus {} meta features ({:?}).\n",
        m.features.kind,
        m.training.tokenizer_vocab_size,
        m.features.ngram_max,
        m.features.hash_bits,
        m.features.max_prompt_bytes,
        m.features.max_tokens,
        m.features.meta.len(),
        m.features.meta
    );
    if m.features.tasks.is_empty() {
        s += "- Tasks: none (the prompt alone is scored).\n";
    } else {
        s += &format!(
            "- Tasks: {} task columns (the training table's `task`: {}), each holding per-model logit offsets fitted after the text weights. A request whose category (else task type) is one of them gets its offsets; any other request is scored on the prompt alone (the `learned-prompt-only` row below).\n",
            m.features.tasks.len(),
            task_list(&m.features.tasks)
        );
    }
    s += &format!("- Classifier: {}.\n", m.training.classifier);
    s += &format!(
        "- ONNX: `{}`, opset {}, input `{}` float32 [batch, {}], output `{}` float32 [batch, {}] in the order of `models` in the manifest.\n\n",
        m.onnx.file,
        m.onnx.opset,
        m.onnx.input_name,
        m.features.dim,
        m.onnx.output_name,
        m.models.len()
    );
    s += "## Held-out results\n\n";
    s += &crate::report::to_text(r);
    s += "\n## Limits\n\n";
    if m.features.tasks.is_empty() {
        s += "- Learned from text only; it has never seen the service's tasks, tenants or hints. Prompts unlike the training data (other languages, code, chat) get uninformative scores.\n";
    } else {
        s += "- Learned from the text and the training table's tasks; it has never seen the service's tenants or hints. A task helps only when callers send it as the request's `category` with the same spelling; prompts unlike the training data (other languages, code, chat) get uninformative scores.\n";
    }
    s += "- Only the models listed in the manifest are scored; catalog models the bundle does not know must be routed by rules.\n";
    if routellm {
        s += "- RouteLLM outcomes are multiple-choice / math correctness of two 2023-era models; quality on open-ended tasks is not measured.\n";
    }
    if llmrouter {
        s += "- LLMRouter's scores are benchmark answers of nine 7B-70B open-weight models (mostly right / wrong; partial credit for commongen); costs are estimates from prompt length, not billed tokens. The test split has 10 of the 14 tasks, and 119 of its questions also appear in the train split.\n";
    }
    s += &format!(
        "- Quality targets were calibrated on the {}{}.\n",
        m.training.calibration_split,
        if m.training.calibration_split.starts_with("test") {
            ", so their achieved ratios are in-sample for that split"
        } else {
            "; the held-out results above are out of sample"
        }
    );
    s
}
