//! When each phase of a request ran, on the monotonic clock: read by the per-phase histograms
//! ([`super::metrics`]) and turned into child spans ([`super::traces`]).

use std::time::{Duration, Instant, SystemTime};

/// One phase's start and end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub start: Instant,
    pub end: Instant,
}

impl Interval {
    /// From `start` to now.
    pub fn since(start: Instant) -> Interval {
        Interval {
            start,
            end: Instant::now(),
        }
    }

    pub fn duration(&self) -> Duration {
        self.end.saturating_duration_since(self.start)
    }
}

/// The phases of a Route. `None`: the phase did not run (no learned router, a refusal).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoutePhases {
    /// PII scan, task detection, risk tier.
    pub inspect: Option<Interval>,
    /// The learned router's features (tokenize, hash, IDF).
    pub featurize: Option<Interval>,
    /// The learned router's model run.
    pub inference: Option<Interval>,
    /// Everything else of the decision, from the end of `inspect` to the decision held and
    /// tracked: filters, the choice (`featurize` and `inference` run inside it), budget check,
    /// plans, the budget hold.
    pub policy: Option<Interval>,
    /// Appending the decision record: queueing it, and with `log.ack = "written"` or
    /// `"fsynced"` waiting for the writer.
    pub log: Option<Interval>,
}

impl RoutePhases {
    /// The policy phase's own time: its interval minus the featurize and inference phases
    /// inside it.
    pub fn policy_only(&self) -> Option<Duration> {
        let p = self.policy?;
        let inner: Duration = [self.featurize, self.inference]
            .iter()
            .flatten()
            .map(Interval::duration)
            .sum();
        Some(p.duration().saturating_sub(inner))
    }
}

/// A request's start on both clocks: spans are stamped with wall-clock times derived from the
/// monotonic instants of its phases.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub mono: Instant,
    pub wall: SystemTime,
}

impl Started {
    pub fn now() -> Started {
        Started {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// The wall-clock time of `at` (a later instant of the same request).
    pub fn wall_at(&self, at: Instant) -> SystemTime {
        self.wall + at.saturating_duration_since(self.mono)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_only_excludes_the_learned_phases_inside_it() {
        let t0 = Instant::now();
        let at = |us: u64| t0 + Duration::from_micros(us);
        let phases = RoutePhases {
            policy: Some(Interval {
                start: at(10),
                end: at(110),
            }),
            featurize: Some(Interval {
                start: at(20),
                end: at(50),
            }),
            inference: Some(Interval {
                start: at(50),
                end: at(90),
            }),
            ..RoutePhases::default()
        };
        assert_eq!(phases.policy_only(), Some(Duration::from_micros(30)));
        assert_eq!(RoutePhases::default().policy_only(), None);
    }

    #[test]
    fn wall_times_follow_the_monotonic_offsets() {
        let s = Started::now();
        let later = s.mono + Duration::from_millis(5);
        assert_eq!(
            s.wall_at(later).duration_since(s.wall).ok(),
            Some(Duration::from_millis(5))
        );
        // An instant before the start maps to the start.
        assert_eq!(s.wall_at(s.mono - Duration::from_millis(1)), s.wall);
    }
}
