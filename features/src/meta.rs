//! Cheap, length-bounded meta features computed from the raw prompt text.

use serde::{Deserialize, Serialize};

/// One meta feature; each maps to a single float, roughly in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetaFeature {
    /// `ln(1 + bytes of the whole prompt) / 10`.
    LogBytes,
    /// `ln(1 + tokens in the window) / ln(1 + max_tokens)`.
    LogTokens,
    /// Share of ASCII digits in the window text.
    DigitShare,
    /// `ln(1 + newlines in the window) / 5`.
    LogNewlines,
    /// Share of `+-*/=^<>%$\` characters in the window text.
    MathSymbolShare,
    /// Share of ASCII upper-case letters in the window text.
    UpperShare,
    /// Share of non-ASCII bytes in the window text.
    NonAsciiShare,
}

impl MetaFeature {
    /// All meta features, in the default order.
    pub const ALL: [MetaFeature; 7] = [
        MetaFeature::LogBytes,
        MetaFeature::LogTokens,
        MetaFeature::DigitShare,
        MetaFeature::LogNewlines,
        MetaFeature::MathSymbolShare,
        MetaFeature::UpperShare,
        MetaFeature::NonAsciiShare,
    ];
}

/// Byte-class counts of the window text, gathered in one pass.
#[derive(Debug, Default, Clone, Copy)]
pub struct TextStats {
    pub bytes: usize,
    pub digits: usize,
    pub newlines: usize,
    pub math: usize,
    pub upper: usize,
    pub non_ascii: usize,
}

impl TextStats {
    pub fn of(window: &str) -> TextStats {
        let mut s = TextStats {
            bytes: window.len(),
            ..TextStats::default()
        };
        for &b in window.as_bytes() {
            match b {
                b'0'..=b'9' => s.digits += 1,
                b'\n' => s.newlines += 1,
                b'+' | b'-' | b'*' | b'/' | b'=' | b'^' | b'<' | b'>' | b'%' | b'$' | b'\\' => {
                    s.math += 1
                }
                b'A'..=b'Z' => s.upper += 1,
                0x80..=0xff => s.non_ascii += 1,
                _ => {}
            }
        }
        s
    }
}

/// Value of `feature` for a prompt of `total_bytes` whose window has `stats` and
/// `tokens` tokens (of at most `max_tokens`).
pub fn value(
    feature: MetaFeature,
    total_bytes: usize,
    stats: &TextStats,
    tokens: usize,
    max_tokens: usize,
) -> f32 {
    let share = |n: usize| {
        if stats.bytes == 0 {
            0.0
        } else {
            n as f32 / stats.bytes as f32
        }
    };
    match feature {
        MetaFeature::LogBytes => (1.0 + total_bytes as f32).ln() / 10.0,
        MetaFeature::LogTokens => (1.0 + tokens as f32).ln() / (1.0 + max_tokens as f32).ln(),
        MetaFeature::DigitShare => share(stats.digits),
        MetaFeature::LogNewlines => (1.0 + stats.newlines as f32).ln() / 5.0,
        MetaFeature::MathSymbolShare => share(stats.math),
        MetaFeature::UpperShare => share(stats.upper),
        MetaFeature::NonAsciiShare => share(stats.non_ascii),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_count_byte_classes() {
        let s = TextStats::of("A1+\né");
        assert_eq!(
            (s.bytes, s.digits, s.math, s.newlines, s.upper, s.non_ascii),
            (6, 1, 1, 1, 1, 2)
        );
        assert!((value(MetaFeature::DigitShare, 6, &s, 3, 10) - 1.0 / 6.0).abs() < 1e-7);
        assert_eq!(
            value(MetaFeature::DigitShare, 0, &TextStats::of(""), 0, 10),
            0.0
        );
    }
}
