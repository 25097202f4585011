//! The featurizer: prompt text -> `dim` float32 features (hashed token n-gram
//! TF-IDF, L2-normalised, followed by meta features).

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

use tokenizers::Tokenizer;

use crate::error::FeatureError;
use crate::fast_tokenizer::FastTokenizer;
use crate::hashing::ngram_bucket;
use crate::manifest::{BundleManifest, FeatureConfig};
use crate::meta::{self, TextStats};

/// Loaded featurizer: tokenizer + IDF table + config. Cheap to share (`&self` API).
#[derive(Clone)]
pub struct Featurizer {
    config: FeatureConfig,
    tokenizer: Tokenizer,
    /// Exact ASCII fast path of `tokenizer` (`None` for pipelines it does not cover).
    fast: Option<Arc<FastTokenizer>>,
    idf: Vec<f32>,
    /// Full column → output column, [`DROPPED`] for columns not selected
    /// (`FeatureConfig::columns`); `None` when every column is emitted.
    column_of: Option<Arc<[u32]>>,
}

/// Marks a full-vector column the bundle's classifier does not use.
const DROPPED: u32 = u32::MAX;

thread_local! {
    /// Per-thread bucket accumulator of selected-column featurization (`2^hash_bits` floats,
    /// zero between calls: only touched buckets are written and reset).
    static BUCKETS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Longest prefix of `text` of at most `max_bytes` bytes ending on a char boundary.
pub fn window(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl std::fmt::Debug for Featurizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Featurizer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Featurizer {
    /// Loads the featurizer of the bundle in `dir` (reads `manifest.json`, the
    /// tokenizer and the IDF table).
    pub fn load(dir: &Path) -> Result<Featurizer, FeatureError> {
        let manifest = BundleManifest::load(dir)?;
        Featurizer::load_with(dir, &manifest.features)
    }

    /// Like [`Featurizer::load`] with an already loaded feature config.
    pub fn load_with(dir: &Path, config: &FeatureConfig) -> Result<Featurizer, FeatureError> {
        let tok_path = dir.join(&config.tokenizer_file);
        let tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| {
            FeatureError::Tokenizer(format!("cannot load {}: {e}", tok_path.display()))
        })?;
        let idf_path = dir.join(&config.idf_file);
        let text = std::fs::read_to_string(&idf_path).map_err(|source| FeatureError::Io {
            path: idf_path.clone(),
            source,
        })?;
        let idf: Vec<f32> = serde_json::from_str(&text).map_err(|source| FeatureError::Json {
            path: idf_path,
            source,
        })?;
        Featurizer::new(config.clone(), tokenizer, idf)
    }

    /// Builds a featurizer from its parts (used by training before the bundle exists).
    pub fn new(
        config: FeatureConfig,
        tokenizer: Tokenizer,
        idf: Vec<f32>,
    ) -> Result<Featurizer, FeatureError> {
        config.validate()?;
        if idf.len() != config.hash_dim() {
            return Err(FeatureError::InvalidBundle(format!(
                "IDF table has {} entries, expected 2^{} = {}",
                idf.len(),
                config.hash_bits,
                config.hash_dim()
            )));
        }
        if idf.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err(FeatureError::InvalidBundle(
                "IDF table has a negative or non-finite entry".into(),
            ));
        }
        let fast = FastTokenizer::from_tokenizer(&tokenizer).map(Arc::new);
        let column_of = config.columns.as_ref().map(|cols| {
            let mut map = vec![DROPPED; config.full_dim()];
            for (out, &col) in cols.iter().enumerate() {
                // `validate` checked every column is inside the full vector.
                if let Some(slot) = map.get_mut(col as usize) {
                    *slot = out as u32;
                }
            }
            Arc::from(map)
        });
        Ok(Featurizer {
            config,
            tokenizer,
            fast,
            idf,
            column_of,
        })
    }

    /// The input column (of the [`Featurizer::dim`] emitted) that `task` sets, if any.
    pub fn task_input_column(&self, task: &str) -> Option<usize> {
        let full = self.config.task_column(task)?;
        match &self.column_of {
            None => Some(full),
            Some(map) => map
                .get(full)
                .filter(|&&c| c != DROPPED)
                .map(|&c| c as usize),
        }
    }

    /// Width of the feature vector (ONNX input width).
    pub fn dim(&self) -> usize {
        self.config.dim
    }

    pub fn config(&self) -> &FeatureConfig {
        &self.config
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn idf(&self) -> &[f32] {
        &self.idf
    }

    /// Token ids of the featurization window of `text` (at most `max_tokens`).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, FeatureError> {
        let win = window(text, self.config.max_prompt_bytes);
        if let Some(ids) = self
            .fast
            .as_ref()
            .and_then(|f| f.encode(win, self.config.max_tokens))
        {
            return Ok(ids);
        }
        self.reference_token_ids(text)
    }

    /// The exact ASCII fast path of this featurizer's tokenizer, if it has one.
    pub fn fast_path(&self) -> Option<&FastTokenizer> {
        self.fast.as_deref()
    }

    /// [`Featurizer::token_ids`] through the `tokenizers` pipeline only (the reference
    /// the fast path is tested against).
    pub fn reference_token_ids(&self, text: &str) -> Result<Vec<u32>, FeatureError> {
        let win = window(text, self.config.max_prompt_bytes);
        let enc = self
            .tokenizer
            .encode_fast(win, false)
            .map_err(|e| FeatureError::Tokenizer(e.to_string()))?;
        let ids = enc.get_ids();
        Ok(ids[..ids.len().min(self.config.max_tokens)].to_vec())
    }

    /// Distinct n-gram buckets of a token sequence with their raw counts, in order of
    /// first occurrence (the sparse part before TF/IDF weighting). Used to compute IDF.
    pub fn bucket_counts(&self, ids: &[u32], counts: &mut [f32], touched: &mut Vec<usize>) {
        touched.clear();
        for n in 1..=self.config.ngram_max {
            if ids.len() < n {
                break;
            }
            for gram in ids.windows(n) {
                let b = ngram_bucket(gram, self.config.hash_bits);
                if counts[b] == 0.0 {
                    touched.push(b);
                }
                counts[b] += 1.0;
            }
        }
    }

    /// Writes the features of `text` with task `task` into `out` (length must be
    /// [`Featurizer::dim`]). The task sets its one-hot column when the bundle lists it
    /// ([`FeatureConfig::tasks`]); any other task, or none, sets nothing.
    pub fn featurize_into(
        &self,
        text: &str,
        task: Option<&str>,
        out: &mut [f32],
    ) -> Result<(), FeatureError> {
        if out.len() != self.config.dim {
            return Err(FeatureError::DimensionMismatch {
                expected: self.config.dim,
                got: out.len(),
            });
        }
        let ids = self.token_ids(text)?;
        let hash_dim = self.config.hash_dim();
        let win = window(text, self.config.max_prompt_bytes);
        let stats = TextStats::of(win);
        let meta = self
            .config
            .meta
            .iter()
            .map(|&f| meta::value(f, text.len(), &stats, ids.len(), self.config.max_tokens));
        out.fill(0.0);
        // The task's one-hot column, where this featurizer emits it (the text features below
        // never write that column).
        if let Some(slot) = task
            .and_then(|t| self.task_input_column(t))
            .and_then(|c| out.get_mut(c))
        {
            *slot = 1.0;
        }
        let Some(column_of) = &self.column_of else {
            let (hashed, meta_out) = out.split_at_mut(hash_dim);
            let mut touched = Vec::with_capacity(ids.len() * self.config.ngram_max);
            self.bucket_counts(&ids, hashed, &mut touched);
            let inv = self.tfidf_in_place(hashed, &touched);
            for &b in &touched {
                hashed[b] *= inv;
            }
            for (slot, v) in meta_out.iter_mut().zip(meta) {
                *slot = v;
            }
            return Ok(());
        };
        BUCKETS.with(|buckets| {
            let mut buckets = buckets.borrow_mut();
            buckets.resize(hash_dim, 0.0);
            let mut touched = Vec::with_capacity(ids.len() * self.config.ngram_max);
            self.bucket_counts(&ids, &mut buckets, &mut touched);
            let inv = self.tfidf_in_place(&mut buckets, &touched);
            for &b in &touched {
                if let Some(&col) = column_of.get(b).filter(|&&c| c != DROPPED) {
                    out[col as usize] = buckets[b] * inv;
                }
                buckets[b] = 0.0;
            }
        });
        for (i, v) in meta.enumerate() {
            if let Some(&col) = column_of.get(hash_dim + i).filter(|&&c| c != DROPPED) {
                out[col as usize] = v;
            }
        }
        Ok(())
    }

    /// Turns the raw counts of the `touched` buckets into TF-IDF weights in place; returns the
    /// factor that L2-normalises them (0 when all are zero).
    fn tfidf_in_place(&self, buckets: &mut [f32], touched: &[usize]) -> f32 {
        let mut norm2 = 0.0f32;
        for &b in touched {
            let tf = buckets[b];
            let tf = if self.config.sublinear_tf {
                1.0 + tf.ln()
            } else {
                tf
            };
            let v = tf * self.idf[b];
            buckets[b] = v;
            norm2 += v * v;
        }
        if norm2 > 0.0 { 1.0 / norm2.sqrt() } else { 0.0 }
    }

    /// Allocating convenience wrapper around [`Featurizer::featurize_into`].
    pub fn featurize(&self, text: &str, task: Option<&str>) -> Result<Vec<f32>, FeatureError> {
        let mut out = vec![0.0; self.config.dim];
        self.featurize_into(text, task, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn featurizer(tasks: &[&str], columns: Option<Vec<u32>>) -> Featurizer {
        let prompts = [
            "solve the equation x + 2 = 5",
            "name the bone of the upper arm",
        ];
        let tokenizer = crate::vocab::train_tokenizer(prompts.into_iter(), 60, 4096).unwrap();
        let mut config = FeatureConfig {
            kind: crate::manifest::FEATURE_KIND.into(),
            tokenizer_file: "tokenizer.json".into(),
            idf_file: "idf.json".into(),
            hash_bits: 4,
            ngram_max: 2,
            max_prompt_bytes: 100,
            max_tokens: 20,
            sublinear_tf: true,
            meta: vec![crate::MetaFeature::LogBytes],
            tasks: tasks.iter().map(|t| t.to_string()).collect(),
            columns: None,
            dim: 0,
        };
        config.dim = columns.as_ref().map_or(config.full_dim(), Vec::len);
        config.columns = columns;
        Featurizer::new(config, tokenizer, vec![1.0; 16]).unwrap()
    }

    #[test]
    fn a_listed_task_sets_its_column_and_nothing_else_changes() {
        let f = featurizer(&["algebra_ii", "anatomy"], None);
        assert_eq!(f.dim(), 16 + 1 + 2);
        let text = "solve the equation";
        let none = f.featurize(text, None).unwrap();
        let algebra = f.featurize(text, Some("algebra_ii")).unwrap();
        let anatomy = f.featurize(text, Some("anatomy")).unwrap();
        assert_eq!(none[..17], algebra[..17]);
        assert_eq!((none[17], none[18]), (0.0, 0.0));
        assert_eq!((algebra[17], algebra[18]), (1.0, 0.0));
        assert_eq!((anatomy[17], anatomy[18]), (0.0, 1.0));
        assert_eq!(f.featurize(text, Some("chemistry")).unwrap(), none);
        assert_eq!(f.featurize(text, Some("")).unwrap(), none);
        assert_eq!(f.task_input_column("anatomy"), Some(18));

        // With a column selection, the task columns move to their selected positions and a
        // task column that is not selected is never written.
        let sel = featurizer(&["algebra_ii", "anatomy"], Some(vec![0, 16, 18]));
        assert_eq!(sel.task_input_column("anatomy"), Some(2));
        assert_eq!(sel.task_input_column("algebra_ii"), None);
        let row = sel.featurize(text, Some("anatomy")).unwrap();
        assert_eq!(row, vec![none[0], none[16], 1.0]);
        let row = sel.featurize(text, Some("algebra_ii")).unwrap();
        assert_eq!(row, vec![none[0], none[16], 0.0]);
    }

    #[test]
    fn window_cuts_on_char_boundary() {
        assert_eq!(window("héllo", 2), "h");
        assert_eq!(window("héllo", 3), "hé");
        assert_eq!(window("abc", 10), "abc");
    }
}
