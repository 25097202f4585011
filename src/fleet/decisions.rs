//! What ReportOutcome needs of a decision, kept in Redis for the decision TTL so an outcome may
//! be reported to any replica: who pays. The estimate it holds, the attempts already reported
//! and whether the hold was released are the decision's outcome marks under its tenant's hash
//! tag (`lua/hold.lua`, `lua/settle.lua`), changed atomically with the spend.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Deadline, Fleet, FleetError, Op};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedDecision {
    #[serde(rename = "t")]
    pub tenant: String,
    /// Empty: the request named no user.
    #[serde(rename = "u", default)]
    pub user: String,
}

impl Fleet {
    /// The key, value and TTL (ms) a decision is stored with.
    pub(super) fn decision_entry(
        &self,
        decision_id: &str,
        tenant: &str,
        user: &str,
        ttl: Duration,
    ) -> Result<(String, String, u64), FleetError> {
        let value = serde_json::to_string(&SharedDecision {
            tenant: tenant.to_string(),
            user: user.to_string(),
        })
        .map_err(|e| FleetError::Protocol(format!("encoding a decision: {e}")))?;
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        Ok((self.keys.decision(decision_id), value, ms))
    }

    /// Keep a decision for `ttl` (one `SET … PX`; with a budget hold, [`Fleet::hold`] stores it
    /// in the same round trip instead).
    pub async fn track(
        &self,
        decision_id: &str,
        (tenant, user): (&str, &str),
        ttl: Duration,
        deadline: Deadline,
    ) -> Result<(), FleetError> {
        let (key, value, ms) = self.decision_entry(decision_id, tenant, user, ttl)?;
        self.run(Op::TrackDecision, deadline, |mut c| async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(&value)
                .arg("PX")
                .arg(ms)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    /// The decision, if it is known and not expired.
    pub async fn decision(
        &self,
        decision_id: &str,
        deadline: Deadline,
    ) -> Result<Option<SharedDecision>, FleetError> {
        let key = self.keys.decision(decision_id);
        let value: Option<String> = self
            .run(Op::ReadDecision, deadline, |mut c| async move {
                redis::cmd("GET").arg(&key).query_async(&mut c).await
            })
            .await?;
        value
            .map(|v| {
                serde_json::from_str(&v).map_err(|e| {
                    FleetError::Protocol(format!("decision {decision_id:?} in Redis: {e}"))
                })
            })
            .transpose()
    }
}
