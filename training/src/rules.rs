//! The service's rule-based router (root crate `signalbox::baseline`) as a baseline.

use std::path::Path;

use signalbox::baseline::RulesBaseline;
use signalbox::config::Policy;

use crate::dataset::Dataset;
use crate::error::TrainError;

/// Model index (in `ds.models`) the rule-based router picks for each prompt of `ds`
/// (public, interactive request, no hints). Picks of a model without outcomes in the
/// data are counted, reported on stderr and scored as the weak model `fallback`.
pub fn decisions(config: &Path, ds: &Dataset, fallback: usize) -> Result<Vec<usize>, TrainError> {
    let policy = Policy::load(config).map_err(|e| TrainError::BadInput {
        path: config.to_path_buf(),
        message: e.to_string(),
    })?;
    let router = RulesBaseline::new(&policy).map_err(|e| TrainError::BadInput {
        path: config.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out = Vec::with_capacity(ds.len());
    let mut unknown = std::collections::BTreeMap::<String, usize>::new();
    for prompt in &ds.prompts {
        let id = router.primary(prompt).map_err(|e| TrainError::BadInput {
            path: config.to_path_buf(),
            message: format!("rule router failed: {e}"),
        })?;
        match ds.model_index(&id) {
            Some(m) => out.push(m),
            None => {
                *unknown.entry(id).or_default() += 1;
                out.push(fallback);
            }
        }
    }
    for (id, n) in &unknown {
        eprintln!(
            "rules baseline: {n} prompt(s) routed to {id}, which has no outcomes in the data; scored as the weak model"
        );
    }
    Ok(out)
}
