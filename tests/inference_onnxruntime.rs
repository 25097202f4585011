//! The scorer suite of `tests/inference.rs`, run on native ONNX Runtime.
//!
//! Needs the `onnxruntime` Python wheel (`pip install onnxruntime==1.31.1`) or `ORT_DYLIB_PATH`
//! pointing at `libonnxruntime.so`. Without either the tests are skipped, except under CI (the
//! `CI` environment variable set), where a missing runtime fails them.

use signalbox::inference::{self, Backend, InferenceError};

#[path = "inference.rs"]
mod suite;

/// Native ONNX Runtime found by [`inference::find_onnxruntime`]; `None` (skip) when it is
/// absent outside CI.
pub fn test_backend() -> Option<Backend> {
    match inference::find_onnxruntime() {
        Some(library) => Some(Backend::OnnxRuntime { library }),
        None if std::env::var_os("CI").is_some() => panic!(
            "ONNX Runtime not found: CI must install it with `pip install onnxruntime==1.31.1` \
             (or set ORT_DYLIB_PATH)"
        ),
        None => {
            eprintln!(
                "ONNX Runtime not found (pip install onnxruntime==1.31.1, or set ORT_DYLIB_PATH); \
                 skipping native ONNX Runtime tests"
            );
            None
        }
    }
}

#[test]
fn finds_the_wheel_library() {
    let Some(Backend::OnnxRuntime { library }) = test_backend() else {
        return;
    };
    assert!(library.is_file(), "{} is not a file", library.display());
    let name = library
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    assert!(name.starts_with("libonnxruntime.so"), "{name}");
}

#[test]
fn a_library_that_is_not_onnxruntime_is_rejected_without_side_effects() {
    // Runs whether or not the suite has initialised the backend: before init it must be a load
    // error, after init a conflict; never a panic, never a switch of backend.
    let before = inference::current_backend();
    for library in ["/nonexistent/libonnxruntime.so.1.31.1", "libm.so.6"] {
        let err = inference::init_backend(&Backend::OnnxRuntime {
            library: library.into(),
        })
        .expect_err(library);
        assert!(
            matches!(
                err,
                InferenceError::LoadLibrary { .. }
                    | InferenceError::NotOnnxRuntime { .. }
                    | InferenceError::BackendConflict { .. }
            ),
            "{library}: {err}"
        );
    }
    let after = inference::current_backend();
    assert!(
        before.is_none() || before == after,
        "backend changed from {before:?} to {after:?}"
    );
}
