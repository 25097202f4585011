//! How a restart rebuilds what the log knows: this month's spend into the budgets, recent
//! decisions into the tracker (with the attempts already reported), and the estimates of
//! decisions still in flight into budget holds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Utc};
use signalbox_features::log_schema::{DecisionSummary, OutcomeSummary};

use crate::budget::BudgetLedger;
use crate::config::Policy;
use crate::decision_log::{self, LogError};
use crate::money::Micros;
use crate::tracking::{DecisionTracker, MAX_ATTEMPT, TrackedDecision};

/// How much earlier than its oldest restored decision a restart starts reading outcome
/// segments (by their modification time), for wall-clock steps between the two writes.
const RESTORE_CLOCK_SLACK: Duration = Duration::from_secs(60);

/// What the logged outcomes say about one restored decision.
#[derive(Default)]
struct Settled {
    any_outcome: bool,
    /// Attempts reported, as `TrackedDecision::reported`.
    reported: u64,
}

/// Replay this month's spend into the budgets, recent decisions into the tracker, and the
/// estimates of decisions still in flight (no outcome yet) into budget holds, so spend, outcome
/// matching and in-flight caps survive a restart.
///
/// Everything in `log.dir` is read, whichever replica wrote it: the segments and spend summaries
/// of every replica id (and those named before replica ids existed), in start-time order
/// ([`decision_log::segments`]). Replicas sharing one log directory serve the same tenants, so a
/// replica starting there books the spend all of them logged this month, and tracks the recent
/// decisions of all of them (an outcome for a decision another replica made is matched too). A
/// replica with a directory of its own reads only its own log, as before replica ids.
pub(super) fn restore(
    policy: &Policy,
    budgets: &BudgetLedger,
    tracker: &DecisionTracker,
) -> Result<(), LogError> {
    let now = Utc::now();
    let dir = &policy.log.dir;
    let mut bad = 0usize;
    // Segments last written before this month cannot hold this month's spend.
    let month_start = now
        .date_naive()
        .with_day(1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| std::time::SystemTime::from(d.and_utc()));
    let this_month = (now.year(), now.month());
    let spend = decision_log::replay_spend(
        dir,
        month_start,
        |tenant, user, day, cost, _| {
            if (day.year(), day.month()) == this_month
                && let Some(at) = day.and_hms_opt(0, 0, 0)
            {
                budgets.settle(&budgets.payer(tenant, user), None, cost, at.and_utc());
            }
        },
        |path, line, err| {
            bad += 1;
            tracing::warn!(path = %path.display(), line, %err, "skipping unreadable outcome record");
        },
    )?;
    let ttl = Duration::from_secs(policy.server.decision_ttl_secs);
    // Both clocks read together, after the spend replay (which can take a while).
    let now = Utc::now();
    let mono_now = Instant::now();
    let sys_now = std::time::SystemTime::from(now);
    let ttl_ago = sys_now.checked_sub(ttl);
    // The tracker keeps at most `max_tracked_decisions`: read back only as far as that. Each
    // decision's age is computed once, here.
    let recent = decision_log::read_newest(
        dir,
        "decisions",
        ttl_ago,
        policy.server.max_tracked_decisions,
        |d: DecisionSummary| {
            let ts = DateTime::parse_from_rfc3339(&d.ts).ok()?;
            let age = now - ts.with_timezone(&Utc);
            // `None`: stamped in the future (clock skew), tracked as made now, never held.
            let age_std = age.to_std().ok();
            (!d.denied && age_std.is_none_or(|a| a <= ttl)).then_some((d, age_std))
        },
        |path, line, err| {
            bad += 1;
            tracing::warn!(path = %path.display(), line, %err, "skipping unreadable decision record");
        },
    )?;
    // What the outcomes since the oldest restored decision say about each one: attempts already
    // reported (so a repeated report is not booked twice, for as long as the decision accepts
    // outcomes) and whether any outcome came (a decision young enough to still hold its
    // estimate holds it again for the rest of its `in_flight_ttl_secs`, unless one did, so a
    // restart does not free budget).
    let in_flight_ttl = Duration::from_secs(policy.budgets.in_flight_ttl_secs);
    let mut settled: HashMap<&str, Settled> = recent
        .iter()
        .map(|(d, _)| (d.decision_id.as_str(), Settled::default()))
        .collect();
    if !settled.is_empty() {
        // An outcome is logged after its decision: segments last written before the oldest
        // restored decision (at most the TTL ago; newer when the tracker's capacity cut the
        // read short) hold none of theirs. Ages and this cut-off are taken from the same `now`
        // (the reads in between do not move it), with a minute of slack for clock steps.
        let since = recent
            .iter()
            .filter_map(|(_, age)| *age)
            .max()
            .map_or(ttl_ago, |oldest| {
                sys_now.checked_sub(oldest + RESTORE_CLOCK_SLACK)
            });
        decision_log::read_records::<OutcomeSummary>(
            dir,
            "outcomes",
            since,
            |o| {
                if let Some(s) = settled.get_mut(o.decision_id.as_str()) {
                    s.any_outcome = true;
                    if (1..=MAX_ATTEMPT).contains(&o.attempt) {
                        s.reported |= 1 << (o.attempt - 1);
                    }
                }
            },
            |path, line, err| {
                bad += 1;
                tracing::warn!(path = %path.display(), line, %err, "skipping unreadable outcome record");
            },
        )?;
    }
    let decisions = recent.len();
    let mut held = 0usize;
    for (d, age) in &recent {
        let created = age
            .and_then(|a| mono_now.checked_sub(a))
            .unwrap_or(mono_now);
        let payer = budgets.payer(&d.tenant_id, &d.user_id);
        let settled = settled.get(d.decision_id.as_str());
        let reservation = match (settled, age) {
            (Some(s), Some(age)) if !s.any_outcome && *age < in_flight_ttl => {
                Micros::from_usd(d.estimated_cost_usd).and_then(|amount| {
                    budgets.reserve(&payer, amount, in_flight_ttl - *age, mono_now)
                })
            }
            _ => None,
        };
        held += usize::from(reservation.is_some());
        tracker.insert(
            &d.decision_id,
            TrackedDecision {
                payer,
                created,
                reservation,
                reported: settled.map_or(0, |s| s.reported),
            },
        );
    }
    tracing::info!(
        outcomes = spend.outcomes,
        summarised_segments = spend.summarised,
        read_segments = spend.read,
        decisions,
        in_flight = held,
        skipped = bad,
        dir = %dir.display(),
        "restored spend and recent decisions from the log"
    );
    Ok(())
}
