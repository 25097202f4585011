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
            if text.trim().is_empty() {
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
            if out.iter().all(|m| m.content.trim().is_empty()) {
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
        user_id,
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
    if policy.find_model(&model_id).is_none() {
        return Err(bad(
            "model_id",
            format!("unknown model {model_id:?} (not in the catalog)"),
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
