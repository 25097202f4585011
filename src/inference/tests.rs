use super::scorer::{matrix_shape, pin_batch_to_one};
use super::*;
use ort::value::{TensorElementType, ValueType};

// Nothing in the library's unit-test process initialises a backend, so these run against an
// uninitialised `ort` and must leave it that way.

#[test]
fn backend_names() {
    assert_eq!(Backend::Tract.name(), "tract");
    let ort = Backend::OnnxRuntime {
        library: PathBuf::from("/x/libonnxruntime.so"),
    };
    assert_eq!(ort.name(), "onnxruntime");
    assert_eq!(ort.to_string(), "onnxruntime (/x/libonnxruntime.so)");
}

#[test]
fn missing_library_is_a_load_error() {
    let backend = Backend::OnnxRuntime {
        library: PathBuf::from("/nonexistent/libonnxruntime.so.1.31.1"),
    };
    let err = init_backend(&backend).expect_err("bogus path must fail");
    assert!(
        matches!(err, InferenceError::LoadLibrary { .. }),
        "unexpected error: {err}"
    );
    assert!(current_backend().is_none());
}

#[test]
fn library_without_ort_symbols_is_rejected() {
    // libm is present on any glibc system and exports no OrtGetApiBase.
    let backend = Backend::OnnxRuntime {
        library: PathBuf::from("libm.so.6"),
    };
    let err = init_backend(&backend).expect_err("libm is not ONNX Runtime");
    assert!(
        matches!(err, InferenceError::NotOnnxRuntime { .. }),
        "unexpected error: {err}"
    );
    assert!(current_backend().is_none());
}

/// Builds a fake `libonnxruntime` whose `OrtGetApiBase` reports `version` and whose `GetApi`
/// returns null, with the system C compiler.
fn fake_onnxruntime(dir: &Path, version: &str) -> PathBuf {
    let source = dir.join(format!("fake-{version}.c"));
    let library = dir.join(format!("libfake-{version}.so"));
    std::fs::write(
        &source,
        format!(
            "typedef struct {{ const void *(*get_api)(unsigned); const char *(*version)(void); }} Base;\n\
             static const void *get_api(unsigned v) {{ (void)v; return 0; }}\n\
             static const char *version(void) {{ return \"{version}\"; }}\n\
             static const Base base = {{ get_api, version }};\n\
             const Base *OrtGetApiBase(void) {{ return &base; }}\n"
        ),
    )
    .expect("write C source");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .expect("run cc (a C compiler is needed to link Rust here anyway)");
    assert!(status.success(), "cc failed for {}", source.display());
    library
}

#[test]
fn old_or_incompatible_onnxruntime_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let required = ort::sys::ORT_API_VERSION;
    let too_old = format!("1.{}.0", required - 1);
    let newer_but_no_api = format!("1.{}.0", required + 100);
    for version in [too_old.as_str(), "2.0.0", "garbage", &newer_but_no_api] {
        let library = fake_onnxruntime(dir.path(), version);
        let err = init_backend(&Backend::OnnxRuntime { library })
            .expect_err("fake runtime must be rejected");
        assert!(
            matches!(&err, InferenceError::UnsupportedVersion { found, required_minor, .. }
                if found == version && *required_minor == required),
            "{version}: {err}"
        );
        assert!(current_backend().is_none());
    }
}

#[test]
fn scorer_needs_an_initialised_backend() {
    let err = Scorer::from_bytes(b"not a model", 1).expect_err("no backend yet");
    assert!(
        matches!(err, InferenceError::NotInitialised),
        "unexpected error: {err}"
    );
    let err = Scorer::from_bytes(b"not a model", 0).expect_err("zero sessions");
    assert!(matches!(err, InferenceError::NoSessions), "{err}");
}

#[test]
fn finds_versioned_library_in_capi_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(onnxruntime_in_dir(dir.path()), None);
    for name in [
        "libonnxruntime_providers_shared.so",
        "libonnxruntime.so.1.9.0",
        "libonnxruntime.so.1.31.1",
        "libonnxruntime.so.1.31.1.bak",
        "onnxruntime.py",
    ] {
        std::fs::write(dir.path().join(name), b"").expect("write");
    }
    assert_eq!(
        onnxruntime_in_dir(dir.path()),
        Some(dir.path().join("libonnxruntime.so.1.31.1"))
    );
    assert_eq!(onnxruntime_in_dir(&dir.path().join("missing")), None);
}

#[test]
fn pins_symbolic_and_unknown_batch_dimensions() {
    use prost::Message;
    use tract_onnx::pb;
    use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;

    let info = |name: &str, dims: Vec<Option<DimValue>>| pb::ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: 1,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .into_iter()
                        .map(|value| pb::tensor_shape_proto::Dimension {
                            value,
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sym = |s: &str| Some(DimValue::DimParam(s.to_owned()));
    let val = |v: i64| Some(DimValue::DimValue(v));
    let model = pb::ModelProto {
        graph: Some(pb::GraphProto {
            initializer: vec![pb::TensorProto {
                name: "W".to_owned(),
                ..Default::default()
            }],
            input: vec![
                info("features", vec![sym("N"), val(8)]),
                // An initializer listed as an input (old IR) keeps its shape.
                info("W", vec![sym("N"), val(2)]),
            ],
            output: vec![info("quality", vec![None, val(2)])],
            value_info: vec![
                info("hidden", vec![sym("N"), sym("H")]),
                info("fixed", vec![val(4), val(2)]),
            ],
            ..Default::default()
        }),
        ..Default::default()
    };
    let pinned = pin_batch_to_one(&model.encode_to_vec()).expect("pin");
    let pinned = pb::ModelProto::decode(pinned.as_slice()).expect("decode");
    let graph = pinned.graph.expect("graph");
    let shape =
        |info: &pb::ValueInfoProto| match &info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(pb::type_proto::Value::TensorType(t)) => t
                .shape
                .as_ref()
                .map(|s| s.dim.iter().map(|d| d.value.clone()).collect::<Vec<_>>()),
            None => None,
        };
    assert_eq!(shape(&graph.input[0]), Some(vec![val(1), val(8)]));
    assert_eq!(shape(&graph.input[1]), Some(vec![sym("N"), val(2)]));
    assert_eq!(shape(&graph.output[0]), Some(vec![val(1), val(2)]));
    assert_eq!(shape(&graph.value_info[0]), Some(vec![val(1), sym("H")]));
    assert_eq!(shape(&graph.value_info[1]), Some(vec![val(4), val(2)]));

    let err = pin_batch_to_one(b"\xff\xff not a protobuf").expect_err("garbage");
    assert!(matches!(err, InferenceError::InvalidModel(_)), "{err}");
}

#[test]
fn matrix_shape_validation() {
    let tensor = |ty, dims: &[i64]| ValueType::Tensor {
        ty,
        shape: ort::value::Shape::new(dims.iter().copied()),
        dimension_symbols: ort::value::SymbolicDimensions::empty(dims.len()),
    };
    assert_eq!(
        matrix_shape("input", "x", &tensor(TensorElementType::Float32, &[-1, 8]))
            .expect("dynamic batch"),
        (None, 8)
    );
    assert_eq!(
        matrix_shape("input", "x", &tensor(TensorElementType::Float32, &[1, 3]))
            .expect("fixed batch"),
        (Some(1), 3)
    );
    for bad in [
        tensor(TensorElementType::Float32, &[8]),
        tensor(TensorElementType::Float32, &[1, 2, 3]),
        tensor(TensorElementType::Float32, &[-1, -1]),
        tensor(TensorElementType::Float32, &[-1, 0]),
        tensor(TensorElementType::Float64, &[-1, 8]),
    ] {
        let err = matrix_shape("input", "x", &bad).expect_err("must be rejected");
        assert!(matches!(err, InferenceError::InvalidModel(_)), "{err}");
    }
}
