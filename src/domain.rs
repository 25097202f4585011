//! Domain vocabulary shared by the policy, the router and the API layer.

use serde::Serialize;

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
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
