//! What ReportOutcome needs of a decision, kept in Redis for the decision TTL so an outcome may
//! be reported to any replica: who pays and the estimate it holds. The attempts already
//! reported and whether the hold was released are the tenant's outcome marks
//! (`lua/settle.lua`), changed atomically with the spend.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::budget::FleetHold;
use super::{Deadline, Fleet, FleetError, Op};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedDecision {
    #[serde(rename = "t")]
    pub tenant: String,
    /// Empty: the request named no user.
    #[serde(rename = "u", default)]
    pub user: String,
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<FleetHold>,
}

impl Fleet {
    /// Keep a decision for `ttl` (one `SET … PX`).
    pub async fn track(
        &self,
        decision_id: &str,
        decision: &SharedDecision,
        ttl: Duration,
        deadline: Deadline,
    ) -> Result<(), FleetError> {
        let key = self.keys.decision(decision_id);
        let value = serde_json::to_string(decision)
            .map_err(|e| FleetError::Protocol(format!("encoding a decision: {e}")))?;
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
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
