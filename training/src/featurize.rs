//! Training-side use of the shared featurizer: tokenizer training, IDF and column selection,
//! and the sparse feature rows the classifier is fitted on.

use signalbox_features::manifest::{FEATURE_KIND, is_valid_task_name};
use signalbox_features::{FeatureConfig, Featurizer, MetaFeature};

use crate::error::TrainError;

/// Featurizer hyper-parameters chosen on the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct FeatureSettings {
    /// Hash buckets = 2^hash_bits.
    #[arg(long, default_value_t = 16)]
    pub hash_bits: u32,
    /// Highest token n-gram order hashed.
    #[arg(long, default_value_t = 2)]
    pub ngram_max: usize,
    /// Prompt bytes tokenized (prefix, cut at a char boundary).
    #[arg(long, default_value_t = 1024)]
    pub max_prompt_bytes: usize,
    /// Tokens of the window used.
    #[arg(long, default_value_t = 256)]
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
    /// Buckets seen in fewer training prompts are not features.
    #[arg(long, default_value_t = 2)]
    pub min_df: u32,
    /// No task columns: the router sees the prompt only, even when the data has tasks.
    #[arg(long)]
    pub no_tasks: bool,
    /// A task (the table's `task`: the MMLU subject, the caller's category) becomes a feature
    /// column when at least this many training prompts have it.
    #[arg(long, default_value_t = 20)]
    pub min_task_prompts: usize,
    /// At most this many task columns (the most frequent tasks).
    #[arg(long, default_value_t = 1024)]
    pub max_tasks: usize,
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
            tasks: Vec::new(),
            columns: None,
        }
    }
}

/// The task columns of a training set: the tasks of at least `min_prompts` prompts, at most
/// `max_tasks` of them (most frequent first; ties: name order), sorted. Only names a request's
/// `category` can carry count ([`is_valid_task_name`]; others would be columns the service is
/// never sent). Empty unless at least two tasks qualify: one task for every prompt tells the
/// classifier nothing.
pub fn task_vocabulary(
    tasks: &[Option<&str>],
    min_prompts: usize,
    max_tasks: usize,
) -> Vec<String> {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for t in tasks.iter().flatten() {
        if is_valid_task_name(t) {
            *counts.entry(t).or_default() += 1;
        }
    }
    let mut kept: Vec<(&str, usize)> = counts
        .into_iter()
        .filter(|&(_, n)| n >= min_prompts.max(1))
        .collect();
    kept.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    kept.truncate(max_tasks);
    if kept.len() < 2 {
        return Vec::new();
    }
    let mut out: Vec<String> = kept.into_iter().map(|(t, _)| t.to_string()).collect();
    out.sort();
    out
}

/// Trains the tokenizer and the IDF table on `train_prompts`, and keeps the `max_columns`
/// hashed n-gram buckets found in the most training prompts (at least `min_df` of them), plus
/// every meta feature and the task columns of `train_tasks` ([`task_vocabulary`]; none with
/// `--no-tasks`): the featurizer then emits only those columns (`FeatureConfig::columns`),
/// with the TF-IDF L2 norm still taken over all buckets.
pub fn build_featurizer(
    train_prompts: &[&str],
    train_tasks: &[Option<&str>],
    settings: &FeatureSettings,
    max_columns: usize,
) -> Result<Featurizer, TrainError> {
    let mut config = settings.config();
    if !settings.no_tasks {
        config.tasks = task_vocabulary(train_tasks, settings.min_task_prompts, settings.max_tasks);
        config.dim = config.full_dim();
    }
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
    let extra = config.meta.len() + config.tasks.len();
    let columns = frequent_columns(&df, settings.min_df, max_columns, extra);
    if columns.len() < config.full_dim() {
        config.dim = columns.len();
        config.columns = Some(columns);
    }
    Ok(Featurizer::new(config, tokenizer, idf)?)
}

/// The buckets with the highest document frequency (ties: lower bucket first), at most
/// `max_buckets` of those seen in at least `min_df` prompts, then the `extra` columns after the
/// buckets (meta features, tasks); ascending. Never empty when there are extra columns or any
/// bucket was seen.
pub fn frequent_columns(df: &[u32], min_df: u32, max_buckets: usize, extra: usize) -> Vec<u32> {
    let mut buckets: Vec<u32> = (0..df.len() as u32)
        .filter(|&b| df[b as usize] >= min_df.max(1))
        .collect();
    buckets.sort_by(|&a, &b| df[b as usize].cmp(&df[a as usize]).then(a.cmp(&b)));
    buckets.truncate(max_buckets);
    buckets.sort_unstable();
    if buckets.is_empty() && extra == 0 {
        buckets.push(0);
    }
    buckets.extend((0..extra as u32).map(|i| df.len() as u32 + i));
    buckets
}

/// Feature rows in compressed sparse row form: the featurizer's dense rows without their
/// zeros (a prompt has a few hundred non-zero features of thousands), so training memory grows
/// with the text, not with `rows x dim`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseRows {
    pub dim: usize,
    /// Row `i` is `indices/values[offsets[i]..offsets[i + 1]]`, indices ascending.
    pub offsets: Vec<usize>,
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseRows {
    pub fn new(dim: usize) -> SparseRows {
        SparseRows {
            dim,
            offsets: vec![0],
            indices: Vec::new(),
            values: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a dense row of width `dim`.
    pub fn push_dense(&mut self, row: &[f32]) {
        for (j, &v) in row.iter().enumerate() {
            if v != 0.0 {
                self.indices.push(j as u32);
                self.values.push(v);
            }
        }
        self.offsets.push(self.indices.len());
    }

    /// Row `i` as (column, value) pairs.
    pub fn row(&self, i: usize) -> impl Iterator<Item = (usize, f32)> + Clone + '_ {
        let (a, b) = (self.offsets[i], self.offsets[i + 1]);
        self.indices[a..b]
            .iter()
            .zip(&self.values[a..b])
            .map(|(&j, &v)| (j as usize, v))
    }

    /// Row `i` as a dense vector of width `dim`.
    pub fn dense_row(&self, i: usize) -> Vec<f32> {
        let mut out = vec![0.0; self.dim];
        for (j, v) in self.row(i) {
            out[j] = v;
        }
        out
    }

    fn append(&mut self, other: SparseRows) {
        let base = self.indices.len();
        self.indices.extend(other.indices);
        self.values.extend(other.values);
        self.offsets
            .extend(other.offsets[1..].iter().map(|&o| o + base));
    }
}

/// Features of every prompt as sparse rows, computed on all cores. `tasks[i]` is prompt `i`'s
/// task; an empty `tasks` featurizes every prompt without one.
pub fn featurize_all(
    featurizer: &Featurizer,
    prompts: &[&str],
    tasks: &[Option<&str>],
    progress: &indicatif::ProgressBar,
) -> Result<SparseRows, TrainError> {
    if !tasks.is_empty() && tasks.len() != prompts.len() {
        return Err(TrainError::Argument(format!(
            "{} tasks for {} prompts",
            tasks.len(),
            prompts.len()
        )));
    }
    let dim = featurizer.dim();
    let mut out = SparseRows::new(dim);
    if prompts.is_empty() {
        return Ok(out);
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(prompts.len());
    let per = prompts.len().div_ceil(threads);
    let results: Vec<Result<SparseRows, TrainError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = prompts
            .chunks(per)
            .enumerate()
            .map(|(c, ps)| {
                let ts = tasks.get(c * per..(c * per + ps.len())).unwrap_or(&[]);
                scope.spawn(move || -> Result<SparseRows, TrainError> {
                    let mut rows = SparseRows::new(dim);
                    let mut dense = vec![0.0f32; dim];
                    for (i, p) in ps.iter().enumerate() {
                        let task = ts.get(i).copied().flatten();
                        featurizer.featurize_into(p, task, &mut dense)?;
                        rows.push_dense(&dense);
                        progress.inc(1);
                    }
                    Ok(rows)
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
        out.append(r?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequent_columns_keep_the_most_frequent_buckets_and_all_meta() {
        let df = [0, 5, 1, 5, 9, 2];
        assert_eq!(frequent_columns(&df, 2, 3, 2), vec![1, 3, 4, 6, 7]);
        assert_eq!(frequent_columns(&df, 2, 10, 0), vec![1, 3, 4, 5]);
        assert_eq!(frequent_columns(&df, 1, 1, 0), vec![4]);
        assert_eq!(frequent_columns(&[0, 0], 1, 4, 0), vec![0]);
    }

    #[test]
    fn task_vocabulary_keeps_frequent_tasks_and_needs_two() {
        let t = |v: &[Option<&'static str>]| v.to_vec();
        let tasks = t(&[
            Some("b"),
            Some("a"),
            Some("b"),
            None,
            Some("c"),
            Some("a"),
            Some(""),
            Some("tax forms"),
            Some("tax forms"),
            Some("tax forms"),
        ]);
        assert_eq!(task_vocabulary(&tasks, 2, 10), vec!["a", "b"]);
        assert_eq!(task_vocabulary(&tasks, 1, 10), vec!["a", "b", "c"]);
        // Ties keep name order; the kept tasks come out sorted.
        assert_eq!(task_vocabulary(&tasks, 1, 2), vec!["a", "b"]);
        assert!(
            task_vocabulary(&tasks, 3, 10).is_empty(),
            "a single task is no feature"
        );
        assert!(task_vocabulary(&t(&[Some("x"); 50]), 1, 10).is_empty());
    }

    #[test]
    fn sparse_rows_round_trip_dense_rows() {
        let mut rows = SparseRows::new(4);
        rows.push_dense(&[0.0, 1.5, 0.0, -2.0]);
        rows.push_dense(&[0.0; 4]);
        let mut other = SparseRows::new(4);
        other.push_dense(&[3.0, 0.0, 0.0, 0.0]);
        rows.append(other);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows.dense_row(0), vec![0.0, 1.5, 0.0, -2.0]);
        assert_eq!(rows.dense_row(1), vec![0.0; 4]);
        assert_eq!(rows.row(2).collect::<Vec<_>>(), vec![(0, 3.0)]);
    }
}
