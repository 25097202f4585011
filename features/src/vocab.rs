//! Training of the bundle tokenizer (byte-pair encoding) on the training prompts.
//!
//! Normalisation and pre-tokenisation are fixed here so that training and serving
//! cannot disagree: NFKC + lower-case, then split on whitespace and punctuation.

use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::normalizers::{Lowercase, NFKC, Sequence};
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::FeatureError;

/// The unknown-token symbol of bundle tokenizers.
pub const UNK: &str = "[UNK]";

/// Trains a BPE tokenizer with at most `vocab_size` tokens on `prompts`
/// (each truncated to `max_prompt_bytes`, like at featurization time).
pub fn train_tokenizer<'a, I>(
    prompts: I,
    vocab_size: usize,
    max_prompt_bytes: usize,
) -> Result<Tokenizer, FeatureError>
where
    I: Iterator<Item = &'a str> + Send,
{
    let tk = |e: tokenizers::Error| FeatureError::Tokenizer(e.to_string());
    let bpe = BPE::builder()
        .unk_token(UNK.to_string())
        .build()
        .map_err(tk)?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_normalizer(Some(Sequence::new(vec![NFKC.into(), Lowercase.into()])));
    tokenizer.with_pre_tokenizer(Some(Whitespace {}));
    let trainer = BpeTrainer::builder()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(UNK, true)])
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    tokenizer
        .train(
            &mut trainer,
            prompts.map(|p| crate::featurizer::window(p, max_prompt_bytes)),
        )
        .map_err(tk)?;
    Ok(tokenizer)
}
