//! Spend per tenant and per user, per UTC day and month, from reported costs plus the estimated
//! cost of decisions still in flight. A cap is exceeded when committed spend is at or over it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Utc};
use parking_lot::Mutex;

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

/// (tenant, user); user is empty for the tenant-wide account.
type Account = (String, String);

#[derive(Debug, Default, Clone, Copy)]
struct Spend {
    day: i32,
    day_total: Micros,
    month: i32,
    month_total: Micros,
}

fn day_of(t: DateTime<Utc>) -> i32 {
    t.date_naive().num_days_from_ce()
}

fn month_of(t: DateTime<Utc>) -> i32 {
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

#[derive(Debug)]
struct Reservation {
    tenant: String,
    user: String,
    amount: Micros,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    spend: HashMap<Account, Spend>,
    in_flight: HashMap<Account, Micros>,
    reservations: HashMap<String, Reservation>,
    expiry: VecDeque<(Instant, String)>,
}

impl Inner {
    fn release(&mut self, decision_id: &str) {
        if let Some(r) = self.reservations.remove(decision_id) {
            for account in accounts(&r.tenant, &r.user) {
                if let Some(v) = self.in_flight.get_mut(&account) {
                    *v = v.saturating_sub(r.amount);
                    if *v == Micros::ZERO {
                        self.in_flight.remove(&account);
                    }
                }
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.expiry.front() {
            if *at > now {
                break;
            }
            if let Some((_, id)) = self.expiry.pop_front() {
                let expired = self.reservations.get(&id).is_some_and(|r| r.expires <= now);
                if expired {
                    self.release(&id);
                }
            }
        }
    }
}

fn accounts(tenant: &str, user: &str) -> Vec<Account> {
    let mut v = vec![(tenant.to_string(), String::new())];
    if !user.is_empty() {
        v.push((tenant.to_string(), user.to_string()));
    }
    v
}

#[derive(Debug, Default)]
pub struct BudgetLedger {
    inner: Mutex<Inner>,
}

impl BudgetLedger {
    pub fn new() -> BudgetLedger {
        BudgetLedger::default()
    }

    /// Is the tenant or the user at or over a cap? The strictest verdict wins (deny over downgrade).
    pub fn check(
        &self,
        policy: &Policy,
        tenant: &str,
        user: &str,
        now: DateTime<Utc>,
    ) -> BudgetVerdict {
        let budgets = &policy.budgets;
        let tenant_caps = budgets.tenant_caps(tenant);
        let user_caps = budgets.user_caps(tenant, user);
        if tenant_caps.is_none() && user_caps.is_none() {
            return BudgetVerdict::Within;
        }
        let mut inner = self.inner.lock();
        inner.expire(Instant::now());
        let mut verdicts = Vec::new();
        for (scope, caps, account) in [
            ("tenant", tenant_caps, (tenant.to_string(), String::new())),
            ("user", user_caps, (tenant.to_string(), user.to_string())),
        ] {
            let Some(caps) = caps else { continue };
            let spend = inner.spend.get(&account).copied().unwrap_or_default();
            let in_flight = inner.in_flight.get(&account).copied().unwrap_or_default();
            let who = if scope == "tenant" {
                format!("tenant {tenant}")
            } else {
                format!("user {user} of tenant {tenant}")
            };
            verdicts.extend(over_cap(
                caps,
                scope,
                &who,
                spend.today(now),
                spend.this_month(now),
                in_flight,
            ));
        }
        verdicts
            .into_iter()
            .max_by_key(|v| match v {
                BudgetVerdict::Exceeded {
                    action: OnExceeded::Deny,
                    ..
                } => 2,
                BudgetVerdict::Exceeded { .. } => 1,
                BudgetVerdict::Within => 0,
            })
            .unwrap_or(BudgetVerdict::Within)
    }

    /// Hold the estimated cost of a decision until its outcome arrives or `ttl` passes.
    pub fn reserve(&self, decision_id: &str, tenant: &str, user: &str, amount: Micros, ttl: Duration) {
        if amount == Micros::ZERO {
            return;
        }
        let now = Instant::now();
        let expires = now + ttl;
        let mut inner = self.inner.lock();
        inner.expire(now);
        for account in accounts(tenant, user) {
            *inner.in_flight.entry(account).or_default() += amount;
        }
        inner.reservations.insert(
            decision_id.to_string(),
            Reservation {
                tenant: tenant.to_string(),
                user: user.to_string(),
                amount,
                expires,
            },
        );
        inner.expiry.push_back((expires, decision_id.to_string()));
    }

    /// Book a reported cost: releases the decision's reservation and adds the actual cost.
    pub fn settle(&self, decision_id: &str, tenant: &str, user: &str, cost: Micros, at: DateTime<Utc>) {
        let mut inner = self.inner.lock();
        inner.release(decision_id);
        for account in accounts(tenant, user) {
            inner.spend.entry(account).or_default().add(cost, at);
        }
    }

    /// Spent today and this month (excluding in-flight), for tests and status.
    pub fn spent(&self, tenant: &str, user: &str, now: DateTime<Utc>) -> (Micros, Micros) {
        let inner = self.inner.lock();
        let s = inner
            .spend
            .get(&(tenant.to_string(), user.to_string()))
            .copied()
            .unwrap_or_default();
        (s.today(now), s.this_month(now))
    }
}

fn over_cap(
    caps: &BudgetCaps,
    scope: &str,
    who: &str,
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
                    "{who} {period} budget reached: {committed} committed ({spent} spent + {in_flight} in flight) of {cap}"
                ),
                action: caps.on_exceeded,
            });
        }
    }
    None
}
