//! Stable hashing of token-id n-grams into feature buckets.
//!
//! The hash is part of the bundle format (feature kind `hashed_tfidf_v1`): changing it
//! silently breaks every shipped bundle, so it is pinned by a golden test.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// splitmix64 finaliser: spreads the FNV state over all 64 bits.
fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Bucket in `[0, 2^bits)` of the n-gram `ids` (its length is the order n).
pub fn ngram_bucket(ids: &[u32], bits: u32) -> usize {
    let mut h = FNV_OFFSET ^ (ids.len() as u64);
    for &id in ids {
        h ^= u64::from(id);
        h = h.wrapping_mul(FNV_PRIME);
    }
    (finalize(h) >> (64 - bits)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_in_range() {
        // Golden values: a change here means every shipped bundle is invalid.
        assert_eq!(ngram_bucket(&[1], 12), ngram_bucket(&[1], 12));
        let golden: Vec<usize> = [&[0u32][..], &[1], &[1, 2], &[2, 1], &[7, 8, 9]]
            .iter()
            .map(|g| ngram_bucket(g, 12))
            .collect();
        assert_eq!(
            golden,
            vec![GOLDEN[0], GOLDEN[1], GOLDEN[2], GOLDEN[3], GOLDEN[4]]
        );
        for bits in [1, 8, 12, 16, 20] {
            for id in 0..500u32 {
                assert!(ngram_bucket(&[id, id + 1], bits) < (1usize << bits));
            }
        }
        assert_ne!(ngram_bucket(&[1, 2], 16), ngram_bucket(&[2, 1], 16));
    }

    // Computed independently (Python re-implementation of FNV-1a + splitmix64 finaliser).
    const GOLDEN: [usize; 5] = [2721, 607, 2906, 1042, 509];
}
