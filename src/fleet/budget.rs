//! Budgets shared by the fleet. The check-and-hold of a decision's estimate is one script
//! (`lua/hold.lua`) over the tenant's and the user's accounts, day and month: concurrent
//! requests on any number of replicas are serialised by Redis, so the committed spend passes a
//! cap by at most one estimate, as in one process. A reported cost replaces the hold in one
//! script (`lua/settle.lua`); holds lapse by themselves (`in_flight_ttl_secs`), the day and
//! month keys after their period.
//!
//! The engine reads the [`Mirror`]: what the scripts last answered for an account, for at most
//! [`FRESH`]; the script has the last word.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use super::{Deadline, Fleet, FleetError, Op, ints};
use crate::budget::{
    BudgetLedger, BudgetVerdict, BudgetView, Figures, Payer, Reservation, day_of, month_of, verdict,
};
use crate::config::{BudgetCaps, Policy};
use crate::money::Micros;

/// How long an account's figures from Redis are used by the engine's check before it decides.
pub const FRESH: Duration = Duration::from_secs(1);
/// Accounts the mirror remembers; past that it starts again (it is a cache).
const MIRROR_ACCOUNTS: usize = 100_000;
/// Decisions made during one outage that are written to Redis when it is back.
pub const OUTAGE_DECISIONS: usize = 100_000;
/// Decisions written per pipelined round trip when Redis is back.
const UPLOAD_BATCH: usize = 256;
/// Day keys outlive their day, month keys their month (time zones, clock steps, late outcomes).
const DAY_KEY_TTL_SECS: u64 = 3 * 86_400;
const MONTH_KEY_TTL_SECS: u64 = 40 * 86_400;

fn day_month(at: DateTime<Utc>) -> (String, String) {
    (
        at.format("%Y%m%d").to_string(),
        at.format("%Y%m").to_string(),
    )
}

fn cap_arg(cap: Option<Micros>) -> i64 {
    cap.map_or(-1, |c| i64::try_from(c.0).unwrap_or(i64::MAX))
}

/// How long a decision's outcome marks (and the hold noted there) are kept: a minute longer
/// than the decision.
fn marks_ttl_ms(decision_ttl_secs: u64) -> i64 {
    i64::try_from((decision_ttl_secs + 60) * 1000).unwrap_or(i64::MAX)
}

fn micros(v: i64) -> Micros {
    Micros(u64::try_from(v).unwrap_or(0))
}

/// An estimate held in Redis for a decision (noted in its outcome marks): released by its
/// first outcome, or lapsing at `expires` (Redis time, seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetHold {
    pub amount: u64,
    pub expires: u64,
}

/// Which caps [`Fleet::hold`] checks before it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldCheck {
    /// Every cap: the decision was made within them.
    AllCaps,
    /// Only caps that deny: the decision is already a downgrade under a reached cap.
    DenyCaps,
}

/// What [`Fleet::hold`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldResult {
    /// Held (`None`: a zero estimate, nothing to hold).
    Held(Option<FleetHold>),
    /// A cap was reached meanwhile (the mirror now says which): nothing held.
    CapReached,
}

#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    /// The UTC day and month the figures are of ([`day_of`], [`month_of`]).
    day: i32,
    month: i32,
    figures: Figures,
}

#[derive(Debug, Default)]
struct Accounts {
    /// By tenant, then user (empty for the tenant's own account): looked up without copying
    /// the names.
    by_tenant: HashMap<Box<str>, HashMap<Box<str>, Seen>>,
    len: usize,
}

/// What Redis last said of each account's spend and holds.
#[derive(Debug, Default)]
pub struct Mirror {
    accounts: Mutex<Accounts>,
}

impl Mirror {
    fn put(&self, tenant: &str, user: &str, at: DateTime<Utc>, figures: Figures) {
        let mut map = self.accounts.lock();
        if map.len >= MIRROR_ACCOUNTS {
            *map = Accounts::default();
        }
        let seen = Seen {
            at: Instant::now(),
            day: day_of(at),
            month: month_of(at),
            figures,
        };
        let users = map.by_tenant.entry(tenant.into()).or_default();
        if users.insert(user.into(), seen).is_none() {
            map.len += 1;
        }
    }

    /// The account's figures for `at`'s day and month, if seen within `fresh` (any age: `None`).
    pub fn figures(
        &self,
        tenant: &str,
        user: &str,
        at: DateTime<Utc>,
        fresh: Option<Duration>,
    ) -> Option<Figures> {
        let map = self.accounts.lock();
        let seen = map.by_tenant.get(tenant)?.get(user)?;
        if fresh.is_some_and(|f| seen.at.elapsed() > f) {
            return None;
        }
        let mut f = seen.figures;
        if seen.month != month_of(at) {
            return Some(Figures::default());
        }
        if seen.day != day_of(at) {
            f.day = Micros::ZERO;
        }
        Some(f)
    }

    /// Mirror a script's figures: (day, month, in flight) of the tenant's account, then of the
    /// user's when the payer names one.
    fn apply(&self, tenant: &str, user: &str, at: DateTime<Utc>, v: &[i64]) {
        let accounts: &[&str] = if user.is_empty() { &[""] } else { &["", user] };
        for (i, account_user) in accounts.iter().enumerate() {
            if let Some([day, month, flight]) = v.get(i * 3..i * 3 + 3) {
                self.put(
                    tenant,
                    account_user,
                    at,
                    Figures {
                        day: micros(*day),
                        month: micros(*month),
                        in_flight: micros(*flight),
                    },
                );
            }
        }
    }
}

/// The engine's budget check while Redis is up: the mirror's fresh figures (none: within, and
/// the hold script decides).
pub struct MirrorView<'a>(pub &'a Mirror);

impl BudgetView for MirrorView<'_> {
    fn check(
        &self,
        policy: &Policy,
        tenant: &str,
        user: &str,
        now: DateTime<Utc>,
    ) -> BudgetVerdict {
        verdict(policy, tenant, user, |account_user, caps| {
            let f = self
                .0
                .figures(tenant, account_user, now, Some(FRESH))
                .unwrap_or_default();
            (caps.clone(), f)
        })
    }
}

/// Spend and holds while Redis is unreachable (`on_unavailable = "local"`), and the spend still
/// to be added to Redis.
pub struct Outage {
    ledger: ArcSwap<BudgetLedger>,
    /// Decisions made meanwhile (id, payer, when it expires), written to Redis when it is back
    /// so their outcomes can go to any replica.
    pub(super) decisions: Mutex<std::collections::VecDeque<(String, String, String, Instant)>>,
    /// Cost booked per account (tenant, user: empty for the tenant's own), day and month, not
    /// yet in Redis.
    pending: Mutex<HashMap<(String, String, String, String), Micros>>,
}

impl Default for Outage {
    fn default() -> Outage {
        Outage {
            ledger: ArcSwap::from_pointee(BudgetLedger::new()),
            decisions: Mutex::new(std::collections::VecDeque::new()),
            pending: Mutex::new(HashMap::new()),
        }
    }
}

impl Outage {
    pub fn ledger(&self) -> Arc<BudgetLedger> {
        self.ledger.load_full()
    }

    /// Spend or decisions of an outage not yet written to Redis.
    pub fn has_leftovers(&self) -> bool {
        !self.pending.lock().is_empty() || !self.decisions.lock().is_empty()
    }

    pub fn pending_total(&self) -> Micros {
        // Each cost is on the tenant's own account (and on its user's too).
        self.pending
            .lock()
            .iter()
            .filter(|((_, user, _, _), _)| user.is_empty())
            .fold(Micros::ZERO, |a, (_, b)| a + *b)
    }

    /// Remember a decision made during the outage, to be written to Redis when it is back (at
    /// most [`OUTAGE_DECISIONS`]; past that, the oldest are known to this replica only).
    pub fn track(&self, decision_id: &str, payer: &Payer, ttl: Duration) {
        let mut d = self.decisions.lock();
        if d.len() >= OUTAGE_DECISIONS {
            d.pop_front();
        }
        d.push_back((
            decision_id.to_string(),
            payer.tenant_id().to_string(),
            payer.user_id().to_string(),
            Instant::now() + ttl,
        ));
    }

    /// Book an outcome's cost locally, to be added to Redis when it is back.
    pub fn settle(
        &self,
        payer: &Payer,
        reservation: Option<Reservation>,
        cost: Micros,
        at: DateTime<Utc>,
    ) {
        self.ledger().settle(payer, reservation, cost, at);
        if cost > Micros::ZERO {
            let (day, month) = day_month(at);
            let mut pending = self.pending.lock();
            let users = std::iter::once("").chain(Some(payer.user_id()).filter(|u| !u.is_empty()));
            for user in users {
                *pending
                    .entry((
                        payer.tenant_id().to_string(),
                        user.to_string(),
                        day.clone(),
                        month.clone(),
                    ))
                    .or_default() += cost;
            }
        }
    }
}

/// The engine's budget check, and the holds, while Redis is unreachable: this replica's share
/// of what was left of each cap when Redis was last seen, `(cap - known spend) / replicas_hint`,
/// against what it committed since.
pub struct OutageView<'a> {
    pub fleet: &'a Fleet,
    pub ledger: &'a BudgetLedger,
}

impl OutageView<'_> {
    pub fn share(
        &self,
        tenant: &str,
        account_user: &str,
        caps: &BudgetCaps,
        at: DateTime<Utc>,
    ) -> BudgetCaps {
        let known = self
            .fleet
            .mirror
            .figures(tenant, account_user, at, None)
            .unwrap_or_default();
        let hint = u64::from(self.fleet.policy.replicas_hint.max(1));
        let part = |cap: Option<Micros>, spent: Micros| {
            cap.map(|c| Micros(c.saturating_sub(spent + known.in_flight).0 / hint))
        };
        BudgetCaps {
            daily: part(caps.daily, known.day),
            monthly: part(caps.monthly, known.month),
            on_exceeded: caps.on_exceeded,
        }
    }
}

impl BudgetView for OutageView<'_> {
    fn check(
        &self,
        policy: &Policy,
        tenant: &str,
        user: &str,
        now: DateTime<Utc>,
    ) -> BudgetVerdict {
        self.ledger
            .check_with(policy, tenant, user, now, &|t, u, caps| {
                self.share(t, u, caps, now)
            })
    }
}

impl Fleet {
    /// Whether a payer has caps, so its decisions hold their estimate in Redis.
    pub fn needs_hold(policy: &Policy, tenant: &str, user: &str) -> bool {
        policy.budgets.tenant_caps(tenant).is_some()
            || policy.budgets.user_caps(tenant, user).is_some()
    }

    fn account_keys(&self, tenant: &str, user: &str, at: DateTime<Utc>) -> Vec<String> {
        let (day, month) = day_month(at);
        let mut keys: Vec<String> = self.keys.account(tenant, "", &day, &month).into();
        if !user.is_empty() {
            keys.extend(self.keys.account(tenant, user, &day, &month));
        }
        keys
    }

    /// Hold `amount` on the payer's accounts for `in_flight_ttl_secs`; with `check`, only while
    /// every cap of the policy is still clear. The hold is noted in the decision's outcome
    /// marks, where its first outcome releases it. With `track`, the decision is stored in the
    /// same round trip (a pipeline): its payer does not depend on the hold.
    #[allow(clippy::too_many_arguments)]
    pub async fn hold(
        &self,
        policy: &Policy,
        (tenant, user): (&str, &str),
        decision_id: &str,
        amount: Micros,
        check: HoldCheck,
        track: Option<Duration>,
        deadline: Deadline,
    ) -> Result<HoldResult, FleetError> {
        let at = Utc::now();
        let ttl = policy.budgets.in_flight_ttl_secs;
        let n = if user.is_empty() { 1 } else { 2 };
        let mut keys = self.account_keys(tenant, user, at);
        keys.push(self.keys.marks(tenant, decision_id));
        let mut args: Vec<i64> = vec![
            n,
            i64::try_from(amount.0).unwrap_or(i64::MAX),
            i64::try_from(ttl).unwrap_or(i64::MAX),
            match check {
                HoldCheck::AllCaps => 1,
                HoldCheck::DenyCaps => 2,
            },
            i64::try_from((ttl + 60) * 1000).unwrap_or(i64::MAX),
        ];
        let tenant_caps = policy.budgets.tenant_caps(tenant);
        let user_caps = policy.budgets.user_caps(tenant, user);
        for caps in [tenant_caps, user_caps].iter().take(n as usize) {
            args.push(cap_arg(caps.and_then(|c| c.daily)));
            args.push(cap_arg(caps.and_then(|c| c.monthly)));
            args.push(i64::from(caps.is_some_and(|c| {
                c.on_exceeded == crate::config::OnExceeded::Deny
            })));
        }
        args.push(marks_ttl_ms(policy.server.decision_ttl_secs));
        let stored = track
            .map(|ttl| self.decision_entry(decision_id, tenant, user, ttl))
            .transpose()?;
        let script = &self.scripts.hold;
        let pipeline = || {
            let mut pipe = redis::pipe();
            pipe.cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(keys.len())
                .arg(&keys)
                .arg(&args);
            if let Some((key, value, ms)) = &stored {
                pipe.cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(*ms)
                    .ignore();
            }
            pipe
        };
        let reply = self
            .run(Op::Hold, deadline, |mut c| async move {
                let first = pipeline().query_async::<(redis::Value,)>(&mut c).await;
                match first {
                    // Not yet loaded on this server (a restart, a failover): load, then again.
                    Err(e)
                        if e.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                    {
                        script.load_async(&mut c).await?;
                        pipeline().query_async::<(redis::Value,)>(&mut c).await
                    }
                    other => other,
                }
            })
            .await?
            .0;
        let v = ints(reply)?;
        let [held, expires, figures @ ..] = v.as_slice() else {
            return Err(FleetError::Protocol(format!("hold answered {v:?}")));
        };
        self.mirror.apply(tenant, user, at, figures);
        if *held == 1 {
            Ok(HoldResult::Held((amount > Micros::ZERO).then(|| {
                FleetHold {
                    amount: amount.0,
                    expires: u64::try_from(*expires).unwrap_or(0),
                }
            })))
        } else {
            Ok(HoldResult::CapReached)
        }
    }

    /// Book one outcome: `Ok(true)` when this numbered attempt was booked before (nothing done).
    #[allow(clippy::too_many_arguments)]
    pub async fn settle(
        &self,
        policy: &Policy,
        tenant: &str,
        user: &str,
        decision_id: &str,
        attempt: u32,
        cost: Micros,
        deadline: Deadline,
    ) -> Result<bool, FleetError> {
        let at = Utc::now();
        let n = if user.is_empty() { 1 } else { 2 };
        let mut keys = vec![self.keys.marks(tenant, decision_id)];
        keys.extend(self.account_keys(tenant, user, at));
        let marks_ttl_ms = marks_ttl_ms(policy.server.decision_ttl_secs);
        let script = &self.scripts.settle;
        let reply = self
            .run(Op::Settle, deadline, |mut c| async move {
                let mut inv = script.prepare_invoke();
                for k in &keys {
                    inv.key(k);
                }
                inv.arg(n)
                    .arg(attempt)
                    .arg(cost.0)
                    .arg(marks_ttl_ms)
                    .arg(DAY_KEY_TTL_SECS)
                    .arg(MONTH_KEY_TTL_SECS);
                inv.invoke_async::<redis::Value>(&mut c).await
            })
            .await?;
        let v = ints(reply)?;
        match v.as_slice() {
            [1] => Ok(true),
            [0, figures @ ..] => {
                self.mirror.apply(tenant, user, at, figures);
                Ok(false)
            }
            other => Err(FleetError::Protocol(format!("settle answered {other:?}"))),
        }
    }

    /// Add `cost` booked on `day`/`month` to one account (0: just read it), and mirror it.
    async fn book(
        &self,
        tenant: &str,
        user: &str,
        (day, month): (&str, &str),
        cost: Micros,
        op: Op,
    ) -> Result<Figures, FleetError> {
        let keys = self.keys.account(tenant, user, day, month);
        let script = &self.scripts.book;
        let deadline = self.deadline(None);
        let call = |mut c: redis::aio::ConnectionManager| async move {
            let mut inv = script.prepare_invoke();
            for k in &keys {
                inv.key(k);
            }
            inv.arg(cost.0)
                .arg(DAY_KEY_TTL_SECS)
                .arg(MONTH_KEY_TTL_SECS);
            inv.invoke_async::<redis::Value>(&mut c).await
        };
        // Reconciling runs before the replica is marked up again.
        let reply = if op == Op::Reconcile {
            self.exec(op, deadline, call).await?
        } else {
            self.run(op, deadline, call).await?
        };
        match ints(reply)?.as_slice() {
            [d, m, f] => Ok(Figures {
                day: micros(*d),
                month: micros(*m),
                in_flight: micros(*f),
            }),
            other => Err(FleetError::Protocol(format!("book answered {other:?}"))),
        }
    }

    /// Add the spend booked while Redis was unreachable to it (tenant's and user's accounts),
    /// then start a new local ledger. What fails stays pending for the next try.
    pub(super) async fn reconcile(&self) -> Result<Micros, FleetError> {
        let pending: Vec<_> = self.outage.pending.lock().drain().collect();
        let mut booked = Micros::ZERO;
        let mut left = Vec::new();
        let mut failure = None;
        for ((tenant, user, day, month), cost) in pending {
            if failure.is_none() {
                match self
                    .book(&tenant, &user, (&day, &month), cost, Op::Reconcile)
                    .await
                {
                    Ok(f) => {
                        // The next outage's shares start from these figures.
                        if day == day_month(Utc::now()).0 {
                            self.mirror.put(&tenant, &user, Utc::now(), f);
                        }
                        if user.is_empty() {
                            booked += cost;
                        }
                    }
                    Err(e) => failure = Some(e),
                }
                if failure.is_none() {
                    continue;
                }
            }
            left.push(((tenant, user, day, month), cost));
        }
        if let Some(e) = failure {
            let mut pending = self.outage.pending.lock();
            for (k, v) in left {
                *pending.entry(k).or_default() += v;
            }
            return Err(e);
        }
        Ok(booked)
    }

    /// Start the next outage's ledger afresh (Redis is up and has this one's spend).
    pub(super) fn reset_outage_ledger(&self) {
        self.outage.ledger.store(Arc::new(BudgetLedger::new()));
    }

    /// Write the decisions made during the outage to Redis, with the attempts already reported
    /// for them here (`reported`: the local tracker's bits), so their outcomes may go to any
    /// replica and a repeat is still a duplicate. What fails stays for the next try.
    pub(super) async fn upload_outage_decisions(
        &self,
        decision_ttl_secs: u64,
        reported: &(dyn Fn(&str) -> Option<u64> + Send + Sync),
    ) -> Result<usize, FleetError> {
        let all: Vec<_> = std::mem::take(&mut *self.outage.decisions.lock()).into();
        let now = Instant::now();
        let marks_ttl_ms = marks_ttl_ms(decision_ttl_secs);
        let mut written = 0;
        let mut batches = all.chunks(UPLOAD_BATCH);
        while let Some(batch) = batches.next() {
            let mut pipe = redis::pipe();
            for (id, tenant, user, expires) in batch {
                let left = expires.saturating_duration_since(now);
                let Some(bits) = reported(id) else { continue };
                if left.is_zero() {
                    continue;
                }
                let (key, value, ms) = self.decision_entry(id, tenant, user, left)?;
                pipe.cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(ms)
                    .ignore();
                let marks = self.keys.marks(tenant, id);
                for attempt in (1..=64u32).filter(|a| bits & (1u64 << (a - 1)) != 0) {
                    pipe.cmd("HSET")
                        .arg(&marks)
                        .arg(format!("a{attempt}"))
                        .arg(1)
                        .ignore();
                }
                if bits != 0 {
                    pipe.cmd("PEXPIRE").arg(&marks).arg(marks_ttl_ms).ignore();
                }
                written += 1;
            }
            let deadline = self.deadline(None);
            let sent = self
                .exec(Op::Reconcile, deadline, |mut c| async move {
                    pipe.query_async::<()>(&mut c).await
                })
                .await;
            if let Err(e) = sent {
                let mut queue = self.outage.decisions.lock();
                for d in batch.iter().chain(batches.flatten()).rev() {
                    queue.push_front(d.clone());
                }
                return Err(e);
            }
        }
        Ok(written)
    }

    /// Read the figures of every tenant the policy caps by name (for the metrics, and so the
    /// engine's check starts fresh).
    pub async fn refresh_budgets(&self, policy: &Policy) -> Result<(), FleetError> {
        let at = Utc::now();
        let (day, month) = day_month(at);
        for tenant in policy.budgets.tenants.keys() {
            let f = self
                .book(tenant, "", (&day, &month), Micros::ZERO, Op::BudgetRefresh)
                .await?;
            self.mirror.put(tenant, "", at, f);
        }
        Ok(())
    }
}
