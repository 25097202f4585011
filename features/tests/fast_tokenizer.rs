//! The featurizer's fast tokenizer against the `tokenizers` pipeline it replaces, on
//! generated text (ASCII and any Unicode), with the shipped bundle's tokenizer (8,000 tokens) and a small one
//! trained here (many unknown characters, long merge chains).

use std::path::PathBuf;
use std::sync::LazyLock;

use proptest::prelude::*;
use signalbox_features::fast_tokenizer::FastTokenizer;
use tokenizers::Tokenizer;

fn shipped() -> Tokenizer {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/routellm-mmlu/tokenizer.json");
    Tokenizer::from_file(path).unwrap()
}

fn small() -> Tokenizer {
    let corpus = "What is the derivative of x^2 + 3x? The answer is 2x + 3.\n\
                  Which of the following statements about the theory is true?\n\
                  (A) none (B) all (C) some__of_them (D) 1,000,000 --- ***";
    let prompts: Vec<&str> = std::iter::repeat_n(corpus, 8).collect();
    signalbox_features::vocab::train_tokenizer(prompts.into_iter(), 90, 4096).unwrap()
}

static TOKENIZERS: LazyLock<Vec<(Tokenizer, FastTokenizer)>> = LazyLock::new(|| {
    [shipped(), small()]
        .into_iter()
        .map(|t| {
            let fast = FastTokenizer::from_tokenizer(&t).expect("bundle pipeline has a fast path");
            (t, fast)
        })
        .collect()
});

/// What the fast path must return: the `tokenizers` ids, or `None` (left to `tokenizers`) for
/// text containing the added token `[UNK]`.
fn reference(t: &Tokenizer, text: &str, max: usize) -> Option<Vec<u32>> {
    if text.contains("[UNK]") {
        return None;
    }
    let ids = t.encode_fast(text, false).unwrap().get_ids().to_vec();
    Some(ids[..ids.len().min(max)].to_vec())
}

/// Text over the bytes the fast path covers, weighted towards prompt-like text.
fn covered_text() -> impl Strategy<Value = String> {
    let words = prop::sample::select(vec![
        "the",
        "The",
        "THEORY",
        "answer",
        "x",
        "2x",
        "derivative",
        "of",
        "__init__",
        "1,000",
        "(A)",
        "---",
        "***",
        "?",
        "!!",
        "zzzzqqq",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "[unk]",
        "UNK",
        "[",
        "]",
        "[UNK",
    ]);
    let piece = prop_oneof![
        3 => words.prop_map(str::to_string),
        2 => "[ -~]{1,12}",
        1 => prop::sample::select(vec![" ", "\n", "\t", "\r\n", "\x0b", "\x0c", "  "]).prop_map(str::to_string),
    ];
    prop::collection::vec(piece, 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn covered_text_encodes_exactly_like_tokenizers(text in covered_text(), max in 1usize..200) {
        for (t, fast) in TOKENIZERS.iter() {
            let got = fast.encode(&text, max);
            prop_assert_eq!(got, reference(t, &text, max));
        }
    }

    #[test]
    fn any_text_encodes_exactly_like_tokenizers(text in "(?s).{0,80}", max in 1usize..200) {
        for (t, fast) in TOKENIZERS.iter() {
            prop_assert_eq!(fast.encode(&text, max), reference(t, &text, max));
        }
    }

    #[test]
    fn prompt_like_unicode_encodes_exactly_like_tokenizers(
        text in prop::collection::vec(
            prop_oneof![
                2 => covered_text(),
                1 => "[àéîõüçñßøåæœ’“”–—…€£¥°±×÷²³½¼ﬁﬂΣσςΑαİıẞ\u{a0}\u{2003}\u{3000}\u{301}\u{1}\u{7f}一二三日本語]{1,6}",
            ],
            0..8,
        ).prop_map(|v| v.concat()),
        max in 1usize..200,
    ) {
        for (t, fast) in TOKENIZERS.iter() {
            prop_assert_eq!(fast.encode(&text, max), reference(t, &text, max));
        }
    }
}
