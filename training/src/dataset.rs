//! From the canonical table to a prompt x model quality matrix, and its splits.

use std::collections::HashMap;
use std::path::Path;

use polars::prelude::*;

use crate::error::TrainError;
use crate::table;

/// Prompts with per-model quality (None: that model was not tried on the prompt).
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub prompt_ids: Vec<String>,
    pub prompts: Vec<String>,
    pub tasks: Vec<Option<String>>,
    /// Model ids (column order of `quality`), sorted.
    pub models: Vec<String>,
    /// `quality[p][m]`, mean over duplicate rows.
    pub quality: Vec<Vec<Option<f32>>>,
    /// `cost[p][m]`: the prompt's own observed cost of a call to the model (`cost_usd`, mean
    /// over duplicate rows; None: no row of that pair had a cost).
    pub cost: Vec<Vec<Option<f64>>>,
    /// Mean observed cost per model (None: no row had a cost).
    pub observed_cost: Vec<Option<f64>>,
    pub sources: Vec<String>,
    /// Rows skipped because their prompt is null.
    pub rows_without_prompt: usize,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    pub fn model_index(&self, id: &str) -> Option<usize> {
        self.models.iter().position(|m| m == id)
    }

    /// Loads a canonical table (Parquet) file.
    pub fn load(path: &Path) -> Result<Dataset, TrainError> {
        let df = table::scan(path)?
            .select([
                col("prompt_id"),
                col("prompt"),
                col("task"),
                col("model_id"),
                col("quality"),
                col("cost_usd"),
                col("source"),
            ])
            .collect()?;
        Dataset::from_frame(&df)
    }

    pub fn from_frame(df: &DataFrame) -> Result<Dataset, TrainError> {
        let ids = df.column("prompt_id")?.str()?;
        let prompts = df.column("prompt")?.str()?;
        let tasks = df.column("task")?.str()?;
        let models = df.column("model_id")?.str()?;
        let quality = df.column("quality")?.f64()?;
        let cost = df.column("cost_usd")?.f64()?;
        let sources = df.column("source")?.str()?;

        let mut model_names: Vec<String> = (0..df.height())
            .filter_map(|i| models.get(i))
            .map(str::to_string)
            .collect();
        model_names.sort();
        model_names.dedup();
        let m_index: HashMap<&str, usize> = model_names
            .iter()
            .enumerate()
            .map(|(i, m)| (m.as_str(), i))
            .collect();
        let nm = model_names.len();

        let mut ds = Dataset {
            models: model_names.clone(),
            ..Dataset::default()
        };
        let mut p_index: HashMap<String, usize> = HashMap::new();
        let mut sums: Vec<Vec<(f32, u32)>> = Vec::new();
        let mut cost_sums: Vec<Vec<(f64, u32)>> = Vec::new();
        let mut cost_sum = vec![(0.0f64, 0usize); nm];
        for i in 0..df.height() {
            let (Some(id), Some(model), Some(q)) = (ids.get(i), models.get(i), quality.get(i))
            else {
                continue;
            };
            let Some(prompt) = prompts.get(i) else {
                ds.rows_without_prompt += 1;
                continue;
            };
            let Some(&m) = m_index.get(model) else {
                continue;
            };
            let p = match p_index.get(id) {
                Some(&p) => p,
                None => {
                    let p = ds.prompts.len();
                    p_index.insert(id.to_string(), p);
                    ds.prompt_ids.push(id.to_string());
                    ds.prompts.push(prompt.to_string());
                    ds.tasks.push(tasks.get(i).map(str::to_string));
                    sums.push(vec![(0.0, 0); nm]);
                    cost_sums.push(vec![(0.0, 0); nm]);
                    p
                }
            };
            sums[p][m].0 += q as f32;
            sums[p][m].1 += 1;
            if let Some(c) = cost.get(i) {
                cost_sum[m].0 += c;
                cost_sum[m].1 += 1;
                cost_sums[p][m].0 += c;
                cost_sums[p][m].1 += 1;
            }
            if let Some(s) = sources.get(i)
                && !ds.sources.iter().any(|x| x == s)
            {
                ds.sources.push(s.to_string());
            }
        }
        ds.quality = sums
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|(s, n)| (n > 0).then(|| s / n as f32))
                    .collect()
            })
            .collect();
        ds.cost = cost_sums
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|(s, n)| (n > 0).then(|| s / f64::from(n)))
                    .collect()
            })
            .collect();
        ds.observed_cost = cost_sum
            .into_iter()
            .map(|(s, n)| (n > 0).then(|| s / n as f64))
            .collect();
        Ok(ds)
    }

    /// The classifier's labels, `labels[m][p]`: model `m`'s quality on prompt `p` is at least
    /// `threshold` (None: no outcome).
    pub fn labels(&self, threshold: f64) -> Vec<Vec<Option<bool>>> {
        (0..self.models.len())
            .map(|m| {
                self.quality
                    .iter()
                    .map(|row| row[m].map(|q| f64::from(q) >= threshold))
                    .collect()
            })
            .collect()
    }

    /// The sub-dataset of prompts `idx` (same model columns; each model's mean observed cost
    /// over those prompts' rows only).
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let observed_cost = (0..self.models.len())
            .map(|m| {
                let (sum, n) = idx
                    .iter()
                    .filter_map(|&i| self.cost.get(i)?.get(m).copied().flatten())
                    .fold((0.0, 0usize), |(s, n), c| (s + c, n + 1));
                (n > 0).then(|| sum / n as f64)
            })
            .collect();
        Dataset {
            prompt_ids: idx.iter().map(|&i| self.prompt_ids[i].clone()).collect(),
            prompts: idx.iter().map(|&i| self.prompts[i].clone()).collect(),
            tasks: idx.iter().map(|&i| self.tasks[i].clone()).collect(),
            models: self.models.clone(),
            quality: idx.iter().map(|&i| self.quality[i].clone()).collect(),
            cost: idx.iter().map(|&i| self.cost[i].clone()).collect(),
            observed_cost,
            sources: self.sources.clone(),
            rows_without_prompt: 0,
        }
    }

    /// Re-orders/extends model columns to `models` (missing models: no outcomes).
    pub fn with_models(mut self, models: &[String]) -> Dataset {
        let map: Vec<Option<usize>> = models.iter().map(|m| self.model_index(m)).collect();
        self.quality = self
            .quality
            .iter()
            .map(|row| map.iter().map(|j| j.and_then(|j| row[j])).collect())
            .collect();
        self.cost = self
            .cost
            .iter()
            .map(|row| map.iter().map(|j| j.and_then(|j| row[j])).collect())
            .collect();
        self.observed_cost = map
            .iter()
            .map(|j| j.and_then(|j| self.observed_cost[j]))
            .collect();
        self.models = models.to_vec();
        self
    }
}

/// Deterministic SplitMix64 generator (seeded splits and random baselines).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// Seeded random split of `n` items: (train, test) index lists, `test_fraction` in test.
pub fn random_split(n: usize, test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    SplitMix64::new(seed).shuffle(&mut idx);
    let n_test = ((n as f64) * test_fraction).round() as usize;
    let test = idx[..n_test].to_vec();
    let train = idx[n_test..].to_vec();
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_seeded_and_disjoint() {
        let (a, b) = random_split(100, 0.3, 7);
        assert_eq!((a.len(), b.len()), (70, 30));
        let (a2, b2) = random_split(100, 0.3, 7);
        assert_eq!((a.clone(), b.clone()), (a2, b2));
        let mut all: Vec<usize> = a.iter().chain(&b).copied().collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_ne!(random_split(100, 0.3, 8).1, b);
    }
}
