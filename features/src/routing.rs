//! The routing rule shared by evaluation and serving.

/// Name of the rule in the manifest.
pub const RULE_CHEAPEST_WITHIN_MARGIN: &str = "cheapest_within_margin_v1";

/// Among allowed models, the cheapest one whose predicted P(acceptable) is at least
/// `max(allowed probs) - margin` (ties in cost: the higher prediction, then lower index).
///
/// For two models this is RouteLLM's threshold rule on the score
/// `p(strong) - p(weak)`: the strong model is used exactly when that score exceeds
/// `margin`. A margin of 0 always takes the model predicted best; a margin of 1 always
/// takes the cheapest allowed model.
pub fn choose(probs: &[f32], costs: &[f64], allowed: &[bool], margin: f32) -> Option<usize> {
    let n = probs.len().min(costs.len()).min(allowed.len());
    let best = (0..n)
        .filter(|&i| allowed[i])
        .map(|i| probs[i])
        .fold(f32::NEG_INFINITY, f32::max);
    if best == f32::NEG_INFINITY {
        return None;
    }
    let mut pick: Option<usize> = None;
    for i in (0..n).filter(|&i| allowed[i] && probs[i] >= best - margin) {
        pick = match pick {
            None => Some(i),
            Some(j) if costs[i] < costs[j] || (costs[i] == costs[j] && probs[i] > probs[j]) => {
                Some(i)
            }
            keep => keep,
        };
    }
    pick
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_model_rule_is_a_threshold_on_the_difference() {
        let costs = [1.0, 10.0]; // weak, strong
        let all = [true, true];
        assert_eq!(choose(&[0.6, 0.9], &costs, &all, 0.2), Some(1));
        assert_eq!(choose(&[0.6, 0.9], &costs, &all, 0.3), Some(0));
        assert_eq!(choose(&[0.6, 0.9], &costs, &all, 0.0), Some(1));
        assert_eq!(choose(&[0.6, 0.9], &costs, &all, 1.0), Some(0));
        assert_eq!(choose(&[0.6, 0.9], &costs, &[false, true], 1.0), Some(1));
        assert_eq!(choose(&[0.6, 0.9], &costs, &[false, false], 1.0), None);
    }

    #[test]
    fn picks_cheapest_within_margin_among_three() {
        let costs = [5.0, 1.0, 20.0];
        assert_eq!(choose(&[0.8, 0.7, 0.9], &costs, &[true; 3], 0.25), Some(1));
        assert_eq!(choose(&[0.8, 0.7, 0.9], &costs, &[true; 3], 0.15), Some(0));
        assert_eq!(
            choose(&[0.8, 0.7, 0.9], &costs, &[false, true, true], 0.15),
            Some(2)
        );
        assert_eq!(choose(&[0.8, 0.7, 0.9], &costs, &[true; 3], 0.05), Some(2));
    }
}
