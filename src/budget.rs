//! Spend per tenant and per user, per UTC day and month, from reported costs plus the estimated
//! cost of decisions still in flight. A cap is exceeded when committed spend is at or over it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Utc};
use parking_lot::{Mutex, RwLock};

use crate::config::{BudgetCaps, OnExceeded, Policy};
use crate::money::Micros;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetVerdict {
    Within,
    Exceeded {
        policy_id: String,
        message: String,
        action: OnExceeded,
    },
}

#[derive(Debug, Default, Clone, Copy)]
struct Spend {
    day: i32,
    day_total: Micros,
    month: i32,
    month_total: Micros,
}

pub(crate) fn day_of(t: DateTime<Utc>) -> i32 {
    t.date_naive().num_days_from_ce()
}

pub(crate) fn month_of(t: DateTime<Utc>) -> i32 {
    t.year() * 12 + t.month0() as i32
}

impl Spend {
    fn add(&mut self, amount: Micros, at: DateTime<Utc>) {
        let (day, month) = (day_of(at), month_of(at));
        if day > self.day {
            self.day = day;
            self.day_total = Micros::ZERO;
        }
        if month > self.month {
            self.month = month;
            self.month_total = Micros::ZERO;
        }
        if day == self.day {
            self.day_total += amount;
        }
        if month == self.month {
            self.month_total += amount;
        }
    }

    fn today(&self, now: DateTime<Utc>) -> Micros {
        if self.day == day_of(now) {
            self.day_total
        } else {
            Micros::ZERO
        }
    }

    fn this_month(&self, now: DateTime<Utc>) -> Micros {
        if self.month == month_of(now) {
            self.month_total
        } else {
            Micros::ZERO
        }
    }
}

/// Spend and in-flight estimates of one account (a tenant, or one user of a tenant).
#[derive(Debug, Default)]
struct AccountState {
    spend: Spend,
    /// Estimates still in flight, summed per expiry second (ascending): memory grows with the
    /// in-flight TTL in seconds, not with the number of decisions.
    in_flight: VecDeque<(u64, Micros)>,
    in_flight_total: Micros,
}

impl AccountState {
    fn expire(&mut self, now_sec: u64) {
        while let Some(&(expires, amount)) = self.in_flight.front() {
            if expires > now_sec {
                break;
            }
            self.in_flight.pop_front();
            self.in_flight_total = self.in_flight_total.saturating_sub(amount);
        }
    }

    fn hold(&mut self, expires: u64, amount: Micros) {
        match self.in_flight.back_mut() {
            Some((at, total)) if *at == expires => *total += amount,
            Some((at, _)) if *at > expires => {
                // Only after a reload shortened the TTL: keep the ring sorted.
                match self.in_flight.binary_search_by_key(&expires, |&(e, _)| e) {
                    Ok(i) => self.in_flight[i].1 += amount,
                    Err(i) => self.in_flight.insert(i, (expires, amount)),
                }
            }
            _ => self.in_flight.push_back((expires, amount)),
        }
        self.in_flight_total += amount;
    }

    fn release(&mut self, expires: u64, amount: Micros) {
        if let Ok(i) = self.in_flight.binary_search_by_key(&expires, |&(e, _)| e) {
            let slot = &mut self.in_flight[i].1;
            let released = amount.min(*slot);
            *slot = slot.saturating_sub(released);
            self.in_flight_total = self.in_flight_total.saturating_sub(released);
        }
        // Not found: that second has expired, the estimate no longer counts.
    }
}

#[derive(Debug)]
struct Account {
    name: Box<str>,
    state: Mutex<AccountState>,
}

impl Account {
    fn new(name: &str) -> Arc<Account> {
        Arc::new(Account {
            name: name.into(),
            state: Mutex::new(AccountState::default()),
        })
    }
}

#[derive(Debug)]
struct TenantAccounts {
    tenant: Arc<Account>,
    users: HashMap<Box<str>, Arc<Account>>,
}

/// Who pays for a decision: the tenant's account and, when the request names a user, that
/// user's account. Interned by the ledger, so holding one (as every tracked decision does)
/// costs two pointers and no allocation.
#[derive(Debug, Clone)]
pub struct Payer {
    tenant: Arc<Account>,
    user: Option<Arc<Account>>,
}

impl Payer {
    pub fn tenant_id(&self) -> &str {
        &self.tenant.name
    }

    /// Empty when the request named no user.
    pub fn user_id(&self) -> &str {
        self.user.as_ref().map_or("", |u| &u.name)
    }

    fn accounts(&self) -> impl Iterator<Item = &Arc<Account>> {
        std::iter::once(&self.tenant).chain(self.user.as_ref())
    }
}

impl PartialEq for Payer {
    fn eq(&self, other: &Payer) -> bool {
        Arc::ptr_eq(&self.tenant, &other.tenant)
            && match (&self.user, &other.user) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

impl Eq for Payer {}

/// The estimated cost a decision holds until its outcome arrives or the hold expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    amount: Micros,
    /// Ledger second at which the hold lapses.
    expires: u64,
}

/// Spend and in-flight estimates per account. Accounts are few (one per tenant and per user);
/// per-decision state (the [`Reservation`]) lives with the tracked decision, so the ledger's
/// memory does not grow with the request rate.
#[derive(Debug)]
pub struct BudgetLedger {
    tenants: RwLock<HashMap<Box<str>, TenantAccounts>>,
    epoch: Instant,
}

impl Default for BudgetLedger {
    fn default() -> Self {
        BudgetLedger {
            tenants: RwLock::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }
}

impl BudgetLedger {
    pub fn new() -> BudgetLedger {
        BudgetLedger::default()
    }

    /// Ledger second of `at`, rounded up (a hold lasts at least its TTL).
    fn second(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.epoch);
        d.as_secs() + u64::from(d.subsec_nanos() > 0)
    }

    /// The interned payer of (tenant, user), created on first use.
    pub fn payer(&self, tenant: &str, user: &str) -> Payer {
        if let Some(p) = self.find(tenant, user) {
            return p;
        }
        let mut tenants = self.tenants.write();
        let entry = tenants
            .entry(tenant.into())
            .or_insert_with(|| TenantAccounts {
                tenant: Account::new(tenant),
                users: HashMap::new(),
            });
        let user = (!user.is_empty()).then(|| {
            entry
                .users
                .entry(user.into())
                .or_insert_with(|| Account::new(user))
                .clone()
        });
        Payer {
            tenant: entry.tenant.clone(),
            user,
        }
    }

    /// The payer of (tenant, user) if both accounts exist already.
    fn find(&self, tenant: &str, user: &str) -> Option<Payer> {
        let tenants = self.tenants.read();
        let entry = tenants.get(tenant)?;
        let user = if user.is_empty() {
            None
        } else {
            Some(entry.users.get(user)?.clone())
        };
        Some(Payer {
            tenant: entry.tenant.clone(),
            user,
        })
    }

    /// The existing account of (tenant, user): the tenant's own when `user` is empty.
    fn account(&self, tenant: &str, user: &str) -> Option<Arc<Account>> {
        let tenants = self.tenants.read();
        let entry = tenants.get(tenant)?;
        if user.is_empty() {
            Some(entry.tenant.clone())
        } else {
            entry.users.get(user).cloned()
        }
    }

    /// The current ledger second and the second a hold made now for `ttl` lapses (at least
    /// the next one).
    fn hold_span(&self, now: Instant, ttl: Duration) -> (u64, u64) {
        let now_sec = self.second(now);
        (now_sec, self.second(now + ttl).max(now_sec + 1))
    }

    /// Is the tenant or the user at or over a cap? The strictest verdict wins (deny over downgrade).
    pub fn check(
        &self,
        policy: &Policy,
        tenant: &str,
        user: &str,
        now: DateTime<Utc>,
    ) -> BudgetVerdict {
        self.check_with(policy, tenant, user, now, &|_, _, caps| caps.clone())
    }

    /// [`Self::check`] against the caps `share` makes of each account's configured caps (the
    /// account's user, empty for the tenant's own, and its caps): while Redis is unreachable, a
    /// replica's share of what is left of the fleet's caps.
    pub fn check_with(
        &self,
        policy: &Policy,
        tenant: &str,
        user: &str,
        now: DateTime<Utc>,
        share: &CapShare<'_>,
    ) -> BudgetVerdict {
        let now_sec = self.second(Instant::now());
        verdict(policy, tenant, user, |account_user, caps| {
            let caps = share(tenant, account_user, caps);
            let figures = self.account(tenant, account_user).map(|a| {
                let mut st = a.state.lock();
                st.expire(now_sec);
                Figures::of(&st, now)
            });
            (caps, figures.unwrap_or_default())
        })
    }

    /// Hold the estimated cost of a decision for `ttl` (at least; rounded up to the second).
    /// Keep the returned reservation with the decision and pass it to [`BudgetLedger::settle`].
    pub fn reserve(
        &self,
        payer: &Payer,
        amount: Micros,
        ttl: Duration,
        now: Instant,
    ) -> Option<Reservation> {
        if amount == Micros::ZERO {
            return None;
        }
        let (now_sec, expires) = self.hold_span(now, ttl);
        for account in payer.accounts() {
            let mut st = account.state.lock();
            st.expire(now_sec);
            st.hold(expires, amount);
        }
        Some(Reservation { amount, expires })
    }

    /// [`BudgetLedger::reserve`], but only while the payer is still within every cap of
    /// `policy`: checked and held under the accounts' locks, so concurrent requests that all
    /// passed [`BudgetLedger::check`] cannot all commit (at most one request per account crosses
    /// a cap, as when they arrive one by one). `Err` with the verdict when a cap was reached in
    /// the meantime; nothing is held then.
    pub fn reserve_if_within(
        &self,
        policy: &Policy,
        payer: &Payer,
        amount: Micros,
        ttl: Duration,
        now: Instant,
        at: DateTime<Utc>,
    ) -> Result<Option<Reservation>, BudgetVerdict> {
        self.reserve_if_within_share(policy, payer, amount, ttl, (now, at), &|_, _, caps| {
            caps.clone()
        })
    }

    /// [`Self::reserve_if_within`] against the caps `share` makes of the configured ones (see
    /// [`Self::check_with`]).
    pub fn reserve_if_within_share(
        &self,
        policy: &Policy,
        payer: &Payer,
        amount: Micros,
        ttl: Duration,
        (now, at): (Instant, DateTime<Utc>),
        share: &CapShare<'_>,
    ) -> Result<Option<Reservation>, BudgetVerdict> {
        let budgets = &policy.budgets;
        let tenant = payer.tenant_id();
        let user = payer.user_id();
        let (now_sec, expires) = self.hold_span(now, ttl);
        // Lock order: the tenant's account, then the user's (the only place holding two).
        let mut tenant_state = payer.tenant.state.lock();
        let mut user_state = payer.user.as_ref().map(|u| u.state.lock());
        tenant_state.expire(now_sec);
        if let Some(st) = user_state.as_deref_mut() {
            st.expire(now_sec);
        }
        let mut verdicts = Vec::new();
        for (scope, caps, st) in [
            (
                "tenant",
                budgets.tenant_caps(tenant),
                Some(&mut *tenant_state),
            ),
            (
                "user",
                budgets.user_caps(tenant, user),
                user_state.as_deref_mut(),
            ),
        ] {
            let (Some(caps), Some(st)) = (caps, st) else {
                continue;
            };
            let account_user = if scope == "tenant" { "" } else { user };
            let caps = share(tenant, account_user, caps);
            verdicts.extend(account_verdict(&caps, scope, tenant, user, Some(st), at));
        }
        if let Some(v) = strictest(verdicts) {
            return Err(v);
        }
        if amount == Micros::ZERO {
            return Ok(None);
        }
        tenant_state.hold(expires, amount);
        if let Some(st) = user_state.as_deref_mut() {
            st.hold(expires, amount);
        }
        Ok(Some(Reservation { amount, expires }))
    }

    /// Book a reported cost: releases the decision's reservation (if it is still held) and adds
    /// the actual cost.
    pub fn settle(
        &self,
        payer: &Payer,
        reservation: Option<Reservation>,
        cost: Micros,
        at: DateTime<Utc>,
    ) {
        let now_sec = self.second(Instant::now());
        for account in payer.accounts() {
            let mut st = account.state.lock();
            st.expire(now_sec);
            if let Some(r) = reservation {
                st.release(r.expires, r.amount);
            }
            st.spend.add(cost, at);
        }
    }

    /// Drop expired holds everywhere (called periodically; every access also expires its own).
    pub fn sweep(&self, now: Instant) {
        let now_sec = self.second(now);
        let tenants = self.tenants.read();
        for entry in tenants.values() {
            for account in std::iter::once(&entry.tenant).chain(entry.users.values()) {
                account.state.lock().expire(now_sec);
            }
        }
    }

    /// Spent today and this month (excluding in-flight), for tests and status.
    pub fn spent(&self, tenant: &str, user: &str, now: DateTime<Utc>) -> (Micros, Micros) {
        match self.account(tenant, user) {
            None => (Micros::ZERO, Micros::ZERO),
            Some(a) => {
                let st = a.state.lock();
                (st.spend.today(now), st.spend.this_month(now))
            }
        }
    }

    /// Estimates in flight for the account (after expiring lapsed holds), for tests and status.
    pub fn in_flight(&self, tenant: &str, user: &str) -> Micros {
        let now_sec = self.second(Instant::now());
        self.account(tenant, user).map_or(Micros::ZERO, |a| {
            let mut st = a.state.lock();
            st.expire(now_sec);
            st.in_flight_total
        })
    }
}

/// Maps an account's configured caps to the caps checked: (tenant, account user (empty: the
/// tenant's own), configured caps).
pub type CapShare<'a> = dyn Fn(&str, &str, &BudgetCaps) -> BudgetCaps + Send + Sync + 'a;

/// One account's spend today and this month and its estimates in flight, as a cap check reads
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub day: Micros,
    pub month: Micros,
    pub in_flight: Micros,
}

impl Figures {
    fn of(st: &AccountState, at: DateTime<Utc>) -> Figures {
        Figures {
            day: st.spend.today(at),
            month: st.spend.this_month(at),
            in_flight: st.in_flight_total,
        }
    }
}

/// Where a decision's budget check reads spend: this process's ledger, or what the fleet's
/// shared state last said (`crate::fleet`).
pub trait BudgetView: Send + Sync {
    fn check(&self, policy: &Policy, tenant: &str, user: &str, now: DateTime<Utc>)
    -> BudgetVerdict;
}

impl BudgetView for BudgetLedger {
    fn check(
        &self,
        policy: &Policy,
        tenant: &str,
        user: &str,
        now: DateTime<Utc>,
    ) -> BudgetVerdict {
        BudgetLedger::check(self, policy, tenant, user, now)
    }
}

/// The verdict of the tenant's and the user's caps, with each account's (checked caps, figures)
/// from `account(account user, configured caps)`; the strictest wins (deny over downgrade).
pub fn verdict(
    policy: &Policy,
    tenant: &str,
    user: &str,
    mut account: impl FnMut(&str, &BudgetCaps) -> (BudgetCaps, Figures),
) -> BudgetVerdict {
    let budgets = &policy.budgets;
    let mut verdicts = Vec::new();
    for (scope, caps, account_user) in [
        ("tenant", budgets.tenant_caps(tenant), ""),
        ("user", budgets.user_caps(tenant, user), user),
    ] {
        let Some(caps) = caps else { continue };
        let (caps, f) = account(account_user, caps);
        verdicts.extend(over_cap(
            &caps,
            scope,
            || who(scope, tenant, user),
            f.day,
            f.month,
            f.in_flight,
        ));
    }
    strictest(verdicts).unwrap_or(BudgetVerdict::Within)
}

fn who(scope: &str, tenant: &str, user: &str) -> String {
    if scope == "tenant" {
        format!("tenant {tenant}")
    } else {
        format!("user {user} of tenant {tenant}")
    }
}

/// The verdict of one account's caps (`scope` "tenant" or "user"); `None` state: no spend yet.
fn account_verdict(
    caps: &BudgetCaps,
    scope: &str,
    tenant: &str,
    user: &str,
    st: Option<&AccountState>,
    at: DateTime<Utc>,
) -> Option<BudgetVerdict> {
    let f = st.map(|st| Figures::of(st, at)).unwrap_or_default();
    over_cap(
        caps,
        scope,
        || who(scope, tenant, user),
        f.day,
        f.month,
        f.in_flight,
    )
}

/// The strictest of `verdicts` (deny over downgrade), if any.
fn strictest(verdicts: impl IntoIterator<Item = BudgetVerdict>) -> Option<BudgetVerdict> {
    verdicts.into_iter().max_by_key(|v| match v {
        BudgetVerdict::Exceeded {
            action: OnExceeded::Deny,
            ..
        } => 2,
        BudgetVerdict::Exceeded { .. } => 1,
        BudgetVerdict::Within => 0,
    })
}

fn over_cap(
    caps: &BudgetCaps,
    scope: &str,
    who: impl FnOnce() -> String,
    day: Micros,
    month: Micros,
    in_flight: Micros,
) -> Option<BudgetVerdict> {
    for (period, cap, spent) in [("daily", caps.daily, day), ("monthly", caps.monthly, month)] {
        let Some(cap) = cap else { continue };
        let committed = spent + in_flight;
        if committed >= cap {
            return Some(BudgetVerdict::Exceeded {
                policy_id: format!("budget.{scope}.{period}"),
                message: format!(
                    "{} {period} budget reached: {committed} committed ({spent} spent + {in_flight} in flight) of {cap}",
                    who()
                ),
                action: caps.on_exceeded,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::path::Path;

    fn policy(extra: &str) -> Policy {
        let text = format!(
            r#"
version = "t"
[[models]]
id = "m"
provider = "p"
lane = "hosted"
input_per_1k_usd = 0.001
output_per_1k_usd = 0.001
context_window = 1000
typical_latency_ms = 100
quality = 0.5
[data_classes.public]
lanes = ["hosted"]
store_prompt = true
[data_classes.internal]
lanes = ["hosted"]
store_prompt = true
[data_classes.pii]
lanes = ["hosted"]
store_prompt = true
[data_classes.regulated]
lanes = ["hosted"]
store_prompt = false
[[rules]]
id = "default"
route = "m"
fallbacks = []
{extra}
"#
        );
        // The rule needs a fallback: add a second model id to keep the fixture valid.
        let text = text
            .replace("fallbacks = []", "fallbacks = [\"m2\"]")
            .replace(
                "[data_classes.public]",
                "[[models]]\nid = \"m2\"\nprovider = \"p\"\nlane = \"hosted\"\ninput_per_1k_usd = 0.0\noutput_per_1k_usd = 0.0\ncontext_window = 1000\ntypical_latency_ms = 100\nquality = 0.5\n[data_classes.public]",
            );
        Policy::from_toml(&text, Path::new("t.toml"), Path::new(".")).unwrap()
    }

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    #[test]
    fn daily_cap_resets_at_utc_midnight_and_monthly_at_the_month() {
        let p = policy(
            "[budgets]\n[[budgets.tenants]]\ntenant = \"t\"\ndaily_usd = 1.0\nmonthly_usd = 2.5\n",
        );
        let ledger = BudgetLedger::new();
        let t = ledger.payer("t", "");
        let day1 = at(2026, 11, 29, 23);
        ledger.settle(&t, None, Micros(1_000_000), day1);
        assert!(matches!(
            ledger.check(&p, "t", "", day1),
            BudgetVerdict::Exceeded { ref policy_id, .. } if policy_id == "budget.tenant.daily"
        ));
        let day2 = at(2026, 11, 30, 0);
        assert_eq!(ledger.check(&p, "t", "", day2), BudgetVerdict::Within);
        ledger.settle(&t, None, Micros(999_999), day2);
        assert_eq!(ledger.check(&p, "t", "", day2), BudgetVerdict::Within);
        ledger.settle(&t, None, Micros(500_001), day2);
        // 1.0 + 1.5 = 2.5 this month: at the monthly cap is over (daily is too).
        assert!(matches!(
            ledger.check(&p, "t", "", day2),
            BudgetVerdict::Exceeded { .. }
        ));
        let next_day = at(2026, 11, 30, 23) + chrono::Duration::hours(2);
        assert_eq!(next_day.month(), 12);
        assert_eq!(ledger.check(&p, "t", "", next_day), BudgetVerdict::Within);
        assert_eq!(
            ledger.spent("t", "", day2),
            (Micros(1_500_000), Micros(2_500_000))
        );
    }

    #[test]
    fn in_flight_estimates_count_until_settled_or_expired() {
        let p = policy("[budgets]\n[[budgets.tenants]]\ntenant = \"t\"\ndaily_usd = 1.0\n");
        let ledger = BudgetLedger::new();
        let payer = ledger.payer("t", "u");
        let now = Utc::now();
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        let r1 = ledger.reserve(&payer, Micros(999_999), minute, start);
        assert_eq!(ledger.check(&p, "t", "u", now), BudgetVerdict::Within);
        let r2 = ledger.reserve(&payer, Micros(1), minute, start);
        assert!(matches!(
            ledger.check(&p, "t", "u", now),
            BudgetVerdict::Exceeded { .. }
        ));
        ledger.settle(&payer, r2, Micros::ZERO, now);
        assert_eq!(ledger.check(&p, "t", "u", now), BudgetVerdict::Within);
        assert_eq!(ledger.in_flight("t", "u"), Micros(999_999));
        assert_eq!(
            ledger.in_flight("t", ""),
            Micros(999_999),
            "the tenant holds it too"
        );
        // (Each reservation is settled at most once: the decision tracker hands it out once.)
        ledger.settle(&payer, r1, Micros::ZERO, now);
        assert_eq!(ledger.in_flight("t", "u"), Micros::ZERO);
        // A hold lapses after its TTL (rounded up to the second) and stops counting.
        let r3 = ledger.reserve(&payer, Micros(5_000_000), minute, start);
        assert!(r3.is_some());
        assert_eq!(ledger.in_flight("t", "u"), Micros(5_000_000));
        assert!(matches!(
            ledger.check(&p, "t", "u", now),
            BudgetVerdict::Exceeded { .. }
        ));
        ledger.sweep(start + Duration::from_secs(59));
        assert_eq!(
            ledger.in_flight("t", "u"),
            Micros(5_000_000),
            "not yet lapsed"
        );
        ledger.sweep(start + Duration::from_secs(62));
        assert_eq!(ledger.in_flight("t", "u"), Micros::ZERO);
        assert_eq!(ledger.check(&p, "t", "u", now), BudgetVerdict::Within);
        // Settling a lapsed reservation neither underflows nor touches newer holds.
        let r4 = ledger.reserve(&payer, Micros(7), minute, start + Duration::from_secs(62));
        ledger.settle(&payer, r3, Micros::ZERO, now);
        assert_eq!(ledger.in_flight("t", "u"), Micros(7));
        ledger.settle(&payer, r4, Micros::ZERO, now);
        assert_eq!(ledger.in_flight("t", "u"), Micros::ZERO);
    }

    #[test]
    fn holds_with_a_shorter_ttl_after_a_reload_keep_expiry_order() {
        let ledger = BudgetLedger::new();
        let payer = ledger.payer("t", "");
        let start = Instant::now();
        let long = ledger.reserve(&payer, Micros(10), Duration::from_secs(600), start);
        let short = ledger.reserve(&payer, Micros(3), Duration::from_secs(5), start);
        assert_eq!(ledger.in_flight("t", ""), Micros(13));
        ledger.sweep(start + Duration::from_secs(10));
        assert_eq!(
            ledger.in_flight("t", ""),
            Micros(10),
            "the short hold lapsed first"
        );
        ledger.settle(&payer, short, Micros::ZERO, Utc::now());
        assert_eq!(ledger.in_flight("t", ""), Micros(10));
        ledger.settle(&payer, long, Micros::ZERO, Utc::now());
        assert_eq!(ledger.in_flight("t", ""), Micros::ZERO);
    }

    #[test]
    fn many_decisions_share_one_hold_per_second() {
        let ledger = BudgetLedger::new();
        let payer = ledger.payer("t", "u");
        let start = Instant::now();
        let held: Vec<_> = (0..10_000)
            .map(|_| ledger.reserve(&payer, Micros(1), Duration::from_secs(600), start))
            .collect();
        assert_eq!(ledger.in_flight("t", "u"), Micros(10_000));
        let tenants = ledger.tenants.read();
        let ring = tenants["t"].users["u"].state.lock().in_flight.len();
        assert_eq!(ring, 1, "10k decisions in one second are one entry");
        drop(tenants);
        for r in held {
            ledger.settle(&payer, r, Micros::ZERO, Utc::now());
        }
        assert_eq!(ledger.in_flight("t", "u"), Micros::ZERO);
    }

    #[test]
    fn racing_requests_cannot_all_commit_past_a_cap() {
        let p = policy("[budgets]\n[[budgets.tenants]]\ntenant = \"t\"\ndaily_usd = 1.0\n");
        let ledger = BudgetLedger::new();
        let payer = ledger.payer("t", "u");
        let now = Utc::now();
        let start = Instant::now();
        let ttl = Duration::from_secs(60);
        // Ten requests all passed `check` before any of them reserved (a race).
        for _ in 0..10 {
            assert_eq!(ledger.check(&p, "t", "u", now), BudgetVerdict::Within);
        }
        let results: Vec<_> = (0..10)
            .map(|_| ledger.reserve_if_within(&p, &payer, Micros(600_000), ttl, start, now))
            .collect();
        // 0 and 0.6 committed are under the cap; at 1.2 the cap is reached.
        assert!(results[0].is_ok() && results[1].is_ok());
        assert!(
            results[2..].iter().all(|r| matches!(
                r,
                Err(BudgetVerdict::Exceeded { policy_id, .. }) if policy_id == "budget.tenant.daily"
            )),
            "{results:?}"
        );
        assert_eq!(ledger.in_flight("t", ""), Micros(1_200_000));
        // Without caps every reservation is held.
        let free = ledger.payer("other", "");
        assert!(matches!(
            ledger.reserve_if_within(&p, &free, Micros(5), ttl, start, now),
            Ok(Some(_))
        ));
    }

    #[test]
    fn payers_are_interned() {
        let ledger = BudgetLedger::new();
        assert_eq!(ledger.payer("t", "u"), ledger.payer("t", "u"));
        assert_ne!(ledger.payer("t", "u"), ledger.payer("t", "v"));
        assert_ne!(ledger.payer("t", "u"), ledger.payer("t", ""));
        assert_eq!(ledger.payer("t", "").user_id(), "");
    }

    #[test]
    fn deny_wins_over_downgrade_and_users_are_separate() {
        let p = policy(
            "[budgets]\non_exceeded = \"downgrade\"\n[[budgets.tenants]]\ntenant = \"t\"\ndaily_usd = 10.0\n[[budgets.users]]\ntenant = \"t\"\nuser = \"u\"\ndaily_usd = 1.0\non_exceeded = \"deny\"\n",
        );
        let ledger = BudgetLedger::new();
        let now = Utc::now();
        ledger.settle(&ledger.payer("t", "u"), None, Micros(1_000_000), now);
        assert!(matches!(
            ledger.check(&p, "t", "u", now),
            BudgetVerdict::Exceeded { action: OnExceeded::Deny, ref policy_id, .. } if policy_id == "budget.user.daily"
        ));
        assert_eq!(ledger.check(&p, "t", "v", now), BudgetVerdict::Within);
        ledger.settle(&ledger.payer("t", "v"), None, Micros(9_000_000), now);
        assert!(matches!(
            ledger.check(&p, "t", "v", now),
            BudgetVerdict::Exceeded { action: OnExceeded::Downgrade, ref policy_id, .. } if policy_id == "budget.tenant.daily"
        ));
        assert!(matches!(
            ledger.check(&p, "t", "u", now),
            BudgetVerdict::Exceeded {
                action: OnExceeded::Deny,
                ..
            }
        ));
    }
}
