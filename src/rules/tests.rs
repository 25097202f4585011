use std::path::Path;

use super::*;

/// Six models, listed so that catalog (index) order is not quality order; `spare` and
/// `peer` tie on quality. Every data class may use every lane: eligibility is given to
/// `choose` directly, as the engine does after its filters.
const CATALOG: &str = r#"
version = "rules-test"

[[models]]
id = "tiny"
provider = "p"
lane = "self_hosted"
input_per_1k_usd = 0.0001
output_per_1k_usd = 0.0001
context_window = 32000
typical_latency_ms = 500
quality = 0.5

[[models]]
id = "strong"
provider = "p"
lane = "hosted"
input_per_1k_usd = 0.01
output_per_1k_usd = 0.03
context_window = 128000
capabilities = ["vision", "tool_calling"]
typical_latency_ms = 4000
quality = 0.9

[[models]]
id = "small"
provider = "p"
lane = "self_hosted"
input_per_1k_usd = 0.0005
output_per_1k_usd = 0.0005
context_window = 32000
typical_latency_ms = 800
quality = 0.6

[[models]]
id = "medium"
provider = "p"
lane = "hosted"
input_per_1k_usd = 0.002
output_per_1k_usd = 0.006
context_window = 128000
typical_latency_ms = 2000
quality = 0.8

[[models]]
id = "spare"
provider = "p"
lane = "private"
input_per_1k_usd = 0.001
output_per_1k_usd = 0.001
context_window = 128000
typical_latency_ms = 2500
quality = 0.7

[[models]]
id = "peer"
provider = "p"
lane = "private"
input_per_1k_usd = 0.001
output_per_1k_usd = 0.001
context_window = 128000
typical_latency_ms = 2500
quality = 0.7

[data_classes]
public = { lanes = ["hosted", "private", "self_hosted"], store_prompt = true }
internal = { lanes = ["hosted", "private", "self_hosted"], store_prompt = true }
pii = { lanes = ["hosted", "private", "self_hosted"], store_prompt = false }
regulated = { lanes = ["hosted", "private", "self_hosted"], store_prompt = false }
"#;

/// The test catalog with these `[[rules]]`.
fn policy(rules: &str) -> Policy {
    Policy::from_toml(
        &format!("{CATALOG}\n{rules}"),
        Path::new("test.toml"),
        Path::new("/srv/signalbox"),
    )
    .expect("test policy is valid")
}

/// A first rule `only` with the condition `when` (strong, then medium) before the
/// catch-all `default` (small, then tiny).
fn guarded(when: &str) -> Policy {
    policy(&format!(
        r#"
[[rules]]
id = "only"
when = {{ {when} }}
route = "strong"
fallbacks = ["medium"]

[[rules]]
id = "default"
route = "small"
fallbacks = ["tiny"]
"#
    ))
}

static NO_CAPS: BTreeSet<Capability> = BTreeSet::new();

/// A context that no condition used below matches, except where a test changes a field.
fn ctx() -> RuleContext<'static> {
    RuleContext {
        task: TaskType::Chat,
        mode: Mode::Interactive,
        data_class: DataClass::Internal,
        risk_tier: RiskTier::Low,
        prompt_tokens: 1000,
        quality_preference: 0.5,
        capabilities: &NO_CAPS,
        tenant: "acme",
    }
}

/// The given models' indices in catalog order, as the engine builds the eligible list.
fn eligible(p: &Policy, ids: &[&str]) -> Vec<ModelIdx> {
    let mut out: Vec<ModelIdx> = ids
        .iter()
        .map(|id| p.find_model(id).expect("model in the test catalog"))
        .collect();
    out.sort_unstable();
    out
}

fn all(p: &Policy) -> Vec<ModelIdx> {
    (0..p.models.len()).collect()
}

/// Primary id, fallback ids, rule id and reason policy ids of a choice.
fn summary<'a>(p: &'a Policy, c: &'a Choice) -> (&'a str, Vec<&'a str>, &'a str, Vec<&'a str>) {
    (
        p.model(c.primary).id.as_str(),
        c.fallbacks
            .iter()
            .map(|&m| p.model(m).id.as_str())
            .collect(),
        c.rule_id.as_str(),
        c.reasons.iter().map(|r| r.policy_id.as_str()).collect(),
    )
}

/// Every model eligible: `rule` is "only" or "default" of a [`guarded`] policy.
fn assert_rule(p: &Policy, ctx: &RuleContext<'_>, rule: &str) {
    let c = choose(p, ctx, &all(p));
    let want = match rule {
        "only" => ("strong", vec!["medium"], "only", vec!["rule.only"]),
        "default" => ("small", vec!["tiny"], "default", vec!["rule.default"]),
        other => panic!("no rule {other} in a guarded policy"),
    };
    assert_eq!(summary(p, &c), want, "{ctx:?}");
}

#[test]
fn the_first_matching_rule_wins_over_a_later_matching_one() {
    let p = policy(
        r#"
[[rules]]
id = "interactive"
when = { mode = "interactive" }
route = "medium"
fallbacks = ["small"]

[[rules]]
id = "code"
when = { task = ["code"] }
route = "strong"
fallbacks = ["medium"]

[[rules]]
id = "default"
route = "small"
fallbacks = ["tiny"]
"#,
    );
    let code = RuleContext {
        task: TaskType::Code,
        ..ctx()
    };
    assert_eq!(
        summary(&p, &choose(&p, &code, &all(&p))),
        (
            "medium",
            vec!["small"],
            "interactive",
            vec!["rule.interactive"]
        )
    );
    // With the first rule out of the way (batch), the second one serves.
    let batch_code = RuleContext {
        mode: Mode::Batch,
        ..code
    };
    assert_eq!(
        summary(&p, &choose(&p, &batch_code, &all(&p))),
        ("strong", vec!["medium"], "code", vec!["rule.code"])
    );
}

#[test]
fn task_condition_matches_only_the_listed_tasks() {
    let p = guarded(r#"task = ["code", "math"]"#);
    for (task, rule) in [
        (TaskType::Code, "only"),
        (TaskType::Math, "only"),
        (TaskType::Chat, "default"),
        (TaskType::Qa, "default"),
        (TaskType::Summarization, "default"),
    ] {
        assert_rule(&p, &RuleContext { task, ..ctx() }, rule);
    }
}

#[test]
fn mode_condition_matches_only_that_mode() {
    let p = guarded(r#"mode = "batch""#);
    assert_rule(
        &p,
        &RuleContext {
            mode: Mode::Batch,
            ..ctx()
        },
        "only",
    );
    assert_rule(
        &p,
        &RuleContext {
            mode: Mode::Interactive,
            ..ctx()
        },
        "default",
    );
}

#[test]
fn data_class_condition_matches_only_the_listed_classes() {
    let p = guarded(r#"data_class = ["pii", "regulated"]"#);
    for (data_class, rule) in [
        (DataClass::Pii, "only"),
        (DataClass::Regulated, "only"),
        (DataClass::Internal, "default"),
        (DataClass::Public, "default"),
    ] {
        assert_rule(
            &p,
            &RuleContext {
                data_class,
                ..ctx()
            },
            rule,
        );
    }
}

#[test]
fn risk_tier_condition_matches_only_the_listed_tiers() {
    let p = guarded(r#"risk_tier = ["high"]"#);
    for (risk_tier, rule) in [
        (RiskTier::High, "only"),
        (RiskTier::Elevated, "default"),
        (RiskTier::Low, "default"),
    ] {
        assert_rule(&p, &RuleContext { risk_tier, ..ctx() }, rule);
    }
}

#[test]
fn min_prompt_tokens_is_inclusive() {
    let p = guarded("min_prompt_tokens = 4000");
    for (prompt_tokens, rule) in [
        (0, "default"),
        (3999, "default"),
        (4000, "only"),
        (u32::MAX, "only"),
    ] {
        assert_rule(
            &p,
            &RuleContext {
                prompt_tokens,
                ..ctx()
            },
            rule,
        );
    }
}

#[test]
fn max_prompt_tokens_is_inclusive() {
    let p = guarded("max_prompt_tokens = 4000");
    for (prompt_tokens, rule) in [
        (0, "only"),
        (4000, "only"),
        (4001, "default"),
        (u32::MAX, "default"),
    ] {
        assert_rule(
            &p,
            &RuleContext {
                prompt_tokens,
                ..ctx()
            },
            rule,
        );
    }
}

#[test]
fn min_quality_preference_is_inclusive() {
    let p = guarded("min_quality_preference = 0.8");
    for (quality_preference, rule) in [
        (0.0, "default"),
        (0.79, "default"),
        (0.8, "only"),
        (1.0, "only"),
    ] {
        assert_rule(
            &p,
            &RuleContext {
                quality_preference,
                ..ctx()
            },
            rule,
        );
    }
}

#[test]
fn max_quality_preference_is_inclusive() {
    let p = guarded("max_quality_preference = 0.3");
    for (quality_preference, rule) in [
        (0.0, "only"),
        (0.3, "only"),
        (0.31, "default"),
        (1.0, "default"),
    ] {
        assert_rule(
            &p,
            &RuleContext {
                quality_preference,
                ..ctx()
            },
            rule,
        );
    }
}

#[test]
fn capabilities_condition_matches_when_any_listed_capability_is_required() {
    let p = guarded(r#"capabilities = ["vision", "tool_calling"]"#);
    for (caps, rule) in [
        (vec![Capability::Vision], "only"),
        (
            vec![Capability::ToolCalling, Capability::JsonOutput],
            "only",
        ),
        (vec![Capability::Vision, Capability::ToolCalling], "only"),
        (vec![Capability::JsonOutput], "default"),
        (
            vec![Capability::LongContext, Capability::JsonOutput],
            "default",
        ),
        (vec![], "default"),
    ] {
        let capabilities: BTreeSet<Capability> = caps.into_iter().collect();
        assert_rule(
            &p,
            &RuleContext {
                capabilities: &capabilities,
                ..ctx()
            },
            rule,
        );
    }
}

#[test]
fn tenant_condition_matches_only_the_listed_tenants_exactly() {
    let p = guarded(r#"tenant = ["acme", "globex"]"#);
    for (tenant, rule) in [
        ("acme", "only"),
        ("globex", "only"),
        ("initech", "default"),
        ("ACME", "default"),
        ("acme ", "default"),
        ("", "default"),
    ] {
        assert_rule(&p, &RuleContext { tenant, ..ctx() }, rule);
    }
}

#[test]
fn every_condition_of_a_rule_must_hold() {
    let p = guarded(r#"task = ["summarization"], max_prompt_tokens = 4000, tenant = ["acme"]"#);
    let short_summary = RuleContext {
        task: TaskType::Summarization,
        prompt_tokens: 4000,
        ..ctx()
    };
    assert_rule(&p, &short_summary, "only");
    for (what, ctx) in [
        (
            "long",
            RuleContext {
                prompt_tokens: 4001,
                ..short_summary.clone()
            },
        ),
        (
            "not a summary",
            RuleContext {
                task: TaskType::Chat,
                ..short_summary.clone()
            },
        ),
        (
            "other tenant",
            RuleContext {
                tenant: "globex",
                ..short_summary.clone()
            },
        ),
    ] {
        let c = choose(&p, &ctx, &all(&p));
        assert_eq!(c.rule_id, "default", "{what}");
    }
}

#[test]
fn the_catch_all_last_rule_takes_what_no_earlier_rule_matched() {
    let p = policy(
        r#"
[[rules]]
id = "code"
when = { task = ["code"] }
route = "strong"
fallbacks = ["medium"]

[[rules]]
id = "default"
description = "everything else"
route = "small"
fallbacks = ["tiny", "spare"]
"#,
    );
    for task in [TaskType::Chat, TaskType::Qa, TaskType::Math] {
        let c = choose(&p, &RuleContext { task, ..ctx() }, &all(&p));
        assert_eq!(
            summary(&p, &c),
            (
                "small",
                vec!["tiny", "spare"],
                "default",
                vec!["rule.default"]
            ),
            "{task:?}"
        );
        assert_eq!(
            c.reasons[0].message,
            "rule default (everything else) routes to small"
        );
    }
    let c = choose(
        &p,
        &RuleContext {
            task: TaskType::Code,
            ..ctx()
        },
        &all(&p),
    );
    assert_eq!(
        summary(&p, &c),
        ("strong", vec!["medium"], "code", vec!["rule.code"])
    );
    // No description: no parenthesis.
    assert_eq!(c.reasons[0].message, "rule code routes to strong");
}

#[test]
fn an_ineligible_route_moves_the_primary_to_the_first_eligible_fallback_and_says_so() {
    let p = policy(
        r#"
[[rules]]
id = "r"
description = "strong first"
route = "strong"
fallbacks = ["medium", "small", "tiny"]
"#,
    );
    let c = choose(
        &p,
        &ctx(),
        &eligible(&p, &["medium", "small", "tiny", "spare"]),
    );
    assert_eq!(
        summary(&p, &c),
        (
            "medium",
            vec!["small", "tiny"],
            "r",
            vec!["rule.r", "rule.r.fallback"]
        )
    );
    assert_eq!(
        c.reasons[0].message,
        "rule r (strong first) routes to strong"
    );
    assert_eq!(
        c.reasons[1].message,
        "strong not eligible now: primary moved to fallback medium"
    );

    // Route and first fallback out: both named, the second fallback serves.
    let c = choose(&p, &ctx(), &eligible(&p, &["small", "tiny", "spare"]));
    assert_eq!(
        summary(&p, &c),
        (
            "small",
            vec!["tiny"],
            "r",
            vec!["rule.r", "rule.r.fallback"]
        )
    );
    assert_eq!(
        c.reasons[1].message,
        "strong, medium not eligible now: primary moved to fallback small"
    );

    // An ineligible fallback that is not before the primary is no move: no fallback reason.
    let c = choose(&p, &ctx(), &eligible(&p, &["strong", "small"]));
    assert_eq!(
        summary(&p, &c),
        ("strong", vec!["small"], "r", vec!["rule.r"])
    );
}

#[test]
fn fallbacks_exclude_the_primary_and_ineligible_models_in_the_rule_s_order() {
    let p = policy(
        r#"
[[rules]]
id = "r"
route = "small"
fallbacks = ["strong", "medium", "tiny", "spare"]
"#,
    );
    // Rule order, not catalog or quality order; medium and spare are out.
    let c = choose(
        &p,
        &ctx(),
        &eligible(&p, &["tiny", "strong", "small", "peer"]),
    );
    assert_eq!(
        summary(&p, &c),
        ("small", vec!["strong", "tiny"], "r", vec!["rule.r"])
    );
    assert!(!c.fallbacks.contains(&c.primary));
    // Moved primary: it is not repeated among the fallbacks either.
    let c = choose(&p, &ctx(), &eligible(&p, &["tiny", "strong", "medium"]));
    assert_eq!(
        summary(&p, &c),
        (
            "strong",
            vec!["medium", "tiny"],
            "r",
            vec!["rule.r", "rule.r.fallback"]
        )
    );
}

#[test]
fn a_rule_left_without_eligible_fallbacks_keeps_the_best_other_eligible_model() {
    let p = policy(
        r#"
[[rules]]
id = "r"
route = "medium"
fallbacks = ["strong"]
"#,
    );
    // strong is out: the best other eligible model by quality (spare 0.7 over small 0.6,
    // tiny 0.5; spare before peer, its equal, by catalog order).
    let c = choose(
        &p,
        &ctx(),
        &eligible(&p, &["tiny", "small", "medium", "spare", "peer"]),
    );
    assert_eq!(
        summary(&p, &c),
        ("medium", vec!["spare"], "r", vec!["rule.r"])
    );
    // The only eligible model: no fallback at all.
    let c = choose(&p, &ctx(), &eligible(&p, &["medium"]));
    assert_eq!(summary(&p, &c), ("medium", vec![], "r", vec!["rule.r"]));
    // Primary moved to the last fallback: the best other eligible model again.
    let c = choose(&p, &ctx(), &eligible(&p, &["tiny", "strong", "small"]));
    assert_eq!(
        summary(&p, &c),
        (
            "strong",
            vec!["small"],
            "r",
            vec!["rule.r", "rule.r.fallback"]
        )
    );
}

#[test]
fn a_matching_rule_with_no_eligible_model_passes_to_the_next_rule_and_says_so() {
    let p = policy(
        r#"
[[rules]]
id = "hosted-code"
when = { task = ["code"] }
route = "strong"
fallbacks = ["medium"]

[[rules]]
id = "default"
route = "small"
fallbacks = ["tiny"]
"#,
    );
    let code = RuleContext {
        task: TaskType::Code,
        ..ctx()
    };
    let c = choose(&p, &code, &eligible(&p, &["tiny", "small", "spare"]));
    assert_eq!(
        summary(&p, &c),
        (
            "small",
            vec!["tiny"],
            "default",
            vec!["rule.hosted-code", "rule.default"]
        )
    );
    assert_eq!(
        c.reasons[0].message,
        "rule hosted-code matched but none of its models is eligible; trying the next rule"
    );
}

#[test]
fn when_no_rule_has_an_eligible_model_the_best_eligible_model_serves() {
    let p = policy(
        r#"
[[rules]]
id = "code"
when = { task = ["code"] }
route = "strong"
fallbacks = ["medium"]

[[rules]]
id = "default"
route = "small"
fallbacks = ["tiny"]
"#,
    );
    // Ranked by quality, ties (spare, peer) by catalog order.
    let c = choose(&p, &ctx(), &eligible(&p, &["peer", "medium", "spare"]));
    assert_eq!(
        summary(&p, &c),
        (
            "medium",
            vec!["spare", "peer"],
            "none_eligible",
            vec!["rule.default", "rule.none_eligible"]
        )
    );
    assert_eq!(
        c.reasons[1].message,
        "no rule's models are eligible: routed to the best eligible model medium"
    );
    // Every matching rule without an eligible model is named, in order.
    let code = RuleContext {
        task: TaskType::Code,
        ..ctx()
    };
    let c = choose(&p, &code, &eligible(&p, &["spare"]));
    assert_eq!(
        summary(&p, &c),
        (
            "spare",
            vec![],
            "none_eligible",
            vec!["rule.code", "rule.default", "rule.none_eligible"]
        )
    );
}
