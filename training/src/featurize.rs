//! Training-side use of the shared featurizer: tokenizer training, IDF, and the
//! dense feature matrix.

use signalbox_features::manifest::FEATURE_KIND;
use signalbox_features::{FeatureConfig, Featurizer, MetaFeature};

use crate::error::TrainError;

/// Featurizer hyper-parameters chosen on the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct FeatureSettings {
    /// Hash buckets = 2^hash_bits.
    #[arg(long, default_value_t = 13)]
    pub hash_bits: u32,
    /// Highest token n-gram order hashed.
    #[arg(long, default_value_t = 2)]
    pub ngram_max: usize,
    /// Prompt bytes tokenized (prefix, cut at a char boundary).
    #[arg(long, default_value_t = 2048)]
    pub max_prompt_bytes: usize,
    /// Tokens of the window used.
    #[arg(long, default_value_t = 384)]
    pub max_tokens: usize,
    /// BPE vocabulary size of the trained tokenizer.
    #[arg(long, default_value_t = 8000)]
    pub vocab_size: usize,
    /// Leave out the meta features.
    #[arg(long)]
    pub no_meta: bool,
    /// Use raw term counts instead of 1 + ln(tf).
    #[arg(long)]
    pub linear_tf: bool,
}

impl FeatureSettings {
    pub fn config(&self) -> FeatureConfig {
        let meta: Vec<MetaFeature> = if self.no_meta {
            Vec::new()
        } else {
            MetaFeature::ALL.to_vec()
        };
        FeatureConfig {
            kind: FEATURE_KIND.to_string(),
            tokenizer_file: "tokenizer.json".into(),
            idf_file: "idf.json".into(),
            hash_bits: self.hash_bits,
            ngram_max: self.ngram_max,
            max_prompt_bytes: self.max_prompt_bytes,
            max_tokens: self.max_tokens,
            sublinear_tf: !self.linear_tf,
            dim: (1usize << self.hash_bits) + meta.len(),
            meta,
            columns: None,
        }
    }
}

/// Trains the tokenizer and the IDF table on `train_prompts`.
pub fn build_featurizer(
    train_prompts: &[&str],
    settings: &FeatureSettings,
) -> Result<Featurizer, TrainError> {
    let config = settings.config();
    config.validate()?;
    let tokenizer = signalbox_features::vocab::train_tokenizer(
        train_prompts.iter().copied(),
        settings.vocab_size,
        settings.max_prompt_bytes,
    )?;
    let hash_dim = config.hash_dim();
    let probe = Featurizer::new(config.clone(), tokenizer.clone(), vec![1.0; hash_dim])?;
    let mut df = vec![0u32; hash_dim];
    let mut counts = vec![0.0f32; hash_dim];
    let mut touched = Vec::new();
    for p in train_prompts {
        let ids = probe.token_ids(p)?;
        probe.bucket_counts(&ids, &mut counts, &mut touched);
        for &b in &touched {
            df[b] += 1;
            counts[b] = 0.0;
        }
    }
    let n = train_prompts.len() as f32;
    let idf: Vec<f32> = df
        .iter()
        .map(|&d| ((1.0 + n) / (1.0 + d as f32)).ln() + 1.0)
        .collect();
    Ok(Featurizer::new(config, tokenizer, idf)?)
}

/// Row-major `prompts.len() x dim` feature matrix, computed on all cores.
pub fn featurize_all(
    featurizer: &Featurizer,
    prompts: &[&str],
    progress: &indicatif::ProgressBar,
) -> Result<Vec<f32>, TrainError> {
    let dim = featurizer.dim();
    let mut out = vec![0.0f32; prompts.len() * dim];
    if prompts.is_empty() {
        return Ok(out);
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(prompts.len());
    let per = prompts.len().div_ceil(threads);
    let results: Vec<Result<(), TrainError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = out
            .chunks_mut(per * dim)
            .zip(prompts.chunks(per))
            .map(|(rows, ps)| {
                scope.spawn(move || -> Result<(), TrainError> {
                    for (row, p) in rows.chunks_mut(dim).zip(ps) {
                        featurizer.featurize_into(p, row)?;
                        progress.inc(1);
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(TrainError::Fit("featurizer thread panicked".into())))
            })
            .collect()
    });
    for r in results {
        r?;
    }
    Ok(out)
}
