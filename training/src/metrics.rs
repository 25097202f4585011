//! RouteLLM metrics: PGR curve, APGR, CPT; and quality-vs-cost curves.

/// PGR as a function of c (share of prompts sent to the strong model).
#[derive(Debug, Clone, PartialEq)]
pub struct PgrCurve {
    pub c: Vec<f64>,
    pub pgr: Vec<f64>,
}

/// Builds the PGR curve of a router that sends the prompts with the highest `score`
/// to the strong model first. Prompts with equal scores are one block: inside it the
/// curve is the straight line between the block ends (the expectation under random
/// tie-breaking). `strong`/`weak` are per-prompt qualities (RouteLLM: 1 correct, 0 not).
/// None when both models have the same mean quality (PGR undefined).
pub fn pgr_curve(score: &[f64], strong: &[f64], weak: &[f64]) -> Option<PgrCurve> {
    let n = score.len();
    if n == 0 || strong.len() != n || weak.len() != n {
        return None;
    }
    let nf = n as f64;
    let acc_w = weak.iter().sum::<f64>() / nf;
    let acc_s = strong.iter().sum::<f64>() / nf;
    let span = acc_s - acc_w;
    if span.abs() < 1e-12 {
        return None;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    let mut c = vec![0.0];
    let mut pgr = vec![0.0];
    let mut acc = acc_w;
    let mut i = 0;
    while i < n {
        let mut j = i;
        let mut delta = 0.0;
        while j < n && score[order[j]] == score[order[i]] {
            delta += strong[order[j]] - weak[order[j]];
            j += 1;
        }
        acc += delta / nf;
        c.push(j as f64 / nf);
        pgr.push((acc - acc_w) / span);
        i = j;
    }
    Some(PgrCurve { c, pgr })
}

impl PgrCurve {
    /// APGR: area under PGR(c) for c in [0, 1] (trapezoids: exact for this curve).
    pub fn apgr(&self) -> f64 {
        self.c
            .windows(2)
            .zip(self.pgr.windows(2))
            .map(|(c, p)| (c[1] - c[0]) * (p[0] + p[1]) / 2.0)
            .sum()
    }

    /// CPT(x): smallest c with PGR(c) >= x (linear inside a segment); None if never.
    pub fn cpt(&self, x: f64) -> Option<f64> {
        if self.pgr.first().is_some_and(|&p| p >= x) {
            return self.c.first().copied();
        }
        for k in 1..self.c.len() {
            let (p0, p1) = (self.pgr[k - 1], self.pgr[k]);
            if p1 >= x {
                let t = if p1 > p0 { (x - p0) / (p1 - p0) } else { 1.0 };
                return Some(self.c[k - 1] + t.clamp(0.0, 1.0) * (self.c[k] - self.c[k - 1]));
            }
        }
        None
    }
}

/// A point of a quality-vs-cost curve (means over the test prompts).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CostQuality {
    pub cost: f64,
    pub quality: f64,
}

/// Lowest cost at which quality >= `target` when the router may randomise between
/// adjacent points of its curve (sorted by cost); None if never reached.
pub fn min_cost_for_quality(points: &[CostQuality], target: f64) -> Option<f64> {
    let mut pts = points.to_vec();
    pts.sort_by(|a, b| a.cost.total_cmp(&b.cost));
    let mut best: Option<f64> = None;
    for (k, p) in pts.iter().enumerate() {
        if p.quality >= target {
            best = Some(best.map_or(p.cost, |b: f64| b.min(p.cost)));
        }
        if let Some(q) = pts.get(k + 1)
            && p.quality < target
            && q.quality >= target
        {
            let t = (target - p.quality) / (q.quality - p.quality);
            let c = p.cost + t * (q.cost - p.cost);
            best = Some(best.map_or(c, |b: f64| b.min(c)));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-checked example: 4 prompts, strong right on 0,1,2; weak right on 2,3.
    /// acc_w = 0.5, acc_s = 0.75, span 0.25.
    fn example() -> (Vec<f64>, Vec<f64>) {
        (vec![1.0, 1.0, 1.0, 0.0], vec![0.0, 0.0, 1.0, 1.0])
    }

    #[test]
    fn perfect_router_apgr_by_hand() {
        let (s, w) = example();
        // Oracle order: prompts 0,1 (strong-only), then 2 (both), then 3 (weak-only).
        let curve = pgr_curve(&[3.0, 2.0, 1.0, 0.0], &s, &w).unwrap();
        // acc after k: 0.5, 0.75, 1.0, 1.0, 0.75 -> PGR 0, 1, 2, 2, 1
        assert_eq!(curve.pgr, vec![0.0, 1.0, 2.0, 2.0, 1.0]);
        // trapezoids of width 1/4: (0+1)/2 + (1+2)/2 + (2+2)/2 + (2+1)/2 = 5.5 -> 5.5/4
        assert!((curve.apgr() - 1.375).abs() < 1e-12);
        assert_eq!(curve.cpt(0.5), Some(0.125));
        assert_eq!(curve.cpt(0.8), Some(0.2));
    }

    #[test]
    fn random_router_apgr_is_one_half() {
        let (s, w) = example();
        // All scores tied = a random router in expectation: straight line to PGR 1.
        let curve = pgr_curve(&[0.3; 4], &s, &w).unwrap();
        assert_eq!(curve.c, vec![0.0, 1.0]);
        assert!((curve.apgr() - 0.5).abs() < 1e-12);
        assert_eq!(curve.cpt(0.5), Some(0.5));
        assert_eq!(curve.cpt(0.8), Some(0.8));
        // The worst order (weak-only first) is below random.
        let worst = pgr_curve(&[0.0, 1.0, 2.0, 3.0], &s, &w).unwrap();
        assert!(worst.apgr() < 0.5);
    }

    #[test]
    fn undefined_when_models_equal() {
        assert!(pgr_curve(&[1.0, 0.0], &[1.0, 0.0], &[0.0, 1.0]).is_none());
    }

    #[test]
    fn min_cost_interpolates() {
        let pts = [
            CostQuality {
                cost: 0.0,
                quality: 0.5,
            },
            CostQuality {
                cost: 1.0,
                quality: 0.9,
            },
        ];
        let c = min_cost_for_quality(&pts, 0.7).unwrap();
        assert!((c - 0.5).abs() < 1e-12);
        assert_eq!(min_cost_for_quality(&pts, 0.95), None);
    }
}
