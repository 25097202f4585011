//! The decision and outcome log records: what the service writes (`decisions-*.jsonl`,
//! `outcomes-*.jsonl`, one JSON object per line; file names in [`crate::log_segments`]) and what every reader of the log reads (the
//! service's restart, `signalbox-train ingest`, the shadow report, the synthetic generator).
//!
//! Every record is written with [`SCHEMA_VERSION`] as its first field, `schema`. A record
//! without it is version 1, the format written before the field existed; it reads into the same
//! types:
//!
//! - `pii`: version 2 writes a list of [`PiiCount`]; version 1 an object `{kind: count}`.
//! - `predicted_quality`: version 2 writes a list of [`ModelQuality`] (empty without a
//!   prediction); version 1 an object `{model: p}`, or null without a prediction.
//! - `category`: version 2 always writes it (null when the caller gave none); version 1 left
//!   it out.
//!
//! Reading is tolerant: unknown fields are ignored, and a field that older or hand-written
//! records leave out reads as its default where one means something (no category, no stored
//! prompt, no PII found, no capabilities, no fallbacks, no cascade, no shadow decision, no
//! prediction, no reasons, attempt 0).
//!
//! Readers that need a few fields of many records (a restart reads up to
//! `server.max_tracked_decisions` decisions) deserialize a projection instead of the full
//! record: [`DecisionSummary`] and [`OutcomeSummary`] (restart), [`DecisionPrompt`] and
//! [`OutcomeLabel`] (training's ingest), [`DecisionRouting`] (shadow report). serde skips the
//! other fields of each line without building them.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// The version written in every record's `schema` field.
pub const SCHEMA_VERSION: u32 = 2;

/// Records without a `schema` field: the format before it existed.
fn version_1() -> u32 {
    1
}

/// Why a decision was made: the policy (or rule, detector, budget) and what it did.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub policy_id: String,
    pub message: String,
}

/// PII matches of one kind in the prompt.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PiiCount {
    pub kind: String,
    pub count: u32,
}

/// The learned router's predicted quality (P(acceptable answer)) of one model.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ModelQuality {
    pub model: String,
    pub p: f64,
}

/// The decision of the router that was not served.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ShadowRecord {
    pub router: String,
    pub primary: String,
    pub agrees: bool,
}

/// One routing decision (denied ones too).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    /// [`SCHEMA_VERSION`] when written; 1 for records without it.
    #[serde(default = "version_1")]
    pub schema: u32,
    pub ts: String,
    pub decision_id: String,
    pub request_id: String,
    pub tenant_id: String,
    pub user_id: String,
    /// Task type (empty when the request was denied before it was inspected).
    pub task: String,
    /// The caller's category label, when given.
    #[serde(default)]
    pub category: Option<String>,
    pub task_source: String,
    pub data_class: String,
    pub mode: String,
    pub risk_tier: String,
    /// PII-redacted prompt, or null when the data class does not allow storing it.
    #[serde(default)]
    pub prompt: Option<String>,
    pub prompt_chars: usize,
    pub prompt_tokens_est: u32,
    #[serde(default, deserialize_with = "list_or_object")]
    pub pii: Vec<PiiCount>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub quality_preference: Option<f64>,
    #[serde(default)]
    pub latency_budget_ms: Option<u32>,
    pub router: String,
    /// Empty when the request was denied.
    pub primary: String,
    #[serde(default)]
    pub fallbacks: Vec<String>,
    #[serde(default)]
    pub cascade: Vec<String>,
    #[serde(default)]
    pub shadow: Option<ShadowRecord>,
    /// In the learned bundle's model order; empty without a prediction.
    #[serde(default, deserialize_with = "list_or_object")]
    pub predicted_quality: Vec<ModelQuality>,
    /// Learned router: the quality target the request's preference asked for.
    #[serde(default)]
    pub quality_target: Option<f64>,
    pub estimated_cost_usd: f64,
    pub policy_version: String,
    pub model_version: String,
    #[serde(default)]
    pub reasons: Vec<Reason>,
    pub denied: bool,
}

/// One reported outcome.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct OutcomeRecord {
    /// [`SCHEMA_VERSION`] when written; 1 for records without it.
    #[serde(default = "version_1")]
    pub schema: u32,
    pub ts: String,
    pub decision_id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub model_id: String,
    pub success: bool,
    pub quality: f64,
    pub latency_ms: u32,
    pub tokens_in: u32,
    pub tokens_out: u32,
    /// As booked.
    pub cost_usd: f64,
    pub error: String,
    /// The caller's attempt number (0: not given; absent in older records).
    #[serde(default)]
    pub attempt: u32,
}

/// The fields of a [`DecisionRecord`] a restart needs to track the decision again.
#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct DecisionSummary {
    pub ts: String,
    pub decision_id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub denied: bool,
    pub estimated_cost_usd: f64,
}

/// The fields of an [`OutcomeRecord`] that tell a restart its decision is settled, and which
/// attempt it reported.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct OutcomeSummary {
    pub decision_id: String,
    #[serde(default)]
    pub attempt: u32,
}

/// The fields of a [`DecisionRecord`] training's ingest joins to outcomes: the prompt and its
/// task. Hand-written logs may leave out everything but `decision_id`.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DecisionPrompt {
    pub decision_id: String,
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
}

/// The fields of an [`OutcomeRecord`] training reads as a label of its decision's prompt.
#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct OutcomeLabel {
    pub ts: String,
    pub decision_id: String,
    pub model_id: String,
    /// Kept as read, so a reader can name a non-boolean value in its report.
    pub success: serde_json::Value,
    pub quality: f64,
    #[serde(default)]
    pub latency_ms: Option<f64>,
    #[serde(default)]
    pub cost_usd: Option<f64>,
}

/// The fields of a [`DecisionRecord`] the shadow report compares: both routers' choices and
/// the prediction.
#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct DecisionRouting {
    pub decision_id: String,
    #[serde(default)]
    pub task: Option<String>,
    pub router: String,
    pub primary: String,
    #[serde(default)]
    pub shadow: Option<ShadowRecord>,
    #[serde(default, deserialize_with = "list_or_object")]
    pub predicted_quality: Vec<ModelQuality>,
}

/// A list entry that version 1 wrote as one `key: value` pair of an object.
trait KeyedEntry: Sized {
    type Value;
    const EXPECTING: &'static str;
    fn from_pair(key: String, value: Self::Value) -> Self;
}

impl KeyedEntry for PiiCount {
    type Value = u32;
    const EXPECTING: &'static str = "a list of {kind, count} or an object {kind: count}";
    fn from_pair(kind: String, count: u32) -> PiiCount {
        PiiCount { kind, count }
    }
}

impl KeyedEntry for ModelQuality {
    type Value = f64;
    const EXPECTING: &'static str = "a list of {model, p}, an object {model: p} or null";
    fn from_pair(model: String, p: f64) -> ModelQuality {
        ModelQuality { model, p }
    }
}

/// Reads a list of `T` (version 2), an object of `key: value` pairs in its order (version 1)
/// or null (empty).
fn list_or_object<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: KeyedEntry + Deserialize<'de>,
    T::Value: Deserialize<'de>,
{
    struct ListOrObject<T>(PhantomData<T>);

    impl<'de, T> Visitor<'de> for ListOrObject<T>
    where
        T: KeyedEntry + Deserialize<'de>,
        T::Value: Deserialize<'de>,
    {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(T::EXPECTING)
        }

        fn visit_unit<E>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }

        fn visit_none<E>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(entry) = seq.next_element()? {
                out.push(entry);
            }
            Ok(out)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
            while let Some((key, value)) = map.next_entry::<String, T::Value>()? {
                out.push(T::from_pair(key, value));
            }
            Ok(out)
        }
    }

    d.deserialize_any(ListOrObject(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as the service wrote them before `schema` existed (copied from a log it wrote):
    /// a learned decision with PII and a prediction, a denied one, an outcome.
    const V1_LEARNED: &str = r#"{"ts":"2026-12-02T15:28:24.580Z","decision_id":"01a2375f-0803-7410-ae66-f5d3bbfc8f02","request_id":"01a2375f-0803-7410-ae66-f5d2559c56d7","tenant_id":"trial","user_id":"","task":"math","task_source":"detected","data_class":"pii","mode":"interactive","risk_tier":"low","prompt":"Please email the contract to [EMAIL] and call [PHONE] if anything is unclear.","prompt_chars":99,"prompt_tokens_est":25,"pii":{"email":1,"phone":1},"capabilities":[],"quality_preference":null,"latency_budget_ms":null,"router":"learned","primary":"mistralai/Mixtral-8x7B-Instruct-v0.1","fallbacks":["llama-3.1-70b-instruct","qwen2.5-coder-32b-instruct"],"cascade":[],"shadow":{"router":"rules","primary":"llama-3.1-70b-instruct","agrees":false},"predicted_quality":{"gpt-4-1106-preview":0.5436640381813049,"mistralai/Mixtral-8x7B-Instruct-v0.1":0.5093231201171875},"quality_target":0.95,"estimated_cost_usd":0.000323,"policy_version":"example-2026-11+8bfe0ae9","model_version":"routellm-mmlu@e5db0369ac4a","reasons":[{"policy_id":"data_class.raised_by_pii","message":"detected email×1, phone×1: data class raised from internal to pii"},{"policy_id":"task.detected","message":"task detected from the text as math"},{"policy_id":"data_class.pii.lanes","message":"data class pii may only use lanes [private, self_hosted]: excluded gpt-4-1106-preview, claude-3-5-sonnet, gpt-4o-mini"},{"policy_id":"learned.route","message":"learned router routellm-mmlu@e5db0369ac4a: predicted P(acceptable) gpt-4-1106-preview 0.54, mistralai/Mixtral-8x7B-Instruct-v0.1 0.51; quality target 0.950 → margin 0.102: cheapest eligible model within the margin of the best is mistralai/Mixtral-8x7B-Instruct-v0.1"}],"denied":false}"#;
    const V1_DENIED: &str = r#"{"ts":"2026-12-02T15:28:37.006Z","decision_id":"01a2375f-388e-7405-b503-e694a32ec60a","request_id":"01a2375f-388e-7405-b503-e693bf468681","tenant_id":"trial","user_id":"","task":"","task_source":"","data_class":"internal","mode":"interactive","risk_tier":"","prompt":null,"prompt_chars":0,"prompt_tokens_est":0,"pii":{},"capabilities":[],"quality_preference":null,"latency_budget_ms":null,"router":"rules","primary":"","fallbacks":[],"cascade":[],"shadow":null,"predicted_quality":null,"quality_target":null,"estimated_cost_usd":0.0,"policy_version":"example-2026-11+4260ee22","model_version":"","reasons":[{"policy_id":"budget.tenant.daily","message":"tenant trial daily budget reached: $0.003650 committed ($0.003650 spent + $0.000000 in flight) of $0.001000"}],"denied":true}"#;
    const V1_OUTCOME: &str = r#"{"ts":"2026-12-02T15:28:24.581Z","decision_id":"01a2375f-0803-7410-ae66-f5d3bbfc8f02","tenant_id":"trial","user_id":"","model_id":"mistralai/Mixtral-8x7B-Instruct-v0.1","success":true,"quality":1.0,"latency_ms":800,"tokens_in":50,"tokens_out":100,"cost_usd":0.00009,"error":"none","attempt":0}"#;

    fn s(v: &str) -> String {
        v.to_string()
    }

    fn reason(policy_id: &str, message: &str) -> Reason {
        Reason {
            policy_id: s(policy_id),
            message: s(message),
        }
    }

    /// A decision with every field set (no empty list, no null), so each projection test
    /// checks real values.
    fn full_decision() -> DecisionRecord {
        DecisionRecord {
            schema: SCHEMA_VERSION,
            ts: s("2026-12-02T15:28:24.580Z"),
            decision_id: s("d-1"),
            request_id: s("r-1"),
            tenant_id: s("acme"),
            user_id: s("alice"),
            task: s("math"),
            category: Some(s("support/billing")),
            task_source: s("hint"),
            data_class: s("pii"),
            mode: s("batch"),
            risk_tier: s("elevated"),
            prompt: Some(s("mail [EMAIL] the proof")),
            prompt_chars: 31,
            prompt_tokens_est: 8,
            pii: vec![PiiCount {
                kind: s("email"),
                count: 2,
            }],
            capabilities: vec![s("json_mode")],
            quality_preference: Some(0.75),
            latency_budget_ms: Some(1500),
            router: s("learned"),
            primary: s("m-weak"),
            fallbacks: vec![s("m-strong")],
            cascade: vec![s("m-weak"), s("m-strong")],
            shadow: Some(ShadowRecord {
                router: s("rules"),
                primary: s("m-strong"),
                agrees: false,
            }),
            predicted_quality: vec![
                ModelQuality {
                    model: s("m-strong"),
                    p: 0.875,
                },
                ModelQuality {
                    model: s("m-weak"),
                    p: 0.5,
                },
            ],
            quality_target: Some(0.95),
            estimated_cost_usd: 0.00125,
            policy_version: s("p-7"),
            model_version: s("bundle@abc"),
            reasons: vec![reason("learned.route", "cheapest within the margin")],
            denied: true,
        }
    }

    fn full_outcome() -> OutcomeRecord {
        OutcomeRecord {
            schema: SCHEMA_VERSION,
            ts: s("2026-12-02T15:28:25.000Z"),
            decision_id: s("d-1"),
            tenant_id: s("acme"),
            user_id: s("alice"),
            model_id: s("m-weak"),
            success: true,
            quality: 0.25,
            latency_ms: 812,
            tokens_in: 50,
            tokens_out: 120,
            cost_usd: 0.0009,
            error: s("none"),
            attempt: 3,
        }
    }

    fn json<T: Serialize>(v: &T) -> String {
        match serde_json::to_string(v) {
            Ok(j) => j,
            Err(e) => panic!("record serializes: {e}"),
        }
    }

    fn parse<'a, T: Deserialize<'a>>(line: &'a str) -> T {
        match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => panic!("{e}: {line}"),
        }
    }

    #[test]
    fn version_2_records_round_trip_with_schema_first() {
        let mut sparse = full_decision();
        sparse.category = None;
        sparse.prompt = None;
        sparse.pii.clear();
        sparse.predicted_quality.clear();
        sparse.shadow = None;
        sparse.quality_target = None;
        for d in [full_decision(), sparse] {
            let line = json(&d);
            assert!(line.starts_with(r#"{"schema":2,"ts":"#), "{line}");
            assert_eq!(parse::<DecisionRecord>(&line), d);
        }
        let o = full_outcome();
        let line = json(&o);
        assert!(line.starts_with(r#"{"schema":2,"ts":"#), "{line}");
        assert_eq!(parse::<OutcomeRecord>(&line), o);
    }

    #[test]
    fn version_2_writes_lists_and_an_absent_category_as_null() {
        let mut d = full_decision();
        d.category = None;
        d.predicted_quality.clear();
        let v: serde_json::Value = parse(&json(&d));
        assert_eq!(v["pii"], serde_json::json!([{"kind": "email", "count": 2}]));
        assert_eq!(v["predicted_quality"], serde_json::json!([]));
        assert!(v.get("category").is_some_and(serde_json::Value::is_null));
        let v: serde_json::Value = parse(&json(&full_decision()));
        assert_eq!(
            v["predicted_quality"],
            serde_json::json!([{"model": "m-strong", "p": 0.875}, {"model": "m-weak", "p": 0.5}])
        );
    }

    #[test]
    fn version_1_lines_read_as_the_same_values() {
        let d: DecisionRecord = parse(V1_LEARNED);
        assert_eq!(d.schema, 1);
        assert_eq!(d.category, None);
        assert_eq!(
            d.pii,
            [
                PiiCount {
                    kind: s("email"),
                    count: 1
                },
                PiiCount {
                    kind: s("phone"),
                    count: 1
                }
            ]
        );
        assert_eq!(
            d.predicted_quality,
            [
                ModelQuality {
                    model: s("gpt-4-1106-preview"),
                    p: 0.5436640381813049
                },
                ModelQuality {
                    model: s("mistralai/Mixtral-8x7B-Instruct-v0.1"),
                    p: 0.5093231201171875
                }
            ]
        );
        assert_eq!(
            d.shadow,
            Some(ShadowRecord {
                router: s("rules"),
                primary: s("llama-3.1-70b-instruct"),
                agrees: false
            })
        );
        assert_eq!(
            (d.quality_target, d.prompt_tokens_est, d.reasons.len()),
            (Some(0.95), 25, 4)
        );
        // Written again as version 2 and read back: the same values, in the new shapes.
        let v2 = DecisionRecord {
            schema: SCHEMA_VERSION,
            ..d.clone()
        };
        let line = json(&v2);
        assert!(line.contains(r#""pii":[{"kind":"email","count":1},{"kind":"phone","count":1}]"#));
        assert_eq!(parse::<DecisionRecord>(&line), v2);
        // Every other field is the same JSON value as in the version 1 line.
        let (old, new): (serde_json::Value, serde_json::Value) = (parse(V1_LEARNED), parse(&line));
        let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
            panic!("records are objects");
        };
        for (k, v) in old {
            if !matches!(k.as_str(), "pii" | "predicted_quality") {
                assert_eq!(new.get(k), Some(v), "{k}");
            }
        }

        let d: DecisionRecord = parse(V1_DENIED);
        assert_eq!(d.schema, 1);
        assert!(d.denied && d.pii.is_empty() && d.predicted_quality.is_empty());
        assert_eq!(d.prompt, None);
        assert_eq!(d.reasons[0].policy_id, "budget.tenant.daily");

        let o: OutcomeRecord = parse(V1_OUTCOME);
        assert_eq!(o.schema, 1);
        assert_eq!(
            o,
            OutcomeRecord {
                schema: 1,
                ts: s("2026-12-02T15:28:24.581Z"),
                decision_id: s("01a2375f-0803-7410-ae66-f5d3bbfc8f02"),
                tenant_id: s("trial"),
                user_id: s(""),
                model_id: s("mistralai/Mixtral-8x7B-Instruct-v0.1"),
                success: true,
                quality: 1.0,
                latency_ms: 800,
                tokens_in: 50,
                tokens_out: 100,
                cost_usd: 0.00009,
                error: s("none"),
                attempt: 0,
            }
        );
        // Before attempts were logged.
        let older = V1_OUTCOME.replace(r#","attempt":0"#, "");
        assert_eq!(parse::<OutcomeRecord>(&older), o);
    }

    #[test]
    fn a_field_of_the_wrong_shape_is_a_clear_error() {
        let line = V1_LEARNED.replace(r#""pii":{"email":1,"phone":1}"#, r#""pii":"email""#);
        let err = serde_json::from_str::<DecisionRecord>(&line)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("expected a list of {kind, count} or an object {kind: count}"),
            "{err}"
        );
        let line = V1_LEARNED.replace(r#""prompt_tokens_est":25,"#, "");
        let err = serde_json::from_str::<DecisionRecord>(&line)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("missing field `prompt_tokens_est`"), "{err}");
    }

    #[test]
    fn restart_projection_reads_the_full_decision() {
        let d = full_decision();
        let p: DecisionSummary = parse(&json(&d));
        assert_eq!(
            p,
            DecisionSummary {
                ts: d.ts,
                decision_id: d.decision_id,
                tenant_id: d.tenant_id,
                user_id: d.user_id,
                denied: d.denied,
                estimated_cost_usd: d.estimated_cost_usd,
            }
        );
    }

    #[test]
    fn restart_projection_reads_the_full_outcome() {
        let o = full_outcome();
        let p: OutcomeSummary = parse(&json(&o));
        assert_eq!(
            p,
            OutcomeSummary {
                decision_id: o.decision_id,
                attempt: o.attempt,
            }
        );
    }

    #[test]
    fn ingest_projection_reads_the_full_decision() {
        let d = full_decision();
        let p: DecisionPrompt = parse(&json(&d));
        assert_eq!(
            p,
            DecisionPrompt {
                decision_id: d.decision_id,
                prompt: d.prompt,
                task: Some(d.task),
                category: d.category,
            }
        );
    }

    #[test]
    fn ingest_projection_reads_the_full_outcome() {
        let o = full_outcome();
        let p: OutcomeLabel = parse(&json(&o));
        assert_eq!(
            p,
            OutcomeLabel {
                ts: o.ts,
                decision_id: o.decision_id,
                model_id: o.model_id,
                success: serde_json::Value::Bool(o.success),
                quality: o.quality,
                latency_ms: Some(f64::from(o.latency_ms)),
                cost_usd: Some(o.cost_usd),
            }
        );
    }

    #[test]
    fn shadow_projection_reads_the_full_decision() {
        let d = full_decision();
        let p: DecisionRouting = parse(&json(&d));
        assert_eq!(
            p,
            DecisionRouting {
                decision_id: d.decision_id,
                task: Some(d.task),
                router: d.router,
                primary: d.primary,
                shadow: d.shadow,
                predicted_quality: d.predicted_quality,
            }
        );
        // And the version 1 object.
        let p: DecisionRouting = parse(V1_LEARNED);
        assert_eq!(
            p.predicted_quality[1].model,
            "mistralai/Mixtral-8x7B-Instruct-v0.1"
        );
    }
}
