//! The LLMRouter example end to end: `config/examples/llmrouter.toml` (a catalog of the nine
//! LLMRouter models at their list prices) with the bundle trained on LLMRouter's data
//! (`models/llmrouter/`), served in-process on port 0 and called over gRPC.
//!
//! Prompts of several LLMRouter tasks (the task sent as the request's `category`, with the
//! matching `task_hint`) and prompts without any hint are routed at `quality_preference` 0, 0.1,
//! ..., 1.0. Every decision must come from the learned router and follow its rule (the cheapest
//! model within the calibrated margin of the best prediction), and on the same prompt raising the
//! preference must never lower the chosen model's predicted quality nor its cost.
//!
//! Nothing here depends on the bundle's exact probabilities: it reads the manifest for the bundle
//! name and the calibrated margins, and the policy for the prices, so a retrained bundle with the
//! same model ids passes or fails on the properties alone.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::*;
use signalbox::config::Policy;
use signalbox::proto::{self, route_request::Prompt};
use signalbox_features::BundleManifest;

const CONFIG: &str = include_str!("../config/examples/llmrouter.toml");
const LOG_DIR: &str = "dir = \"../../signalbox-data/log\"";

/// The nine LLMRouter models, as the catalog and the bundle name them.
const NINE: [&str; 9] = [
    "codegemma-7b",
    "gemma-2-9b-it",
    "llama-3.1-8b-instruct",
    "llama-3.1-nemotron-51b-instruct",
    "llama-3.3-nemotron-super-49b-v1",
    "llama3-chatqa-1.5-70b",
    "llama3-chatqa-1.5-8b",
    "mistral-7b-instruct-v0.3",
    "qwen2.5-7b-instruct",
];

/// Slack for comparing the router's f32 arithmetic with the f64 values in the response.
const EPS: f64 = 1e-6;

/// Reasons a decision among all nine models may carry; any other (a filter, a budget, a learned
/// error) would mean something besides the learned router shaped the choice.
const EXPECTED_REASONS: [&str; 4] = [
    "task.hint",
    "task.detected",
    "learned.route",
    "retrieval.qa",
];

/// (LLMRouter task sent as `category`, task hint, prompt). Written in the style of each task's
/// prompts; none of them is taken from the data.
const TASK_PROMPTS: [(&str, proto::TaskType, &str); 9] = [
    (
        "gsm8k",
        proto::TaskType::Math,
        "A bakery sells muffins for $3 each. On Monday it sold 48 muffins and on Tuesday it sold \
         twice as many. How many dollars did the bakery take in over the two days?",
    ),
    (
        "math",
        proto::TaskType::Math,
        "Find the sum of all real values of $x$ that satisfy $x^2 - 7x + 10 = 0$.",
    ),
    (
        "mmlu",
        proto::TaskType::Qa,
        "Which of the following gases makes up the largest share of Earth's atmosphere?\n\
         A. Oxygen\nB. Nitrogen\nC. Argon\nD. Carbon dioxide\nAnswer:",
    ),
    (
        "mbpp",
        proto::TaskType::Code,
        "Write a function to find the second largest number in a list of integers.",
    ),
    (
        "human_eval",
        proto::TaskType::Code,
        "def is_palindrome(text: str) -> bool:\n    \"\"\" Checks if the given string is a \
         palindrome, ignoring case.\n    >>> is_palindrome('')\n    True\n    >>> \
         is_palindrome('Aba')\n    True\n    >>> is_palindrome('abc')\n    False\n    \"\"\"\n",
    ),
    (
        "trivia_qa",
        proto::TaskType::Qa,
        "Which Italian city was home to the astronomer Galileo Galilei for most of his working life?",
    ),
    (
        "commonsense_qa",
        proto::TaskType::Qa,
        "Where would you put a plate after washing it if you want it to dry?",
    ),
    (
        "arc_challenge",
        proto::TaskType::Qa,
        "A student drops a ball and a feather in a room with no air. Which statement best \
         describes what happens?",
    ),
    (
        "natural_qa",
        proto::TaskType::Qa,
        "when was the first transatlantic telegraph cable completed",
    ),
];

/// Prompts sent with neither a task hint nor a category: the task is detected from the text.
const UNHINTED_PROMPTS: [&str; 2] = [
    "Who wrote the novel One Hundred Years of Solitude?",
    "Tell me something interesting about octopuses.",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The example policy with its log moved into `log_dir`; paths resolve from `config/examples/`.
fn example_policy(log_dir: &Path) -> Policy {
    assert!(CONFIG.contains(LOG_DIR), "llmrouter example log dir moved");
    let text = CONFIG.replace(
        LOG_DIR,
        &format!("dir = {:?}", log_dir.display().to_string()),
    );
    policy_from(&text, &repo().join("config/examples"))
}

/// The task name of a decision's `task` field, as the engine spells it.
fn task_name(d: &proto::RouteDecision) -> String {
    let t = proto::TaskType::try_from(d.task).expect("known task type");
    t.as_str_name()
        .trim_start_matches("TASK_TYPE_")
        .to_lowercase()
}

/// One decision at one preference, reduced to what the checks compare.
#[derive(Debug)]
struct Step {
    preference: f64,
    model: String,
    /// The chosen model's predicted P(acceptable).
    predicted: f64,
    /// The chosen model's catalog price, micro-USD for 1k tokens in + 1k out.
    price: u64,
    estimated_cost_usd: f64,
    target: f64,
    margin: f64,
}

struct Fixture<'a> {
    policy: &'a Policy,
    manifest: &'a BundleManifest,
}

impl Fixture<'_> {
    fn price(&self, model: &str) -> u64 {
        let idx = self
            .policy
            .find_model(model)
            .unwrap_or_else(|| panic!("{model} is not in the catalog"));
        self.policy.model(idx).cost(1000, 1000).0
    }

    /// Check one decision on its own; returns what the cross-preference checks need.
    fn check_decision(
        &self,
        label: &str,
        category: &str,
        preference: f64,
        d: &proto::RouteDecision,
    ) -> Step {
        let ctx = format!("{label} @ {preference:.1}: {:?}", d.reasons);
        // The learned router decided, with this bundle; the rules are its shadow.
        assert_eq!(d.router, proto::RouterKind::Learned as i32, "{ctx}");
        assert!(
            d.model_version
                .starts_with(&format!("{}@", self.manifest.name)),
            "{}: {ctx}",
            d.model_version
        );
        let shadow = d.shadow.as_ref().expect("rules shadow");
        assert_eq!(shadow.router, proto::RouterKind::Rules as i32, "{ctx}");
        let ids = policy_ids(d);
        assert!(ids.contains(&"learned.route"), "{ctx}");
        assert!(
            ids.iter().all(|id| EXPECTED_REASONS.contains(id)),
            "a filter, budget or error took part: {ctx}"
        );
        let learned_reason = d
            .reasons
            .iter()
            .find(|r| r.policy_id == "learned.route")
            .unwrap();
        assert!(learned_reason.message.contains(&d.model_version), "{ctx}");

        // The primary is one of the nine, predicted for all nine.
        let model = primary_id(d).to_string();
        assert!(NINE.contains(&model.as_str()), "{ctx}");
        assert!(learned_reason.message.ends_with(&model), "{ctx}");
        let predicted_ids: BTreeSet<&str> =
            d.predicted_quality.keys().map(|k| k.as_str()).collect();
        assert_eq!(predicted_ids, NINE.iter().copied().collect(), "{ctx}");
        assert!(
            d.predicted_quality
                .values()
                .all(|p| p.is_finite() && (0.0..=1.0).contains(p)),
            "{:?}",
            d.predicted_quality
        );

        // The quality target follows the preference, and its margin is the bundle's calibrated
        // one: the per-task table when the bundle knows the task, else the prompt-only table.
        let learned = self.policy.learned.as_ref().unwrap();
        let target = d.quality_target.expect("quality target");
        let want_target = learned.min_quality_target
            + preference * (learned.max_quality_target - learned.min_quality_target);
        assert!((target - want_target).abs() < 1e-9, "{target} {ctx}");
        let task_used = if category.is_empty() {
            task_name(d)
        } else {
            category.to_string()
        };
        let task_known = self.manifest.features.tasks.contains(&task_used);
        let margin = d.quality_margin.expect("quality margin");
        let want_margin = self.manifest.margin_for_target(target, task_known).unwrap();
        assert!(
            (margin - want_margin).abs() < 1e-9,
            "{margin} != {want_margin} (task {task_used}, known {task_known}): {ctx}"
        );

        // The routing rule: the chosen model is within the margin of the best prediction, no
        // cheaper model is, and no model at the same price within the margin is predicted better.
        let best = d
            .predicted_quality
            .values()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let bar = best - margin;
        let predicted = d.predicted_quality[&model];
        let price = self.price(&model);
        assert!(
            predicted >= bar - EPS,
            "{model} predicted {predicted}, best {best}, margin {margin}: {ctx}"
        );
        for (other, &p) in &d.predicted_quality {
            let other_price = self.price(other);
            if other_price < price {
                assert!(
                    p < bar + EPS,
                    "{other} (price {other_price}) is cheaper than {model} (price {price}) and \
                     predicted {p} ≥ bar {bar}: {ctx}"
                );
            } else if other_price == price && p >= bar + EPS {
                assert!(
                    p <= predicted + EPS,
                    "{other} costs the same as {model} and is predicted better: {ctx}"
                );
            }
        }
        Step {
            preference,
            model,
            predicted,
            price,
            estimated_cost_usd: d.estimated_cost_usd,
            target,
            margin,
        }
    }
}

/// Raising the preference on the same prompt never lowers the chosen model's predicted quality,
/// its price or its estimated cost, and never loosens the target.
fn check_monotone(label: &str, steps: &[Step]) {
    for w in steps.windows(2) {
        let (lo, hi) = (&w[0], &w[1]);
        let ctx = format!("{label}: {lo:?} → {hi:?}");
        assert!(hi.preference > lo.preference, "{ctx}");
        assert!(hi.target >= lo.target - 1e-12, "target fell: {ctx}");
        assert!(hi.margin <= lo.margin + 1e-12, "margin grew: {ctx}");
        assert!(
            hi.predicted >= lo.predicted - EPS,
            "predicted quality of the choice fell: {ctx}"
        );
        assert!(hi.price >= lo.price, "price of the choice fell: {ctx}");
        assert!(
            hi.estimated_cost_usd >= lo.estimated_cost_usd - 1e-12,
            "estimated cost fell: {ctx}"
        );
    }
}

#[tokio::test]
async fn nine_models_route_monotonically_in_quality_preference() {
    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let policy = example_policy(&tmp.path().join("log"));
    let bundle = policy
        .learned
        .as_ref()
        .expect("the example has a learned router")
        .bundle
        .clone();
    assert_eq!(
        bundle.canonicalize().unwrap(),
        repo().join("models/llmrouter").canonicalize().unwrap()
    );
    let manifest = BundleManifest::load(&bundle).unwrap();
    let bundle_models: BTreeSet<&str> = manifest.models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(bundle_models, NINE.iter().copied().collect());
    let catalog: BTreeSet<&str> = policy.models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(catalog, NINE.iter().copied().collect(), "exactly the nine");
    for (task, _, _) in TASK_PROMPTS {
        assert!(
            manifest.features.tasks.iter().any(|t| t == task),
            "the bundle has no column for {task}"
        );
    }
    let fixture = Fixture {
        policy: &policy,
        manifest: &manifest,
    };

    let (server, mut client) = start_with(policy.clone()).await;
    let mut cases: Vec<(String, String, proto::RouteRequest)> = TASK_PROMPTS
        .iter()
        .map(|&(category, hint, text)| {
            let req = proto::RouteRequest {
                tenant_id: "llmrouter-e2e".into(),
                prompt: Some(Prompt::Text(text.into())),
                task_hint: hint as i32,
                category: category.into(),
                ..Default::default()
            };
            (category.to_string(), category.to_string(), req)
        })
        .collect();
    for (i, text) in UNHINTED_PROMPTS.iter().enumerate() {
        cases.push((
            format!("unhinted-{i}"),
            String::new(),
            text_request("llmrouter-e2e", text),
        ));
    }

    let mut chosen: BTreeMap<String, usize> = BTreeMap::new();
    let mut table = Vec::new();
    for (label, category, req) in &cases {
        let mut steps = Vec::new();
        let mut predictions: Option<BTreeMap<String, f64>> = None;
        for i in 0..=10 {
            let preference = f64::from(i) / 10.0;
            let mut req = req.clone();
            req.quality_preference = Some(preference);
            let d = route(&mut client, req).await;
            if category.is_empty() {
                assert!(policy_ids(&d).contains(&"task.detected"), "{:?}", d.reasons);
            } else {
                assert!(policy_ids(&d).contains(&"task.hint"), "{:?}", d.reasons);
            }
            // The prediction depends on the prompt, not on the preference.
            let p: BTreeMap<String, f64> = d.predicted_quality.clone().into_iter().collect();
            match &predictions {
                None => predictions = Some(p),
                Some(first) => {
                    for (m, v) in first {
                        assert!((p[m] - v).abs() < EPS, "{label}: {m} {v} → {}", p[m]);
                    }
                }
            }
            let step = fixture.check_decision(label, category, preference, &d);
            *chosen.entry(step.model.clone()).or_default() += 1;
            steps.push(step);
        }
        check_monotone(label, &steps);
        // At preference 1 the choice is within the calibrated margin of the best prediction
        // (checked for every step above); say so for the record.
        let top = steps.last().unwrap();
        table.push(format!(
            "{label:>16}: {}",
            steps
                .iter()
                .map(|s| format!("{:.1} {} ({:.2})", s.preference, s.model, s.predicted))
                .collect::<Vec<_>>()
                .join(" | ")
        ));
        assert!((top.preference - 1.0).abs() < 1e-12);
    }
    println!("{}", table.join("\n"));
    println!("chosen: {chosen:?}");
    assert!(
        chosen.len() > 1,
        "the router always chose the same model: {chosen:?}"
    );
    server.shutdown().await.unwrap();
    println!("took {:?}", started.elapsed());
}
