//! Domain vocabulary shared by the policy, the detectors, the router, the log and the API
//! layer. Everything here depends on nothing else in the crate, so every other module can depend
//! on it downward.

use serde::{Deserialize, Serialize};

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in declaration (and `Ord`) order.
            pub const ALL: [$name; [$($s),+].len()] = [$($name::$variant),+];

            /// Position in [`Self::ALL`].
            pub fn index(self) -> usize {
                self as usize
            }

            /// Stable snake_case name (the serde representation).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
            /// Inverse of `as_str` (exact match).
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($s => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum!(
    /// Sensitivity of the request's data, ordered from least to most sensitive.
    DataClass { Public => "public", Internal => "internal", Pii => "pii", Regulated => "regulated" }
);
named_enum!(Mode { Interactive => "interactive", Batch => "batch" });
named_enum!(Capability {
    ToolCalling => "tool_calling",
    JsonOutput => "json_output",
    Vision => "vision",
    LongContext => "long_context",
});
named_enum!(
    /// Where a model runs: a third-party hosted API, our private cloud deployment, or our own hardware.
    Lane { Hosted => "hosted", Private => "private", SelfHosted => "self_hosted" }
);
named_enum!(RiskTier { Low => "low", Elevated => "elevated", High => "high" });
named_enum!(ErrorKind {
    None => "none",
    Timeout => "timeout",
    RateLimited => "rate_limited",
    ServerError => "server_error",
    Refusal => "refusal",
    SchemaViolation => "schema_violation",
});
named_enum!(RouterKind { Rules => "rules", Learned => "learned" });

named_enum!(
    /// Kind of work a prompt asks for.
    TaskType {
        Code => "code",
        Math => "math",
        Extraction => "extraction",
        Classification => "classification",
        Summarization => "summarization",
        Chat => "chat",
        Qa => "qa",
    }
);
named_enum!(
    /// High-stakes subject area of a prompt.
    RiskDomain {
        Medical => "medical",
        Legal => "legal",
        Financial => "financial",
        Employment => "employment",
    }
);
named_enum!(
    /// A category of sensitive data.
    PiiKind {
        Email => "email",
        Phone => "phone",
        CardNumber => "card_number",
        Iban => "iban",
        NationalId => "national_id",
        Secret => "secret",
    }
);

/// Why a decision came out as it did: the policy element that fired and what it did. The
/// same type as the logged reasons (one definition, in the shared log schema).
pub use signalbox_features::log_schema::Reason;

/// A [`Reason`].
pub fn reason(policy_id: impl Into<String>, message: impl Into<String>) -> Reason {
    Reason {
        policy_id: policy_id.into(),
        message: message.into(),
    }
}
