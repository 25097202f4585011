//! Scorer tests, backend-independent.
//!
//! Compiled as its own test binary this file runs the suite on the tract backend (see
//! `test_backend` below). `tests/inference_onnxruntime.rs` includes this file as a module and
//! runs the same suite on native ONNX Runtime: every test reaches the backend through
//! `crate::test_backend()`, which each binary defines at its root. The `ort` backend is
//! process-global, so each backend gets its own test binary.
//!
//! Models are built in the test with `tract_onnx::pb`: `quality = Sigmoid(features · W + b)`.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use signalbox::inference::{self, Backend, InferenceError, Scorer};
use tract_onnx::pb;

/// The backend of the tract test binary (unused when this file is included as a module).
#[allow(dead_code)]
pub fn test_backend() -> Option<Backend> {
    Some(Backend::Tract)
}

/// Initialises this binary's backend once; `None` when the backend is unavailable and the
/// test should be skipped (`test_backend` decides; it fails instead when that is not allowed).
fn setup() -> Option<Backend> {
    static READY: OnceLock<Option<Backend>> = OnceLock::new();
    READY
        .get_or_init(|| {
            let backend = crate::test_backend()?;
            inference::init_backend(&backend)
                .unwrap_or_else(|e| panic!("init_backend({backend}) failed: {e}"));
            Some(backend)
        })
        .clone()
}

macro_rules! backend_or_skip {
    () => {
        match setup() {
            Some(backend) => backend,
            None => {
                eprintln!("skipped: inference backend not available");
                return;
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Model building
// ---------------------------------------------------------------------------------------------

#[path = "common/onnx.rs"]
mod onnx;
use onnx::{Dim, encode, node, value_info};

/// A linear routing model `quality = Sigmoid(features · W + b)` and a reference implementation.
struct Linear {
    d: usize,
    k: usize,
    /// Row-major `[d, k]`.
    w: Vec<f32>,
    b: Vec<f32>,
}

impl Linear {
    /// Deterministic, varied weights in roughly [-0.5, 0.5] / sqrt(d).
    fn patterned(d: usize, k: usize) -> Linear {
        let scale = 1.0 / (d as f32).sqrt();
        let w = (0..d * k)
            .map(|i| ((i * 7919 % 1009) as f32 / 1009.0 - 0.5) * scale)
            .collect();
        let b = (0..k).map(|j| 0.1 * j as f32 - 0.05).collect();
        Linear { d, k, w, b }
    }

    /// The ONNX model; `batch` is the first dimension of input and output.
    fn onnx(&self, batch: Dim) -> Vec<u8> {
        onnx::linear_sigmoid(&self.w, &self.b, self.d, batch, "quality")
    }

    /// Reference scores for one row, computed in f64.
    fn reference(&self, x: &[f32]) -> Vec<f64> {
        (0..self.k)
            .map(|j| {
                let z: f64 = f64::from(self.b[j])
                    + (0..self.d)
                        .map(|i| f64::from(x[i]) * f64::from(self.w[i * self.k + j]))
                        .sum::<f64>();
                1.0 / (1.0 + (-z).exp())
            })
            .collect()
    }
}

/// A model with one input and one output of the given shapes: `out = Sigmoid(in)`.
fn elementwise_model(dims: &[Dim]) -> Vec<u8> {
    encode(pb::GraphProto {
        name: "elementwise".to_owned(),
        node: vec![node("Sigmoid", &["features"], "quality")],
        input: vec![value_info("features", dims)],
        output: vec![value_info("quality", dims)],
        ..Default::default()
    })
}

/// Deterministic feature rows in [-1, 1].
fn rows(n: usize, d: usize, salt: usize) -> Vec<f32> {
    (0..n * d)
        .map(|i| ((i * 104_729 + salt * 7_727) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

fn assert_close(got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "length: got {got:?}, want {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(*g) - w).abs() <= tol,
            "index {i}: got {g}, want {w} (tolerance {tol}); all: {got:?} vs {want:?}"
        );
    }
}

fn write_model(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write model");
    path
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// W = [[1, -1], [0.5, 2], [-2, 0.25]], b = [0.1, -0.2], x = [0.5, -1, 0.25]:
/// z0 = 0.5 - 0.5 - 0.5 + 0.1 = -0.4, z1 = -0.5 - 2 + 0.0625 - 0.2 = -2.6375;
/// sigmoid(-0.4) = 0.401312339887548, sigmoid(-2.6375) = 0.066763632593224.
#[test]
fn scores_one_row_to_hand_computed_values() {
    let backend = backend_or_skip!();
    let model = Linear {
        d: 3,
        k: 2,
        w: vec![1.0, -1.0, 0.5, 2.0, -2.0, 0.25],
        b: vec![0.1, -0.2],
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_model(dir.path(), "routing.onnx", &model.onnx(Dim::Symbolic("N")));
    let scorer = Scorer::load(&path, 2).expect("load model");
    assert_eq!(scorer.input_dim(), 3);
    assert_eq!(scorer.output_dim(), 2);
    assert_eq!(scorer.sessions(), 2);
    assert_eq!(scorer.backend(), &backend);
    assert_eq!(scorer.single_row_specialised(), backend == Backend::Tract);

    let mut out = [0.0_f32; 2];
    scorer.score(&[0.5, -1.0, 0.25], &mut out).expect("score");
    assert_close(&out, &[0.401_312_339_887_548, 0.066_763_632_593_224], 1e-6);

    // The pooled input tensor is reused: a second, different row must not see the first.
    scorer
        .score(&[0.0, 0.0, 0.0], &mut out)
        .expect("score zeros");
    assert_close(&out, &[0.524_979_187_478_940, 0.450_166_002_687_522], 1e-6);
}

#[test]
fn scores_batches_like_single_rows() {
    let backend = backend_or_skip!();
    let model = Linear::patterned(16, 3);
    let scorer = Scorer::from_bytes(&model.onnx(Dim::Symbolic("batch")), 1).expect("load");
    // tract runs single rows on a batch-1 copy of a dynamic-batch model; ONNX Runtime does not.
    assert_eq!(scorer.single_row_specialised(), backend == Backend::Tract);
    let n = 5;
    let x = rows(n, 16, 1);
    let batch = scorer.score_batch(&x, n).expect("score batch");
    assert_eq!(batch.len(), n * 3);
    for r in 0..n {
        let row = &x[r * 16..(r + 1) * 16];
        let want = model.reference(row);
        assert_close(&batch[r * 3..(r + 1) * 3], &want, 1e-6);
        let mut single = [0.0_f32; 3];
        scorer.score(row, &mut single).expect("score row");
        assert_close(&single, &want, 1e-6);
    }
    // A batch of one and an empty batch.
    let one = scorer.score_batch(&x[..16], 1).expect("batch of one");
    assert_close(&one, &model.reference(&x[..16]), 1e-6);
    assert!(scorer.score_batch(&[], 0).expect("empty batch").is_empty());
}

#[test]
fn fixed_batch_of_one_model_scores_rows_and_rejects_larger_batches() {
    backend_or_skip!();
    let model = Linear::patterned(8, 2);
    let scorer = Scorer::from_bytes(&model.onnx(Dim::Fixed(1)), 1).expect("load");
    assert!(!scorer.single_row_specialised());
    let x = rows(2, 8, 3);
    let mut out = [0.0_f32; 2];
    scorer.score(&x[..8], &mut out).expect("score");
    assert_close(&out, &model.reference(&x[..8]), 1e-6);
    let err = scorer
        .score_batch(&x, 2)
        .expect_err("batch of 2 on a batch-1 model");
    assert!(
        matches!(
            err,
            InferenceError::BatchSize {
                expected: 1,
                got: 2
            }
        ),
        "{err}"
    );
}

#[test]
fn rejects_wrong_lengths() {
    backend_or_skip!();
    let scorer =
        Scorer::from_bytes(&Linear::patterned(4, 2).onnx(Dim::Symbolic("N")), 1).expect("load");
    let mut out = [0.0_f32; 2];
    for len in [0, 3, 5] {
        let err = scorer
            .score(&vec![0.5; len], &mut out)
            .expect_err("wrong feature count");
        assert!(
            matches!(err, InferenceError::InputLength { expected: 4, got } if got == len),
            "{err}"
        );
    }
    let err = scorer
        .score(&[0.5; 4], &mut [0.0; 3])
        .expect_err("wrong output buffer");
    assert!(
        matches!(
            err,
            InferenceError::OutputLength {
                expected: 2,
                got: 3
            }
        ),
        "{err}"
    );
    let err = scorer.score_batch(&[0.5; 7], 2).expect_err("ragged batch");
    assert!(
        matches!(
            err,
            InferenceError::InputLength {
                expected: 8,
                got: 7
            }
        ),
        "{err}"
    );
    // The scorer still works after rejected calls.
    scorer.score(&[0.5; 4], &mut out).expect("valid call");
}

#[test]
fn corrupt_or_missing_model_files_are_errors() {
    backend_or_skip!();
    let bytes = Linear::patterned(8, 2).onnx(Dim::Symbolic("N"));
    let dir = tempfile::tempdir().expect("tempdir");

    let truncated = write_model(dir.path(), "truncated.onnx", &bytes[..bytes.len() / 2]);
    let err = Scorer::load(&truncated, 1).expect_err("truncated file");
    assert!(matches!(err, InferenceError::Ort(_)), "{err}");
    let err = Scorer::from_bytes(&bytes[..bytes.len() - 7], 1).expect_err("truncated bytes");
    assert!(matches!(err, InferenceError::Ort(_)), "{err}");

    let garbage = write_model(dir.path(), "garbage.onnx", b"this is not an onnx model\n");
    assert!(Scorer::load(&garbage, 1).is_err());
    assert!(Scorer::load(&write_model(dir.path(), "empty.onnx", b""), 1).is_err());

    let err = Scorer::load(&dir.path().join("missing.onnx"), 1).expect_err("missing file");
    assert!(matches!(err, InferenceError::ReadModel { .. }), "{err}");

    let err = Scorer::from_bytes(&bytes, 0).expect_err("zero sessions");
    assert!(matches!(err, InferenceError::NoSessions), "{err}");
}

#[test]
fn rejects_models_without_the_routing_signature() {
    backend_or_skip!();
    let n = Dim::Symbolic("N");
    let cases = [
        ("rank 1", elementwise_model(&[Dim::Fixed(4)])),
        (
            "rank 3",
            elementwise_model(&[n, Dim::Fixed(2), Dim::Fixed(4)]),
        ),
        ("unknown width", elementwise_model(&[n, Dim::Symbolic("D")])),
    ];
    for (what, bytes) in cases {
        let err = Scorer::from_bytes(&bytes, 1).expect_err(what);
        assert!(
            matches!(err, InferenceError::InvalidModel(_)),
            "{what}: {err}"
        );
    }
    // Two inputs.
    let two_inputs = encode(pb::GraphProto {
        name: "two_inputs".to_owned(),
        node: vec![node("Add", &["a", "b"], "quality")],
        input: vec![
            value_info("a", &[n, Dim::Fixed(4)]),
            value_info("b", &[n, Dim::Fixed(4)]),
        ],
        output: vec![value_info("quality", &[n, Dim::Fixed(4)])],
        ..Default::default()
    });
    let err = Scorer::from_bytes(&two_inputs, 1).expect_err("two inputs");
    assert!(matches!(err, InferenceError::InvalidModel(_)), "{err}");
    // The same shapes as a valid model are accepted.
    let ok = Scorer::from_bytes(&elementwise_model(&[n, Dim::Fixed(4)]), 1).expect("rank 2");
    let mut out = [0.0_f32; 4];
    ok.score(&[0.0, 1.0, -1.0, 2.0], &mut out).expect("score");
    let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
    assert_close(&out, &[0.5, sig(1.0), sig(-1.0), sig(2.0)], 1e-6);
}

#[test]
fn concurrent_scoring_matches_sequential_results() {
    backend_or_skip!();
    let model = Linear::patterned(32, 4);
    let bytes = model.onnx(Dim::Symbolic("N"));
    let n_rows = 64;
    let x = rows(n_rows, 32, 7);
    for sessions in [1, 2] {
        let scorer = Scorer::from_bytes(&bytes, sessions).expect("load");
        let expected: Vec<[f32; 4]> = x
            .chunks(32)
            .map(|row| {
                let mut out = [0.0_f32; 4];
                scorer.score(row, &mut out).expect("sequential score");
                out
            })
            .collect();
        for (row, want) in x.chunks(32).zip(&expected) {
            assert_close(want, &model.reference(row), 1e-6);
        }
        std::thread::scope(|s| {
            for t in 0..4 {
                let (scorer, x, expected, model) = (&scorer, &x, &expected, &model);
                s.spawn(move || {
                    let mut out = [0.0_f32; 4];
                    for i in 0..400 {
                        let r = (i * 5 + t * 11) % n_rows;
                        scorer
                            .score(&x[r * 32..(r + 1) * 32], &mut out)
                            .expect("concurrent score");
                        assert_eq!(out, expected[r], "thread {t}, row {r}, sessions {sessions}");
                        if i % 20 == 0 {
                            // Batches share the pool (or tract's batch session) with rows.
                            let r = r.min(n_rows - 3);
                            let batch = scorer
                                .score_batch(&x[r * 32..(r + 3) * 32], 3)
                                .expect("concurrent batch");
                            for (j, got) in batch.chunks(4).enumerate() {
                                let want = model.reference(&x[(r + j) * 32..(r + j + 1) * 32]);
                                assert_close(got, &want, 1e-6);
                            }
                        }
                    }
                });
            }
        });
    }
}

/// Counts the bytes the current thread holds from the global allocator (allocated minus
/// freed), so a test can see what a call on this thread keeps.
mod held_bytes {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static NET: Cell<isize> = const { Cell::new(0) };
    }

    fn add(delta: isize) {
        let _ = NET.try_with(|n| n.set(n.get() + delta));
    }

    pub struct Counting;

    // SAFETY: forwards to the system allocator; the bookkeeping allocates nothing.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                add(layout.size() as isize);
            }
            p
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                add(layout.size() as isize);
            }
            p
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) };
            add(-(layout.size() as isize));
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                add(new_size as isize - layout.size() as isize);
            }
            p
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    pub fn now() -> isize {
        NET.with(|n| n.get())
    }
}

#[test]
fn scoring_keeps_no_memory_per_run() {
    let backend = backend_or_skip!();
    let model = Linear::patterned(64, 3);
    let scorer = Scorer::from_bytes(&model.onnx(Dim::Symbolic("N")), 1).expect("load");
    let x = rows(1, 64, 5);
    let mut out = vec![0.0f32; 3];
    // Warm-up: per-thread caches of the backend fill on the first runs.
    for _ in 0..200 {
        scorer.score(&x, &mut out).expect("score");
    }
    let before = held_bytes::now();
    for _ in 0..5000 {
        scorer.score(&x, &mut out).expect("score");
    }
    let kept = held_bytes::now() - before;
    eprintln!("{backend}: {kept} bytes kept by this thread over 5000 runs");
    // ort's own `Session::run` leaked ~40 bytes a run (200 kB here); `Scorer` must keep none.
    assert!(
        kept < 4096,
        "{backend}: {kept} bytes kept by this thread over 5000 runs"
    );
    assert_close(&out, &model.reference(&x), 1e-5);
}

#[test]
fn backend_is_fixed_once_chosen() {
    let backend = backend_or_skip!();
    assert_eq!(inference::current_backend(), Some(backend.clone()));
    inference::init_backend(&backend).expect("same backend again is a no-op");
    let other = match backend {
        Backend::Tract => Backend::OnnxRuntime {
            library: "/nonexistent/libonnxruntime.so".into(),
        },
        Backend::OnnxRuntime { .. } => Backend::Tract,
    };
    let err = inference::init_backend(&other).expect_err("switching backends");
    assert!(
        matches!(err, InferenceError::BackendConflict { .. }),
        "{err}"
    );
    assert_eq!(inference::current_backend(), Some(backend));
}

/// Single-row latency for wide inputs. Run with
/// `cargo test -p signalbox --release --test inference -- --ignored --nocapture timing`.
#[test]
#[ignore = "timing; prints numbers, asserts nothing about speed"]
fn timing_single_row_score() {
    let backend = backend_or_skip!();
    let batches = [("dynamic", Dim::Symbolic("N")), ("fixed-1", Dim::Fixed(1))];
    for ((d, k), (batch_name, batch)) in [(64, 2), (4096, 2), (16384, 2)]
        .into_iter()
        .flat_map(|dk| batches.map(|b| (dk, b)))
    {
        let model = Linear::patterned(d, k);
        let scorer = Scorer::from_bytes(&model.onnx(batch), 1).expect("load");
        let x = rows(1, d, 11);
        let mut out = vec![0.0_f32; k];
        for _ in 0..200 {
            scorer.score(&x, &mut out).expect("warm-up");
        }
        assert_close(&out, &model.reference(&x), 1e-5);
        let iterations = 5000;
        let mut samples = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let start = Instant::now();
            scorer.score(&x, &mut out).expect("score");
            samples.push(start.elapsed().as_nanos() as f64 / 1000.0);
        }
        samples.sort_by(f64::total_cmp);
        let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        eprintln!(
            "timing backend={} batch={batch_name} D={d} K={k}: mean {mean:.1} µs, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            backend.name(),
            pct(0.50),
            pct(0.99),
            pct(1.0),
        );
    }
}
