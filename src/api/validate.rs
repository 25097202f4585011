//! proto -> domain: every request field checked (each message fully destructured, so a new
//! proto field breaks the build until it is handled here), `INVALID_ARGUMENT` naming the field.

use std::collections::{BTreeMap, BTreeSet};

use signalbox_features::manifest::{MAX_TASK_BYTES, TASK_PUNCTUATION, is_valid_task_name};

use super::{ApiError, bad};
use crate::config::Policy;
use crate::domain::{Capability, DataClass, ErrorKind, Mode, TaskType};
use crate::engine::{ChatMessage, DecisionEngine, Prompt, RouteInput};
use crate::money::Micros;
use crate::proto;
use crate::service::OutcomeInput;
use crate::tracking::MAX_ATTEMPT;

const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];
const MAX_ID_LEN: usize = 256;

fn check_id(field: &'static str, value: &str, required: bool) -> Result<(), ApiError> {
    if required && value.trim().is_empty() {
        return Err(bad(field, "is required"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(bad(field, format!("longer than {MAX_ID_LEN} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(bad(field, "contains control characters"));
    }
    Ok(())
}

/// The longest run of consecutive digits a category may hold: a label for a kind of request,
/// not an identifier (account, order, card or phone numbers, epoch timestamps).
pub const MAX_CATEGORY_DIGIT_RUN: usize = 8;

/// `category`: empty, or a task name a bundle can list ([`is_valid_task_name`]: a short label
/// of `[A-Za-z0-9_.:/-]`, no spaces or `@`). It is logged as given, so it must not be personal
/// data: the character set keeps out free text; a run of more than
/// [`MAX_CATEGORY_DIGIT_RUN`] digits is refused whatever it is (so whether an id is refused does
/// not depend on its checksum); and the policy's PII detectors refuse what is PII by its shape,
/// such as `078-05-1120` or `4111-1111-1111-1111` (keyword-anchored detectors are not run:
/// `auth:password:reset` is a label).
fn check_category(value: &str, engine: &DecisionEngine) -> Result<(), ApiError> {
    if value.is_empty() {
        return Ok(());
    }
    if !is_valid_task_name(value) {
        if value.len() > MAX_TASK_BYTES {
            return Err(bad(
                "category",
                format!("longer than {MAX_TASK_BYTES} bytes"),
            ));
        }
        let c = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || TASK_PUNCTUATION.contains(*c)))
            .unwrap_or(' ');
        return Err(bad(
            "category",
            format!("character {c:?} is not one of A-Z a-z 0-9 _ . : / -"),
        ));
    }
    let longest_run = value
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    if longest_run > MAX_CATEGORY_DIGIT_RUN {
        return Err(bad(
            "category",
            format!(
                "holds a {longest_run}-digit number (at most {MAX_CATEGORY_DIGIT_RUN} digits in a row): a category is a label for a kind of request, logged in clear, not an identifier"
            ),
        ));
    }
    let found = engine.label_pii_kinds(value);
    if !found.is_empty() {
        let kinds: Vec<&str> = found.iter().map(|k| k.as_str()).collect();
        return Err(bad(
            "category",
            format!(
                "looks like personal data or a secret ({}); a category is logged in clear, send a label",
                kinds.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Nothing but whitespace and invisible format characters (zero-width spaces and joiners, the
/// byte-order mark, bidi controls: Unicode category Cf).
fn is_blank(text: &str) -> bool {
    use unicode_categories::UnicodeCategories;
    text.chars()
        .all(|c| c.is_whitespace() || c.is_other_format())
}

fn enum_value<T: TryFrom<i32>>(field: &'static str, v: i32) -> Result<T, ApiError> {
    T::try_from(v).map_err(|_| bad(field, format!("unknown value {v}")))
}

/// Validate a RouteRequest and convert it to the domain input.
pub fn route_input(
    req: proto::RouteRequest,
    engine: &DecisionEngine,
) -> Result<RouteInput, ApiError> {
    let policy = engine.policy();
    let proto::RouteRequest {
        request_id,
        prompt,
        task_hint,
        tenant_id,
        user_id,
        data_class,
        mode,
        latency_budget_ms,
        required_capabilities,
        quality_preference,
        metadata,
        category,
    } = req;
    check_id("request_id", &request_id, false)?;
    check_category(&category, engine)?;
    check_id("tenant_id", &tenant_id, true)?;
    check_id("user_id", &user_id, false)?;

    let limit = policy.server.max_prompt_bytes;
    let prompt = match prompt {
        None => return Err(bad("prompt", "set either text or messages")),
        Some(proto::route_request::Prompt::Text(text)) => {
            if is_blank(&text) {
                return Err(bad("text", "prompt is empty"));
            }
            if text.len() > limit {
                return Err(bad(
                    "text",
                    format!("prompt is {} bytes, over the limit of {limit}", text.len()),
                ));
            }
            Prompt::Text(text)
        }
        Some(proto::route_request::Prompt::Messages(proto::Messages { messages })) => {
            if messages.is_empty() {
                return Err(bad("messages", "no messages"));
            }
            let mut total = 0usize;
            let mut out = Vec::with_capacity(messages.len());
            for proto::ChatMessage { role, content } in messages {
                if !ROLES.contains(&role.as_str()) {
                    return Err(bad(
                        "messages.role",
                        format!("unknown role {role:?}, expected one of {ROLES:?}"),
                    ));
                }
                total += content.len();
                out.push(ChatMessage { role, content });
            }
            if out.iter().all(|m| is_blank(&m.content)) {
                return Err(bad("messages", "every message is empty"));
            }
            if total > limit {
                return Err(bad(
                    "messages",
                    format!("prompt is {total} bytes, over the limit of {limit}"),
                ));
            }
            Prompt::Messages(out)
        }
    };

    let task_hint = match enum_value::<proto::TaskType>("task_hint", task_hint)? {
        proto::TaskType::Unspecified => None,
        proto::TaskType::Code => Some(TaskType::Code),
        proto::TaskType::Math => Some(TaskType::Math),
        proto::TaskType::Extraction => Some(TaskType::Extraction),
        proto::TaskType::Classification => Some(TaskType::Classification),
        proto::TaskType::Summarization => Some(TaskType::Summarization),
        proto::TaskType::Chat => Some(TaskType::Chat),
        proto::TaskType::Qa => Some(TaskType::Qa),
    };
    let data_class = match enum_value::<proto::DataClass>("data_class", data_class)? {
        proto::DataClass::Unspecified | proto::DataClass::Internal => DataClass::Internal,
        proto::DataClass::Public => DataClass::Public,
        proto::DataClass::Pii => DataClass::Pii,
        proto::DataClass::Regulated => DataClass::Regulated,
    };
    let mode = match enum_value::<proto::Mode>("mode", mode)? {
        proto::Mode::Unspecified | proto::Mode::Interactive => Mode::Interactive,
        proto::Mode::Batch => Mode::Batch,
    };
    let mut capabilities = BTreeSet::new();
    for c in required_capabilities {
        capabilities.insert(
            match enum_value::<proto::Capability>("required_capabilities", c)? {
                proto::Capability::Unspecified => {
                    return Err(bad(
                        "required_capabilities",
                        "CAPABILITY_UNSPECIFIED is not a capability",
                    ));
                }
                proto::Capability::ToolCalling => Capability::ToolCalling,
                proto::Capability::JsonOutput => Capability::JsonOutput,
                proto::Capability::Vision => Capability::Vision,
                proto::Capability::LongContext => Capability::LongContext,
            },
        );
    }
    if let Some(q) = quality_preference
        && !(q.is_finite() && (0.0..=1.0).contains(&q))
    {
        return Err(bad(
            "quality_preference",
            format!("must be in [0, 1], got {q}"),
        ));
    }
    if metadata.len() > 64 {
        return Err(bad("metadata", "more than 64 entries"));
    }
    if metadata
        .iter()
        .any(|(k, v)| k.len() > MAX_ID_LEN || v.len() > 4096)
    {
        return Err(bad(
            "metadata",
            "key over 256 bytes or value over 4096 bytes",
        ));
    }
    Ok(RouteInput {
        request_id: if request_id.is_empty() {
            uuid::Uuid::now_v7().to_string()
        } else {
            request_id
        },
        prompt,
        task_hint,
        tenant_id,
        // From here on only the pseudonym, with `[privacy] user_id = "hmac"`.
        user_id: policy.user_ids.apply(user_id),
        data_class,
        mode,
        latency_budget_ms: (latency_budget_ms > 0).then_some(latency_budget_ms),
        capabilities,
        quality_preference,
        metadata: metadata.into_iter().collect::<BTreeMap<_, _>>(),
        category: (!category.is_empty()).then_some(category),
    })
}

pub fn outcome_input(o: proto::Outcome, policy: &Policy) -> Result<OutcomeInput, ApiError> {
    let proto::Outcome {
        decision_id,
        model_id,
        success,
        quality,
        latency_ms,
        tokens_in,
        tokens_out,
        cost_usd,
        error,
        attempt,
    } = o;
    check_id("decision_id", &decision_id, true)?;
    if attempt > MAX_ATTEMPT {
        return Err(bad(
            "attempt",
            format!("{attempt} is above the highest attempt number, {MAX_ATTEMPT}"),
        ));
    }
    check_id("model_id", &model_id, true)?;
    let Some(spec) = policy.find_model(&model_id).map(|m| policy.model(m)) else {
        return Err(bad(
            "model_id",
            format!("unknown model {model_id:?} (not in the catalog)"),
        ));
    };
    // Implausible usage is refused before anything is booked.
    if tokens_in > spec.context_window {
        return Err(bad(
            "tokens_in",
            format!(
                "{tokens_in} is more than {model_id}'s context window of {} tokens",
                spec.context_window
            ),
        ));
    }
    if tokens_out > spec.max_output_tokens {
        return Err(bad(
            "tokens_out",
            format!(
                "{tokens_out} is more than {model_id}'s maximum output of {} tokens",
                spec.max_output_tokens
            ),
        ));
    }
    let quality = match quality {
        Some(q) if q.is_finite() && (0.0..=1.0).contains(&q) => q,
        Some(q) => return Err(bad("quality", format!("must be in [0, 1], got {q}"))),
        None => f64::from(u8::from(success)),
    };
    let cost = cost_usd
        .map(|c| {
            Micros::from_usd(c).ok_or_else(|| {
                bad(
                    "cost_usd",
                    format!("must be a finite, non-negative amount, got {c}"),
                )
            })
        })
        .transpose()?;
    let max = policy.budgets.max_outcome_cost;
    let cost = match cost {
        Some(c) if c > max => {
            return Err(bad(
                "cost_usd",
                format!(
                    "{} is above budgets.max_outcome_cost_usd ({}) for one call",
                    c.usd(),
                    max.usd()
                ),
            ));
        }
        Some(c) => c,
        None => {
            let c = spec.cost(u64::from(tokens_in), u64::from(tokens_out));
            if c > max {
                return Err(bad(
                    "tokens_out",
                    format!(
                        "{tokens_in} tokens in and {tokens_out} out cost {} at {model_id}'s prices, above budgets.max_outcome_cost_usd ({}) for one call",
                        c.usd(),
                        max.usd()
                    ),
                ));
            }
            c
        }
    };
    let error = match enum_value::<proto::ErrorKind>("error", error)? {
        proto::ErrorKind::Unspecified => ErrorKind::None,
        proto::ErrorKind::Timeout => ErrorKind::Timeout,
        proto::ErrorKind::RateLimited => ErrorKind::RateLimited,
        proto::ErrorKind::ServerError => ErrorKind::ServerError,
        proto::ErrorKind::Refusal => ErrorKind::Refusal,
        proto::ErrorKind::SchemaViolation => ErrorKind::SchemaViolation,
    };
    if success && error != ErrorKind::None {
        return Err(bad(
            "error",
            "a successful outcome cannot carry an error kind",
        ));
    }
    Ok(OutcomeInput {
        decision_id,
        model_id,
        success,
        quality,
        latency_ms,
        tokens_in,
        tokens_out,
        cost,
        error,
        attempt,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::proto::route_request::Prompt as ProtoPrompt;

    const EXAMPLE: &str = include_str!("../../config/signalbox.toml");

    /// The example policy, rules only (its `[learned]` section comes last and is cut).
    fn engine() -> DecisionEngine {
        engine_with(|s| s)
    }

    fn engine_with(edit: impl FnOnce(String) -> String) -> DecisionEngine {
        let rules_only = EXAMPLE
            .find("\n[learned]")
            .map_or(EXAMPLE, |at| &EXAMPLE[..at]);
        let policy = Policy::from_toml(
            &edit(rules_only.to_string()),
            Path::new("test.toml"),
            Path::new("/tmp"),
        )
        .expect("example policy is valid");
        DecisionEngine::new(policy).expect("engine builds")
    }

    fn request(text: &str) -> proto::RouteRequest {
        proto::RouteRequest {
            tenant_id: "acme".into(),
            prompt: Some(ProtoPrompt::Text(text.into())),
            ..Default::default()
        }
    }

    /// The error for `req`, which must be refused with INVALID_ARGUMENT naming `field`.
    fn refused(req: proto::RouteRequest, engine: &DecisionEngine, field: &str) -> String {
        match route_input(req, engine) {
            Ok(input) => panic!("accepted: {input:?}"),
            Err(e @ ApiError::InvalidArgument { field: f, .. }) => {
                assert_eq!(f, field, "{e}");
                let message = e.to_string();
                assert!(message.starts_with(&format!("{field}: ")), "{message}");
                message
            }
            Err(e) => panic!("not INVALID_ARGUMENT: {e}"),
        }
    }

    #[test]
    fn a_minimal_request_takes_the_documented_defaults() {
        let engine = engine();
        let input = route_input(request("What is the capital of France?"), &engine).unwrap();
        assert_eq!(input.tenant_id, "acme");
        assert_eq!(
            input.prompt,
            Prompt::Text("What is the capital of France?".into())
        );
        assert_eq!(input.data_class, DataClass::Internal);
        assert_eq!(input.mode, Mode::Interactive);
        assert_eq!(input.task_hint, None);
        assert_eq!(input.latency_budget_ms, None);
        assert_eq!(input.quality_preference, None);
        assert_eq!(input.category, None);
        assert!(input.capabilities.is_empty());
        // A request id is generated when none is given (a UUIDv7: 36 characters).
        assert_eq!(input.request_id.len(), 36);
        let given = route_input(
            proto::RouteRequest {
                request_id: "req-1".into(),
                ..request("hi")
            },
            &engine,
        )
        .unwrap();
        assert_eq!(given.request_id, "req-1");
    }

    #[test]
    fn every_field_is_converted() {
        let engine = engine();
        let input = route_input(
            proto::RouteRequest {
                request_id: "r".into(),
                prompt: Some(ProtoPrompt::Messages(proto::Messages {
                    messages: vec![
                        proto::ChatMessage {
                            role: "system".into(),
                            content: "Be brief.".into(),
                        },
                        proto::ChatMessage {
                            role: "user".into(),
                            content: "Sum 2 and 3.".into(),
                        },
                    ],
                })),
                task_hint: proto::TaskType::Math as i32,
                tenant_id: "acme".into(),
                user_id: "alice".into(),
                data_class: proto::DataClass::Regulated as i32,
                mode: proto::Mode::Batch as i32,
                latency_budget_ms: 1500,
                required_capabilities: vec![
                    proto::Capability::JsonOutput as i32,
                    proto::Capability::ToolCalling as i32,
                ],
                quality_preference: Some(0.25),
                metadata: [("domain".to_string(), "legal".to_string())].into(),
                category: "billing/refunds".into(),
            },
            &engine,
        )
        .unwrap();
        assert_eq!(
            input.prompt,
            Prompt::Messages(vec![
                ChatMessage {
                    role: "system".into(),
                    content: "Be brief.".into()
                },
                ChatMessage {
                    role: "user".into(),
                    content: "Sum 2 and 3.".into()
                },
            ])
        );
        assert_eq!(input.task_hint, Some(TaskType::Math));
        assert_eq!(input.user_id, "alice");
        assert_eq!(input.data_class, DataClass::Regulated);
        assert_eq!(input.mode, Mode::Batch);
        assert_eq!(input.latency_budget_ms, Some(1500));
        assert_eq!(
            input.capabilities,
            BTreeSet::from([Capability::JsonOutput, Capability::ToolCalling])
        );
        assert_eq!(input.quality_preference, Some(0.25));
        assert_eq!(
            input.metadata.get("domain").map(String::as_str),
            Some("legal")
        );
        assert_eq!(input.category.as_deref(), Some("billing/refunds"));
    }

    #[test]
    fn each_bad_field_is_named() {
        let engine = engine();
        let limit = engine.policy().server.max_prompt_bytes;
        let with = |f: &dyn Fn(&mut proto::RouteRequest)| {
            let mut r = request("What is 2 + 2?");
            f(&mut r);
            r
        };
        let message = |role: &str, content: &str| proto::ChatMessage {
            role: role.into(),
            content: content.into(),
        };
        let messages = |m: Vec<proto::ChatMessage>| {
            Some(ProtoPrompt::Messages(proto::Messages { messages: m }))
        };
        let cases: Vec<(proto::RouteRequest, &str, &str)> = vec![
            (
                with(&|r| r.tenant_id = " ".into()),
                "tenant_id",
                "is required",
            ),
            (
                with(&|r| r.request_id = "x".repeat(257)),
                "request_id",
                "longer than 256",
            ),
            (
                with(&|r| r.user_id = "a\u{7}b".into()),
                "user_id",
                "control characters",
            ),
            (
                with(&|r| r.prompt = None),
                "prompt",
                "set either text or messages",
            ),
            (
                with(&|r| r.prompt = Some(ProtoPrompt::Text(" \n".into()))),
                "text",
                "empty",
            ),
            (
                with(&|r| {
                    r.prompt = Some(ProtoPrompt::Text(
                        "\u{200b}\u{feff} \u{2060}\u{200d}".into(),
                    ))
                }),
                "text",
                "prompt is empty",
            ),
            (
                with(&|r| r.prompt = messages(vec![message("user", "\u{200b}\u{200e}")])),
                "messages",
                "every message is empty",
            ),
            (
                with(&|r| r.prompt = Some(ProtoPrompt::Text("a".repeat(limit + 1)))),
                "text",
                "over the limit",
            ),
            (
                with(&|r| r.prompt = messages(vec![])),
                "messages",
                "no messages",
            ),
            (
                with(&|r| r.prompt = messages(vec![message("robot", "hi")])),
                "messages.role",
                "unknown role \"robot\"",
            ),
            (
                with(&|r| r.prompt = messages(vec![message("user", " "), message("tool", "")])),
                "messages",
                "every message is empty",
            ),
            (
                with(&|r| r.prompt = messages(vec![message("user", &"a".repeat(limit + 1))])),
                "messages",
                "over the limit",
            ),
            (with(&|r| r.task_hint = 99), "task_hint", "unknown value 99"),
            (with(&|r| r.data_class = 9), "data_class", "unknown value 9"),
            (with(&|r| r.mode = 7), "mode", "unknown value 7"),
            (
                with(&|r| r.required_capabilities = vec![0]),
                "required_capabilities",
                "CAPABILITY_UNSPECIFIED",
            ),
            (
                with(&|r| r.required_capabilities = vec![99]),
                "required_capabilities",
                "unknown value 99",
            ),
            (
                with(&|r| r.quality_preference = Some(1.5)),
                "quality_preference",
                "[0, 1]",
            ),
            (
                with(&|r| r.quality_preference = Some(f64::NAN)),
                "quality_preference",
                "[0, 1]",
            ),
            (
                with(&|r| r.metadata = (0..65).map(|i| (i.to_string(), String::new())).collect()),
                "metadata",
                "more than 64",
            ),
            (
                with(&|r| r.metadata = [("k".to_string(), "v".repeat(4097))].into()),
                "metadata",
                "value over 4096",
            ),
            (
                with(&|r| r.category = "a b".into()),
                "category",
                "character ' '",
            ),
            (
                with(&|r| r.category = "c".repeat(65)),
                "category",
                "longer than 64",
            ),
            (
                with(&|r| r.category = "order/123456789".into()),
                "category",
                "9-digit number",
            ),
            (
                with(&|r| r.category = "078-05-1120".into()),
                "category",
                "national_id",
            ),
        ];
        for (req, field, needle) in cases {
            let message = refused(req, &engine, field);
            assert!(
                message.contains(needle),
                "{field}: {message:?} lacks {needle:?}"
            );
        }
    }

    fn outcome() -> proto::Outcome {
        proto::Outcome {
            decision_id: "d-1".into(),
            model_id: "gpt-4o-mini".into(),
            success: true,
            tokens_in: 10,
            tokens_out: 20,
            ..Default::default()
        }
    }

    #[test]
    fn outcomes_are_converted_and_bad_fields_named() {
        let engine = engine();
        let policy = engine.policy();
        let o = outcome_input(outcome(), policy).unwrap();
        assert_eq!(
            (o.decision_id.as_str(), o.model_id.as_str()),
            ("d-1", "gpt-4o-mini")
        );
        let mini = policy.model(policy.find_model("gpt-4o-mini").unwrap());
        assert_eq!(o.cost, mini.cost(10, 20), "computed from the tokens");
        assert_eq!((o.quality, o.error, o.attempt), (1.0, ErrorKind::None, 0));
        let failed = outcome_input(
            proto::Outcome {
                success: false,
                error: proto::ErrorKind::Timeout as i32,
                cost_usd: Some(0.25),
                attempt: 64,
                ..outcome()
            },
            policy,
        )
        .unwrap();
        assert_eq!(failed.quality, 0.0);
        assert_eq!(failed.error, ErrorKind::Timeout);
        assert_eq!(Some(failed.cost), Micros::from_usd(0.25), "as reported");
        assert_eq!(failed.attempt, 64);

        let with = |f: &dyn Fn(&mut proto::Outcome)| {
            let mut o = outcome();
            f(&mut o);
            o
        };
        let cases: Vec<(proto::Outcome, &str, &str)> = vec![
            (
                with(&|o| o.decision_id = String::new()),
                "decision_id",
                "is required",
            ),
            (
                with(&|o| o.attempt = MAX_ATTEMPT + 1),
                "attempt",
                "65 is above",
            ),
            (
                with(&|o| o.model_id = "gpt-9".into()),
                "model_id",
                "unknown model \"gpt-9\"",
            ),
            (with(&|o| o.quality = Some(-0.1)), "quality", "[0, 1]"),
            (
                with(&|o| o.cost_usd = Some(-1.0)),
                "cost_usd",
                "non-negative",
            ),
            (
                with(&|o| o.cost_usd = Some(f64::INFINITY)),
                "cost_usd",
                "finite",
            ),
            (with(&|o| o.error = 42), "error", "unknown value 42"),
            (
                with(&|o| o.tokens_in = u32::MAX),
                "tokens_in",
                "context window of 128000 tokens",
            ),
            (
                with(&|o| o.tokens_out = u32::MAX),
                "tokens_out",
                "maximum output of 128000 tokens",
            ),
            (
                with(&|o| o.cost_usd = Some(100.01)),
                "cost_usd",
                "above budgets.max_outcome_cost_usd (100)",
            ),
            (
                with(&|o| o.error = proto::ErrorKind::Refusal as i32),
                "error",
                "successful outcome cannot carry an error kind",
            ),
        ];
        for (o, field, needle) in cases {
            match outcome_input(o, policy) {
                Err(e @ ApiError::InvalidArgument { field: f, .. }) => {
                    assert_eq!(f, field, "{e}");
                    assert!(e.to_string().contains(needle), "{e} lacks {needle:?}");
                }
                other => panic!("{field}: expected INVALID_ARGUMENT, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_cost_computed_from_tokens_above_the_cap_is_refused() {
        let engine = engine_with(|s| {
            s.replace(
                "in_flight_ttl_secs = 600",
                "in_flight_ttl_secs = 600\nmax_outcome_cost_usd = 1.0",
            )
        });
        let gpt4 = |tokens_in, tokens_out| proto::Outcome {
            model_id: "gpt-4-1106-preview".into(),
            tokens_in,
            tokens_out,
            ..outcome()
        };
        // $0.01 in and $0.03 out per 1k tokens: 20k + 20k cost $0.80, within the cap.
        let within = outcome_input(gpt4(20_000, 20_000), engine.policy()).unwrap();
        assert_eq!(Some(within.cost), Micros::from_usd(0.8));
        match outcome_input(gpt4(40_000, 40_000), engine.policy()) {
            Err(
                e @ ApiError::InvalidArgument {
                    field: "tokens_out",
                    ..
                },
            ) => {
                assert!(e.to_string().contains("cost 1.6"), "{e}");
            }
            other => panic!("expected tokens_out refused, got {other:?}"),
        }
    }
}
