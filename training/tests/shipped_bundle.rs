//! The shipped default bundle: loads with the shared featurizer, and its parity
//! samples (prompt -> P(acceptable) from the in-Rust model at training time) are
//! reproduced by featurizer + exported weights to 1e-5. The service runs the same
//! featurizer with ONNX Runtime on the same file.

mod common;

use signalbox_features::{BundleManifest, Featurizer};
use signalbox_train::bundle::{PARITY_FILE, ParitySample};

#[test]
fn default_bundle_reproduces_its_parity_samples() {
    let dir = common::repo().join("models/routellm-mmlu");
    let manifest = BundleManifest::load(&dir).unwrap();
    let ids: Vec<&str> = manifest.models.iter().map(|m| m.id.as_str()).collect();
    assert!(ids.contains(&"gpt-4-1106-preview"));
    assert!(ids.contains(&"mistralai/Mixtral-8x7B-Instruct-v0.1"));
    let featurizer = Featurizer::load(&dir).unwrap();
    let model = signalbox_train::onnx::read(&dir.join(&manifest.onnx.file)).unwrap();
    assert_eq!(
        model.models.iter().map(String::as_str).collect::<Vec<_>>(),
        ids
    );
    let text = std::fs::read_to_string(dir.join(PARITY_FILE)).unwrap();
    let samples: Vec<ParitySample> = serde_json::from_str(&text).unwrap();
    assert!(samples.len() >= 8);
    for s in &samples {
        let x = featurizer.featurize(&s.prompt).unwrap();
        let p = model.predict_row(&x);
        for (a, b) in p.iter().zip(&s.p_acceptable) {
            assert!(
                (a - b).abs() <= 1e-5,
                "{a} vs {b} for {:?}",
                &s.prompt[..40.min(s.prompt.len())]
            );
        }
    }
    // Every calibrated target routes something sensible.
    let allowed = vec![true; ids.len()];
    let probs = vec![0.7f32, 0.9f32];
    for q in &manifest.quality_targets {
        assert!(
            manifest
                .route(&probs, q.target, &allowed)
                .unwrap()
                .is_some()
        );
    }
}
