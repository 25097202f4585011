//! Spend summaries: each closed outcome segment gets `<segment>.spend.json` (cost per tenant,
//! user and UTC day), so a restart adds summaries instead of re-reading every outcome of the
//! month; [`replay_spend`] reads summaries where valid and records elsewhere.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::read::{read_segment, segments_since};
use super::{LogError, OutcomeRecord, io_err};
use crate::money::Micros;

/// The spend an outcome books, as every reader of the log computes it: its UTC day and its cost.
/// `None` for a record whose timestamp or cost does not parse (it books nothing).
pub fn outcome_spend(o: &OutcomeRecord) -> Option<(chrono::NaiveDate, Micros)> {
    let ts = chrono::DateTime::parse_from_rfc3339(&o.ts).ok()?;
    let cost = Micros::from_usd(o.cost_usd)?;
    Some((ts.with_timezone(&chrono::Utc).date_naive(), cost))
}

/// Spend summary of one closed outcome segment (`<segment>.spend.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SegmentSpend {
    /// Length of the segment file the totals cover; a summary whose segment has another length
    /// is ignored and the segment is read instead.
    pub bytes: u64,
    /// Outcome records in the segment that booked spend.
    pub outcomes: u64,
    pub spend: Vec<DaySpend>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DaySpend {
    pub tenant_id: String,
    pub user_id: String,
    pub day: chrono::NaiveDate,
    pub cost_micros: u64,
    pub outcomes: u64,
}

/// Cost and outcome count per UTC day.
pub(super) type DayTotals = BTreeMap<chrono::NaiveDate, (Micros, u64)>;

/// Running totals of the open outcome segment: tenant -> user -> day -> (cost, outcomes).
#[derive(Default)]
pub(super) struct SpendTotals {
    by_tenant: HashMap<String, HashMap<String, DayTotals>>,
    outcomes: u64,
}

impl SpendTotals {
    pub(super) fn add(&mut self, o: &OutcomeRecord) {
        let Some((day, cost)) = outcome_spend(o) else {
            return;
        };
        let users = match self.by_tenant.get_mut(&o.tenant_id) {
            Some(u) => u,
            None => self.by_tenant.entry(o.tenant_id.clone()).or_default(),
        };
        let days = match users.get_mut(&o.user_id) {
            Some(d) => d,
            None => users.entry(o.user_id.clone()).or_default(),
        };
        let slot = days.entry(day).or_insert((Micros::ZERO, 0));
        slot.0 += cost;
        slot.1 += 1;
        self.outcomes += 1;
    }

    pub(super) fn take(&mut self, bytes: u64) -> SegmentSpend {
        let totals = std::mem::take(self);
        let mut spend = Vec::new();
        for (tenant_id, users) in totals.by_tenant {
            for (user_id, days) in users {
                for (day, (cost, outcomes)) in days {
                    spend.push(DaySpend {
                        tenant_id: tenant_id.clone(),
                        user_id: user_id.clone(),
                        day,
                        cost_micros: cost.0,
                        outcomes,
                    });
                }
            }
        }
        // Oldest day first, so replaying summaries in segment order books days in order.
        spend.sort_by(|a, b| {
            (a.day, &a.tenant_id, &a.user_id).cmp(&(b.day, &b.tenant_id, &b.user_id))
        });
        SegmentSpend {
            bytes,
            outcomes: totals.outcomes,
            spend,
        }
    }
}

/// Where the spend summary of `segment` lives.
pub fn spend_summary_path(segment: &Path) -> PathBuf {
    segment.with_extension("spend.json")
}

/// Write `summary` beside `segment` (temporary file, fsync, rename).
pub(super) fn write_spend_summary(segment: &Path, summary: &SegmentSpend) -> Result<(), LogError> {
    let path = spend_summary_path(segment);
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec(summary).map_err(|e| LogError::Io {
        path: path.clone(),
        source: e.into(),
    })?;
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(&body).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    Ok(())
}

/// The summary of `segment`, if it has one that covers the whole file.
pub(super) fn read_spend_summary(segment: &Path, segment_len: u64) -> Option<SegmentSpend> {
    let path = spend_summary_path(segment);
    let body = std::fs::read(&path).ok()?;
    match serde_json::from_slice::<SegmentSpend>(&body) {
        Ok(s) if s.bytes == segment_len => Some(s),
        Ok(s) => {
            tracing::warn!(path = %path.display(), summary_bytes = s.bytes, segment_bytes = segment_len, "spend summary does not match its segment; reading the segment");
            None
        }
        Err(err) => {
            tracing::warn!(path = %path.display(), %err, "unreadable spend summary; reading the segment");
            None
        }
    }
}

/// What [`replay_spend`] read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpendReplay {
    pub outcomes: u64,
    /// Segments whose summary was used.
    pub summarised: u64,
    /// Segments read record by record.
    pub read: u64,
}

/// Every outcome's spend, oldest segment first, from outcome segments last modified at or after
/// `modified_since`: `on_spend(tenant, user, day, cost, outcomes)` once per summary entry, or once
/// per record for a segment without a valid summary. Unparsable lines go to `on_bad`.
pub fn replay_spend(
    dir: &Path,
    modified_since: Option<std::time::SystemTime>,
    mut on_spend: impl FnMut(&str, &str, chrono::NaiveDate, Micros, u64),
    mut on_bad: impl FnMut(&Path, usize, String),
) -> Result<SpendReplay, LogError> {
    let mut stats = SpendReplay::default();
    for (path, meta) in segments_since(dir, "outcomes", modified_since)? {
        if let Some(summary) = read_spend_summary(&path, meta.len()) {
            for d in &summary.spend {
                on_spend(
                    &d.tenant_id,
                    &d.user_id,
                    d.day,
                    Micros(d.cost_micros),
                    d.outcomes,
                );
            }
            stats.outcomes += summary.outcomes;
            stats.summarised += 1;
            continue;
        }
        read_segment::<OutcomeRecord>(
            &path,
            |o| {
                if let Some((day, cost)) = outcome_spend(&o) {
                    on_spend(&o.tenant_id, &o.user_id, day, cost, 1);
                    stats.outcomes += 1;
                }
            },
            &mut on_bad,
        )?;
        stats.read += 1;
    }
    Ok(stats)
}
