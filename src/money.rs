//! Money as integer micro-USD, so budget boundaries are checked exactly.

use std::ops::{Add, AddAssign, Sub};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Micros(pub u64);

impl Micros {
    pub const ZERO: Micros = Micros(0);

    /// USD to micro-USD, rounded to the nearest micro. `None` for negative, NaN or absurd values.
    pub fn from_usd(usd: f64) -> Option<Micros> {
        if !usd.is_finite() || !(0.0..=1e12).contains(&usd) {
            return None;
        }
        Some(Micros((usd * 1e6).round() as u64))
    }

    pub fn usd(self) -> f64 {
        self.0 as f64 / 1e6
    }

    pub fn saturating_sub(self, other: Micros) -> Micros {
        Micros(self.0.saturating_sub(other.0))
    }
}

impl Add for Micros {
    type Output = Micros;
    fn add(self, rhs: Micros) -> Micros {
        Micros(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for Micros {
    fn add_assign(&mut self, rhs: Micros) {
        self.0 = self.0.saturating_add(rhs.0);
    }
}

impl Sub for Micros {
    type Output = Micros;
    fn sub(self, rhs: Micros) -> Micros {
        self.saturating_sub(rhs)
    }
}

impl std::fmt::Display for Micros {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "${:.6}", self.usd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_usd_exactly_at_micro_resolution() {
        assert_eq!(Micros::from_usd(0.1), Some(Micros(100_000)));
        assert_eq!(Micros::from_usd(10.0), Some(Micros(10_000_000)));
        assert_eq!(Micros::from_usd(0.0000004), Some(Micros(0)));
        assert_eq!(Micros::from_usd(-0.01), None);
        assert_eq!(Micros::from_usd(f64::NAN), None);
        assert_eq!(Micros(1_500_000).to_string(), "$1.500000");
    }
}
