//! Validation of the raw policy file into the runtime [`Policy`], one function per section.
//! Every error names the key it is about (`models[2].lane`, `rules[0].fallbacks[1]`, ...).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::*;
use crate::privacy::UserIds;

mod access;
mod state;
mod telemetry;

use access::{auth_policy, privacy_policy, rate_limit_policy, server_policy};
use state::state_policy;
use telemetry::telemetry_policy;

/// A path from the policy file: absolute as given, relative to the file's directory otherwise.
fn resolve_path(base: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() { p } else { base.join(p) }
}

fn usd(key: &str, value: f64) -> Result<Micros, ConfigError> {
    Micros::from_usd(value).ok_or_else(|| {
        invalid(
            key,
            format!("must be a finite, non-negative amount in USD, got {value}"),
        )
    })
}

fn unit_interval(key: &str, value: f64) -> Result<f64, ConfigError> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(key, format!("must be in [0, 1], got {value}")))
    }
}

fn parse_each<T>(
    key: &str,
    items: &[String],
    parse: impl Fn(&str) -> Option<T>,
    what: &str,
) -> Result<Vec<T>, ConfigError> {
    items
        .iter()
        .map(|s| parse(s).ok_or_else(|| invalid(key, format!("unknown {what} {s:?}"))))
        .collect()
}

/// Upper bounds of the transport limits (the HTTP/2 header list limit the server advertises is
/// four times `max_metadata_bytes`, at least 1 MiB, so an oversized call is refused alone).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
pub const MAX_METADATA_BYTES: usize = 256 * 1024;

/// The longest path accepted for a directory or file the policy names (Linux's `PATH_MAX`).
const MAX_PATH_BYTES: usize = 4096;

/// The whole file: each section in turn, then the policy that references them.
pub(super) fn policy(raw: raw::PolicyFile, hash: u64, base: &Path) -> Result<Policy, ConfigError> {
    let raw::PolicyFile {
        version,
        server,
        log,
        defaults,
        models,
        data_classes,
        pii,
        risk,
        budgets,
        circuit_breaker,
        retrieval,
        cascade,
        rules,
        privacy,
        learned,
        auth,
        rate_limits,
        telemetry,
        state,
    } = raw;
    if version.trim().is_empty() {
        return Err(invalid("version", "must not be empty"));
    }
    let server = server_policy(server, base)?;
    let log = log_policy(log, base)?;
    let defaults = defaults_policy(defaults)?;
    let (models, model_index) = catalog(models)?;
    let data_classes = data_class_policies(data_classes)?;
    let (pii_detectors, pii_raise_to, secret_raise_to) = pii_policy(pii)?;
    let risk = risk_tiers(risk)?;
    let user_ids = privacy_policy(privacy, base)?;
    let budgets = budget_policy(budgets, &user_ids)?;
    let circuit = circuit_policy(circuit_breaker)?;
    let retrieval = retrieval_plans(retrieval)?;
    let cascade = cascade_policy(cascade)?;
    let rules = compiled_rules(rules, &model_index)?;
    let learned = learned.map(|l| learned_policy(l, base)).transpose()?;
    let auth = auth_policy(auth, base)?;
    let rate_limits = rate_limit_policy(rate_limits)?;
    let telemetry = telemetry_policy(telemetry)?;
    let state = state_policy(state, base)?;
    Ok(Policy {
        version: format!("{}+{:08x}", version.trim(), hash >> 32),
        server,
        log,
        defaults,
        models,
        model_index,
        data_classes,
        pii_detectors,
        pii_raise_to,
        secret_raise_to,
        risk,
        budgets,
        circuit,
        retrieval,
        cascade,
        rules,
        user_ids,
        learned,
        auth,
        rate_limits,
        telemetry,
        state,
    })
}

/// `[log]`: a relative `dir` is resolved against the config file's directory.
fn log_policy(log: raw::Log, base: &Path) -> Result<LogPolicy, ConfigError> {
    let raw::Log {
        dir,
        segment_max_bytes,
        buffer_records,
        flush_interval_ms,
        ack,
    } = log;
    let ack = match ack.as_str() {
        "queued" => AckMode::Queued,
        "written" => AckMode::Written,
        "fsynced" => AckMode::Fsynced,
        other => {
            return Err(invalid(
                "log.ack",
                format!("unknown mode {other:?}, expected queued, written or fsynced"),
            ));
        }
    };
    if dir.trim().is_empty() {
        return Err(invalid("log.dir", "must not be empty"));
    }
    if dir.contains('\0') {
        return Err(invalid("log.dir", "contains a NUL byte"));
    }
    if dir.len() > MAX_PATH_BYTES {
        return Err(invalid(
            "log.dir",
            format!("is {} bytes long; at most {MAX_PATH_BYTES}", dir.len()),
        ));
    }
    if segment_max_bytes < 4096 {
        return Err(invalid("log.segment_max_bytes", "must be at least 4096"));
    }
    if buffer_records == 0 {
        return Err(invalid("log.buffer_records", "must be positive"));
    }
    Ok(LogPolicy {
        dir: resolve_path(base, &dir),
        segment_max_bytes,
        buffer_records,
        flush_interval_ms: flush_interval_ms.max(1),
        ack,
        // Given on the command line (`serve --replica-id`), not in the file.
        replica_id: None,
    })
}

/// `[defaults]`.
fn defaults_policy(defaults: raw::Defaults) -> Result<Defaults, ConfigError> {
    let raw::Defaults {
        quality_preference,
        interactive_latency_slo_ms,
        batch_latency_slo_ms,
        expected_output_tokens,
        chars_per_token,
    } = defaults;
    Ok(Defaults {
        quality_preference: unit_interval("defaults.quality_preference", quality_preference)?,
        interactive_latency_slo_ms,
        batch_latency_slo_ms,
        expected_output_tokens,
        chars_per_token: if chars_per_token.is_finite() && chars_per_token >= 1.0 {
            chars_per_token
        } else {
            return Err(invalid("defaults.chars_per_token", "must be a number >= 1"));
        },
    })
}

/// `[[models]]`: the catalog, and each id's index in it.
fn catalog(
    models: Vec<raw::Model>,
) -> Result<(Vec<ModelSpec>, HashMap<String, ModelIdx>), ConfigError> {
    if models.is_empty() {
        return Err(invalid(
            "models",
            "the catalog must list at least one model",
        ));
    }
    let mut model_index = HashMap::new();
    let mut catalog = Vec::with_capacity(models.len());
    for (i, m) in models.into_iter().enumerate() {
        let raw::Model {
            id,
            provider,
            lane,
            region,
            input_per_1k_usd,
            output_per_1k_usd,
            context_window,
            max_output_tokens,
            capabilities,
            typical_latency_ms,
            quality,
        } = m;
        let key = |field: &str| format!("models[{i}].{field}");
        if id.trim().is_empty() {
            return Err(invalid(key("id"), "must not be empty"));
        }
        if model_index.insert(id.clone(), i).is_some() {
            return Err(invalid(key("id"), format!("duplicate model id {id:?}")));
        }
        if provider.trim().is_empty() {
            return Err(invalid(key("provider"), "must not be empty"));
        }
        if context_window == 0 {
            return Err(invalid(key("context_window"), "must be positive"));
        }
        let max_output_tokens = max_output_tokens.unwrap_or(context_window);
        if max_output_tokens == 0 || max_output_tokens > context_window {
            return Err(invalid(
                key("max_output_tokens"),
                format!("must be in 1..={context_window} (the context window)"),
            ));
        }
        catalog.push(ModelSpec {
            lane: Lane::parse(&lane).ok_or_else(|| {
                invalid(
                    key("lane"),
                    format!("unknown lane {lane:?}, expected hosted, private or self_hosted"),
                )
            })?,
            input_per_1k: usd(&key("input_per_1k_usd"), input_per_1k_usd)?,
            output_per_1k: usd(&key("output_per_1k_usd"), output_per_1k_usd)?,
            capabilities: parse_each(
                &key("capabilities"),
                &capabilities,
                Capability::parse,
                "capability",
            )?
            .into_iter()
            .collect(),
            quality: unit_interval(&key("quality"), quality)?,
            id,
            provider,
            region,
            context_window,
            max_output_tokens,
            typical_latency_ms,
        });
    }
    Ok((catalog, model_index))
}

/// `[data_classes.<class>]`: every class must be configured.
fn data_class_policies(
    data_classes: BTreeMap<String, raw::DataClassRule>,
) -> Result<BTreeMap<DataClass, DataClassPolicy>, ConfigError> {
    let mut classes = BTreeMap::new();
    for (name, rule) in data_classes {
        let key = format!("data_classes.{name}");
        let class = DataClass::parse(&name).ok_or_else(|| {
            invalid(
                &key,
                "unknown data class, expected public, internal, pii or regulated",
            )
        })?;
        let raw::DataClassRule {
            lanes,
            store_prompt,
        } = rule;
        classes.insert(
            class,
            DataClassPolicy {
                lanes: parse_each(&format!("{key}.lanes"), &lanes, Lane::parse, "lane")?
                    .into_iter()
                    .collect(),
                store_prompt,
            },
        );
    }
    for class in DataClass::ALL {
        if !classes.contains_key(&class) {
            return Err(invalid(
                format!("data_classes.{}", class.as_str()),
                "missing: every data class needs its allowed lanes",
            ));
        }
    }

    Ok(classes)
}

/// `[pii]`: the detectors, and the classes personal data and secrets raise a request to.
fn pii_policy(pii: raw::Pii) -> Result<(Vec<PiiKind>, DataClass, DataClass), ConfigError> {
    let raw::Pii {
        detectors,
        raise_to,
        secret_raise_to,
    } = pii;
    let pii_detectors = parse_each("pii.detectors", &detectors, PiiKind::parse, "detector")?;
    let pii_raise_to = DataClass::parse(&raise_to)
        .ok_or_else(|| invalid("pii.raise_to", format!("unknown data class {raise_to:?}")))?;
    let secret_raise_to = DataClass::parse(&secret_raise_to).ok_or_else(|| {
        invalid(
            "pii.secret_raise_to",
            format!("unknown data class {secret_raise_to:?}"),
        )
    })?;

    Ok((pii_detectors, pii_raise_to, secret_raise_to))
}

/// `[[risk]]`: highest tier first, so the first tier whose domains match wins.
fn risk_tiers(risk: Vec<raw::RiskTierRule>) -> Result<Vec<RiskTierPolicy>, ConfigError> {
    let mut risk_tiers = Vec::new();
    for (i, r) in risk.into_iter().enumerate() {
        let raw::RiskTierRule {
            tier,
            domains,
            constraints,
            min_model_quality,
        } = r;
        let key = |f: &str| format!("risk[{i}].{f}");
        let tier = RiskTier::parse(&tier).ok_or_else(|| {
            invalid(
                key("tier"),
                format!("unknown tier {tier:?}, expected low, elevated or high"),
            )
        })?;
        risk_tiers.push(RiskTierPolicy {
            policy_id: format!("risk.{}", tier.as_str()),
            tier,
            domains: parse_each(&key("domains"), &domains, RiskDomain::parse, "domain")?
                .into_iter()
                .collect(),
            constraints,
            min_model_quality: unit_interval(&key("min_model_quality"), min_model_quality)?,
        });
    }
    // Highest tier first, so the first tier whose domains match wins.
    risk_tiers.sort_by_key(|t| std::cmp::Reverse(t.tier));

    Ok(risk_tiers)
}

/// `[budgets]`: defaults, per-tenant and per-user caps. Users are named in clear in the file;
/// with pseudonymous user ids their caps are keyed by the pseudonym, as requests will be.
fn budget_policy(budgets: raw::Budgets, user_ids: &UserIds) -> Result<BudgetPolicy, ConfigError> {
    let raw::Budgets {
        on_exceeded,
        in_flight_ttl_secs,
        default_tenant,
        default_user,
        tenants,
        users,
        max_outcome_cost_usd,
    } = budgets;
    let max_outcome_cost = usd("budgets.max_outcome_cost_usd", max_outcome_cost_usd)?;
    if max_outcome_cost == Micros::ZERO {
        return Err(invalid("budgets.max_outcome_cost_usd", "must be positive"));
    }
    let default_action = OnExceeded::parse("budgets.on_exceeded", &on_exceeded)?;
    let caps = |key: &str,
                daily: Option<f64>,
                monthly: Option<f64>,
                action: Option<String>|
     -> Result<BudgetCaps, ConfigError> {
        Ok(BudgetCaps {
            daily: daily
                .map(|v| usd(&format!("{key}.daily_usd"), v))
                .transpose()?,
            monthly: monthly
                .map(|v| usd(&format!("{key}.monthly_usd"), v))
                .transpose()?,
            on_exceeded: match action {
                Some(a) => OnExceeded::parse(&format!("{key}.on_exceeded"), &a)?,
                None => default_action,
            },
        })
    };
    let mut tenant_caps = HashMap::new();
    for (i, t) in tenants.into_iter().enumerate() {
        let key = format!("budgets.tenants[{i}]");
        let c = caps(&key, t.daily_usd, t.monthly_usd, t.on_exceeded)?;
        if tenant_caps.insert(t.tenant.clone(), c).is_some() {
            return Err(invalid(
                format!("{key}.tenant"),
                format!("duplicate tenant {:?}", t.tenant),
            ));
        }
    }
    let mut user_caps = HashMap::new();
    for (i, u) in users.into_iter().enumerate() {
        let key = format!("budgets.users[{i}]");
        let c = caps(&key, u.daily_usd, u.monthly_usd, u.on_exceeded)?;
        if user_caps
            .insert((u.tenant.clone(), user_ids.apply(u.user.clone())), c)
            .is_some()
        {
            return Err(invalid(
                format!("{key}.user"),
                format!("duplicate user {:?} of tenant {:?}", u.user, u.tenant),
            ));
        }
    }
    Ok(BudgetPolicy {
        in_flight_ttl_secs,
        max_outcome_cost,
        default_tenant: default_tenant
            .map(|c| {
                caps(
                    "budgets.default_tenant",
                    c.daily_usd,
                    c.monthly_usd,
                    c.on_exceeded,
                )
            })
            .transpose()?,
        default_user: default_user
            .map(|c| {
                caps(
                    "budgets.default_user",
                    c.daily_usd,
                    c.monthly_usd,
                    c.on_exceeded,
                )
            })
            .transpose()?,
        tenants: tenant_caps,
        users: user_caps,
    })
}

/// `[circuit_breaker]`.
fn circuit_policy(circuit_breaker: raw::CircuitBreaker) -> Result<CircuitPolicy, ConfigError> {
    let raw::CircuitBreaker {
        failure_threshold,
        window_secs,
        cooldown_secs,
        half_open_probes,
        provider_failure_threshold,
        count_errors,
    } = circuit_breaker;
    if failure_threshold == 0 {
        return Err(invalid(
            "circuit_breaker.failure_threshold",
            "must be positive",
        ));
    }
    if window_secs == 0 {
        return Err(invalid("circuit_breaker.window_secs", "must be positive"));
    }
    if half_open_probes == 0 {
        return Err(invalid(
            "circuit_breaker.half_open_probes",
            "must be positive",
        ));
    }
    Ok(CircuitPolicy {
        failure_threshold,
        window_secs,
        cooldown_secs,
        half_open_probes,
        provider_failure_threshold,
        count_errors: parse_each(
            "circuit_breaker.count_errors",
            &count_errors,
            |s| crate::domain::ErrorKind::parse(s).filter(|k| *k != crate::domain::ErrorKind::None),
            "error kind",
        )?
        .into_iter()
        .collect(),
    })
}

/// `[[retrieval]]`: at most one plan per task.
fn retrieval_plans(
    retrieval: Vec<raw::Retrieval>,
) -> Result<BTreeMap<TaskType, RetrievalPolicy>, ConfigError> {
    let mut retrieval_plans = BTreeMap::new();
    for (i, r) in retrieval.into_iter().enumerate() {
        let key = |f: &str| format!("retrieval[{i}].{f}");
        let task = TaskType::parse(&r.task)
            .ok_or_else(|| invalid(key("task"), format!("unknown task {:?}", r.task)))?;
        if r.index.trim().is_empty() {
            return Err(invalid(key("index"), "must not be empty"));
        }
        if r.top_k == 0 {
            return Err(invalid(key("top_k"), "must be positive"));
        }
        if retrieval_plans
            .insert(
                task,
                RetrievalPolicy {
                    index: r.index,
                    top_k: r.top_k,
                    rerank: r.rerank,
                },
            )
            .is_some()
        {
            return Err(invalid(
                key("task"),
                format!("duplicate retrieval plan for task {:?}", task.as_str()),
            ));
        }
    }

    Ok(retrieval_plans)
}

/// `[cascade]`.
fn cascade_policy(cascade: raw::Cascade) -> Result<CascadePolicy, ConfigError> {
    let raw::Cascade {
        batch,
        interactive,
        escalate_on,
        max_steps,
    } = cascade;
    if max_steps < 2 {
        return Err(invalid("cascade.max_steps", "must be at least 2"));
    }
    Ok(CascadePolicy {
        batch,
        interactive,
        escalate_on,
        max_steps,
    })
}

/// `[[rules]]`: ordered, first match wins, an unconditional default last; model ids resolved.
fn compiled_rules(
    rules: Vec<raw::Rule>,
    model_index: &HashMap<String, ModelIdx>,
) -> Result<Vec<Rule>, ConfigError> {
    let resolve = |key: &str, id: &str| -> Result<ModelIdx, ConfigError> {
        model_index
            .get(id)
            .copied()
            .ok_or_else(|| invalid(key, format!("unknown model id {id:?} (not in [[models]])")))
    };

    if rules.is_empty() {
        return Err(invalid(
            "rules",
            "at least one rule (the default route) is required",
        ));
    }
    let mut compiled = Vec::with_capacity(rules.len());
    let mut ids = BTreeSet::new();
    let n_rules = rules.len();
    for (i, r) in rules.into_iter().enumerate() {
        let raw::Rule {
            id,
            description,
            when,
            route,
            fallbacks,
        } = r;
        let key = |f: &str| format!("rules[{i}].{f}");
        if id.trim().is_empty() {
            return Err(invalid(key("id"), "must not be empty"));
        }
        if !ids.insert(id.clone()) {
            return Err(invalid(key("id"), format!("duplicate rule id {id:?}")));
        }
        if fallbacks.is_empty() {
            return Err(invalid(
                key("fallbacks"),
                "must list at least one fallback model",
            ));
        }
        let mut targets = vec![resolve(&key("route"), &route)?];
        for (j, f) in fallbacks.iter().enumerate() {
            let idx = resolve(&format!("rules[{i}].fallbacks[{j}]"), f)?;
            if targets.contains(&idx) {
                return Err(invalid(
                    format!("rules[{i}].fallbacks[{j}]"),
                    format!("model {f:?} is listed twice in this rule"),
                ));
            }
            targets.push(idx);
        }
        let when = condition(&format!("rules[{i}].when"), when)?;
        if i + 1 == n_rules && !when.is_unconditional() {
            return Err(invalid(
                key("when"),
                "the last rule is the default route and must have no conditions",
            ));
        }
        compiled.push(Rule {
            id,
            description,
            when,
            targets,
        });
    }

    Ok(compiled)
}

/// `[learned]`.
fn learned_policy(l: raw::Learned, base: &Path) -> Result<LearnedPolicy, ConfigError> {
    let raw::Learned {
        mode,
        required,
        bundle,
        backend,
        onnxruntime_library,
        sessions,
        min_quality_target,
        max_quality_target,
        cascade_band,
        watch_secs,
    } = l;
    let mode = match mode.as_str() {
        "learned_primary" => LearnedMode::LearnedPrimary,
        "rules_primary" => LearnedMode::RulesPrimary,
        "rules_only" => LearnedMode::RulesOnly,
        other => {
            return Err(invalid(
                "learned.mode",
                format!(
                    "unknown mode {other:?}, expected learned_primary, rules_primary or rules_only"
                ),
            ));
        }
    };
    if bundle.trim().is_empty() {
        return Err(invalid("learned.bundle", "must not be empty"));
    }
    let resolve = |p: &str| resolve_path(base, p);
    let backend = match backend.as_str() {
        "tract" => BackendChoice::Tract,
        "onnxruntime" => BackendChoice::OnnxRuntime(
            (!onnxruntime_library.trim().is_empty()).then(|| resolve(&onnxruntime_library)),
        ),
        other => {
            return Err(invalid(
                "learned.backend",
                format!("unknown backend {other:?}, expected tract or onnxruntime"),
            ));
        }
    };
    let lo = unit_interval("learned.min_quality_target", min_quality_target)?;
    let hi = unit_interval("learned.max_quality_target", max_quality_target)?;
    if lo > hi {
        return Err(invalid(
            "learned.min_quality_target",
            "must not exceed learned.max_quality_target",
        ));
    }
    Ok(LearnedPolicy {
        mode,
        required,
        bundle: resolve(&bundle),
        backend,
        sessions,
        min_quality_target: lo,
        max_quality_target: hi,
        cascade_band: unit_interval("learned.cascade_band", cascade_band)?,
        watch_secs,
    })
}

fn condition(key: &str, when: raw::When) -> Result<Condition, ConfigError> {
    let raw::When {
        task,
        mode,
        data_class,
        risk_tier,
        min_prompt_tokens,
        max_prompt_tokens,
        min_quality_preference,
        max_quality_preference,
        capabilities,
        tenant,
    } = when;
    Ok(Condition {
        task: task
            .map(|v| parse_each(&format!("{key}.task"), &v, TaskType::parse, "task"))
            .transpose()?
            .map(|v| v.into_iter().collect()),
        mode: mode
            .map(|m| {
                Mode::parse(&m)
                    .ok_or_else(|| invalid(format!("{key}.mode"), format!("unknown mode {m:?}")))
            })
            .transpose()?,
        data_class: data_class
            .map(|v| {
                parse_each(
                    &format!("{key}.data_class"),
                    &v,
                    DataClass::parse,
                    "data class",
                )
            })
            .transpose()?
            .map(|v| v.into_iter().collect()),
        risk_tier: risk_tier
            .map(|v| {
                parse_each(
                    &format!("{key}.risk_tier"),
                    &v,
                    RiskTier::parse,
                    "risk tier",
                )
            })
            .transpose()?
            .map(|v| v.into_iter().collect()),
        min_prompt_tokens,
        max_prompt_tokens,
        min_quality_preference: min_quality_preference
            .map(|v| unit_interval(&format!("{key}.min_quality_preference"), v))
            .transpose()?,
        max_quality_preference: max_quality_preference
            .map(|v| unit_interval(&format!("{key}.max_quality_preference"), v))
            .transpose()?,
        capabilities: capabilities
            .map(|v| {
                parse_each(
                    &format!("{key}.capabilities"),
                    &v,
                    Capability::parse,
                    "capability",
                )
            })
            .transpose()?
            .map(|v| v.into_iter().collect()),
        tenant: tenant.map(|v| v.into_iter().collect()),
    })
}
