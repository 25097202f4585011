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

/// Highest mean quality at a mean cost of at most `budget`, when the router may randomise
/// between adjacent points of its curve (sorted by cost); None if every point costs more.
pub fn max_quality_within_cost(points: &[CostQuality], budget: f64) -> Option<f64> {
    let mut pts = points.to_vec();
    pts.sort_by(|a, b| a.cost.total_cmp(&b.cost));
    let mut best: Option<f64> = None;
    let mut take = |q: f64| best = Some(best.map_or(q, |b: f64| b.max(q)));
    for (k, p) in pts.iter().enumerate() {
        if p.cost <= budget {
            take(p.quality);
            if let Some(q) = pts.get(k + 1)
                && q.cost > budget
            {
                let t = (budget - p.cost) / (q.cost - p.cost);
                take(p.quality + t * (q.quality - p.quality));
            }
        }
    }
    best
}

/// RouterBench's AIQ (average improvement in quality, Hu et al. 2024): the area under the
/// router's non-decreasing upper convex hull of (cost, quality) points over the cost range
/// `[lo, hi]`, divided by `hi - lo` (so it is a mean quality). The hull is that of the
/// router's points plus `anchor` (the cheapest single model: any router can send a share of
/// its calls there), held flat beyond its best point; below its cheapest point it counts 0.
pub fn aiq(points: &[CostQuality], anchor: CostQuality, lo: f64, hi: f64) -> f64 {
    let hull = nondecreasing_hull(points.iter().copied().chain([anchor]).collect());
    if hi <= lo {
        return hull.last().map_or(0.0, |p| p.quality);
    }
    let at = |c: f64| -> f64 {
        match hull.iter().position(|p| p.cost >= c) {
            None => hull.last().map_or(0.0, |p| p.quality),
            Some(0) => {
                if hull[0].cost <= c {
                    hull[0].quality
                } else {
                    0.0
                }
            }
            Some(k) => {
                let (a, b) = (hull[k - 1], hull[k]);
                a.quality + (c - a.cost) / (b.cost - a.cost) * (b.quality - a.quality)
            }
        }
    };
    // Exact: the hull is linear between its points, so trapezoids over [lo, hi] cut at them.
    let mut xs: Vec<f64> = vec![lo, hi];
    xs.extend(hull.iter().map(|p| p.cost).filter(|&c| c > lo && c < hi));
    if let Some(first) = hull.first()
        && first.cost > lo
        && first.cost < hi
    {
        // The step up from 0 at the hull's first point.
        xs.push(first.cost - 1e-12 * (hi - lo));
    }
    xs.sort_by(f64::total_cmp);
    let area: f64 = xs
        .windows(2)
        .map(|w| (w[1] - w[0]) * (at(w[0]) + at(w[1])) / 2.0)
        .sum();
    area / (hi - lo)
}

/// The non-decreasing upper convex hull of `points`: sorted by cost, each point on or above
/// the chords of its neighbours, ending at the highest quality (costlier points below it are
/// dropped; ties in quality keep the cheaper point).
pub fn nondecreasing_hull(mut points: Vec<CostQuality>) -> Vec<CostQuality> {
    points.retain(|p| p.cost.is_finite() && p.quality.is_finite());
    points.sort_by(|a, b| {
        a.cost
            .total_cmp(&b.cost)
            .then(b.quality.total_cmp(&a.quality))
    });
    let mut hull: Vec<CostQuality> = Vec::new();
    for p in points {
        if hull.last().is_some_and(|l| p.quality <= l.quality) {
            continue; // costs at least as much for no more quality
        }
        while hull.len() >= 2 {
            let (a, b) = (hull[hull.len() - 2], hull[hull.len() - 1]);
            // b lies on or below the chord a -> p: not on the upper hull.
            let cross = (b.cost - a.cost) * (p.quality - a.quality)
                - (b.quality - a.quality) * (p.cost - a.cost);
            if cross >= 0.0 {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(p);
    }
    hull
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

    fn cq(cost: f64, quality: f64) -> CostQuality {
        CostQuality { cost, quality }
    }

    #[test]
    fn quality_within_a_budget_interpolates_between_adjacent_points() {
        let pts = [cq(0.2, 0.4), cq(1.5, 0.9), cq(0.6, 0.5)];
        // Between (0.6, 0.5) and (1.5, 0.9) at cost 1: 0.5 + 0.4 * 0.4 / 0.9.
        let q = max_quality_within_cost(&pts, 1.0).unwrap();
        assert!((q - (0.5 + 0.4 * 0.4 / 0.9)).abs() < 1e-12, "{q}");
        assert_eq!(max_quality_within_cost(&pts, 2.0), Some(0.9));
        assert_eq!(max_quality_within_cost(&pts, 0.1), None);
        // A single point within the budget is its own quality.
        assert_eq!(max_quality_within_cost(&[cq(0.5, 0.7)], 1.0), Some(0.7));
    }

    #[test]
    fn hull_drops_points_under_chords_and_after_the_best() {
        let hull = nondecreasing_hull(vec![
            cq(0.0, 0.2),
            cq(0.5, 0.3), // under the chord (0, 0.2) -> (0.6, 0.8)
            cq(0.6, 0.8),
            cq(0.8, 0.7), // costlier, worse
            cq(1.0, 0.9),
            cq(1.2, 0.9), // costlier, equal
        ]);
        assert_eq!(hull, vec![cq(0.0, 0.2), cq(0.6, 0.8), cq(1.0, 0.9)]);
    }

    #[test]
    fn aiq_by_hand() {
        // Hull (0, 0.2) -> (0.5, 0.6) -> flat 0.6 over [0, 1]: area 0.5 * 0.4 + 0.5 * 0.6.
        let a = aiq(&[cq(0.5, 0.6), cq(0.9, 0.5)], cq(0.0, 0.2), 0.0, 1.0);
        assert!((a - 0.5).abs() < 1e-9, "{a}");
        // One costly point and the anchor: the line (0, 0.2) -> (2, 0.8) over [0, 1].
        let b = aiq(&[cq(2.0, 0.8)], cq(0.0, 0.2), 0.0, 1.0);
        assert!((b - 0.35).abs() < 1e-9, "{b}");
        // Below the hull's first point nothing counts: anchor at 0.5 over [0, 1].
        let c = aiq(&[], cq(0.5, 0.4), 0.0, 1.0);
        assert!((c - 0.2).abs() < 1e-6, "{c}");
        // A better router never has a lower AIQ.
        assert!(aiq(&[cq(0.5, 0.7)], cq(0.0, 0.2), 0.0, 1.0) > a);
    }
}
