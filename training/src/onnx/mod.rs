//! ONNX export of the linear router, and reading it back.
//!
//! Graph (opset 13, IR 8): `features` float32 `[batch, dim]`
//! -> `Gemm(features, W[dim, models], b[models])` -> `logits`
//! -> `Sigmoid` -> `p_acceptable` float32 `[batch, models]`.

pub mod proto;

use std::path::Path;

use prost::Message;
use signalbox_features::OnnxSpec;

use crate::error::TrainError;
use crate::model::LinearModel;
use proto::*;

pub const OPSET: i64 = 13;
pub const IR_VERSION: i64 = 8;
pub const INPUT: &str = "features";
pub const OUTPUT: &str = "p_acceptable";
const WEIGHTS: &str = "W";
const BIAS: &str = "b";

/// The manifest description of the exported graph.
pub fn spec() -> OnnxSpec {
    OnnxSpec {
        file: "model.onnx".into(),
        opset: OPSET,
        ir_version: IR_VERSION,
        input_name: INPUT.into(),
        output_name: OUTPUT.into(),
        input_shape: vec!["batch".into(), "dim".into()],
        output_shape: vec!["batch".into(), "models".into()],
    }
}

fn tensor_type(dims: [Dimension; 2]) -> Option<TypeProto> {
    Some(TypeProto {
        tensor_type: Some(TypeProtoTensor {
            elem_type: DATA_TYPE_FLOAT,
            shape: Some(TensorShapeProto { dim: dims.to_vec() }),
        }),
    })
}

fn fixed(n: usize) -> Dimension {
    Dimension {
        dim_value: Some(n as i64),
        dim_param: None,
    }
}

fn batch() -> Dimension {
    Dimension {
        dim_value: None,
        dim_param: Some("batch".into()),
    }
}

/// Builds the ONNX model of `model` (weights rounded to float32).
pub fn to_proto(model: &LinearModel, doc: &str) -> ModelProto {
    let m = model.models.len();
    let d = model.dim;
    let mut w = Vec::with_capacity(d * m);
    for j in 0..d {
        for wm in &model.weights {
            w.push(wm[j] as f32);
        }
    }
    let graph = GraphProto {
        name: "signalbox_router".into(),
        doc_string: format!("Output columns (models): {}", model.models.join(", ")),
        node: vec![
            NodeProto {
                input: vec![INPUT.into(), WEIGHTS.into(), BIAS.into()],
                output: vec!["logits".into()],
                name: "linear".into(),
                op_type: "Gemm".into(),
                attribute: vec![
                    AttributeProto {
                        name: "alpha".into(),
                        f: 1.0,
                        r#type: ATTR_FLOAT,
                        ..Default::default()
                    },
                    AttributeProto {
                        name: "beta".into(),
                        f: 1.0,
                        r#type: ATTR_FLOAT,
                        ..Default::default()
                    },
                    AttributeProto {
                        name: "transA".into(),
                        i: 0,
                        r#type: ATTR_INT,
                        ..Default::default()
                    },
                    AttributeProto {
                        name: "transB".into(),
                        i: 0,
                        r#type: ATTR_INT,
                        ..Default::default()
                    },
                ],
                domain: String::new(),
            },
            NodeProto {
                input: vec!["logits".into()],
                output: vec![OUTPUT.into()],
                name: "probability".into(),
                op_type: "Sigmoid".into(),
                attribute: vec![],
                domain: String::new(),
            },
        ],
        initializer: vec![
            TensorProto {
                dims: vec![d as i64, m as i64],
                data_type: DATA_TYPE_FLOAT,
                name: WEIGHTS.into(),
                raw_data: w.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ..Default::default()
            },
            TensorProto {
                dims: vec![m as i64],
                data_type: DATA_TYPE_FLOAT,
                name: BIAS.into(),
                raw_data: model
                    .bias
                    .iter()
                    .flat_map(|v| (*v as f32).to_le_bytes())
                    .collect(),
                ..Default::default()
            },
        ],
        input: vec![ValueInfoProto {
            name: INPUT.into(),
            r#type: tensor_type([batch(), fixed(d)]),
        }],
        output: vec![ValueInfoProto {
            name: OUTPUT.into(),
            r#type: tensor_type([batch(), fixed(m)]),
        }],
    };
    ModelProto {
        ir_version: IR_VERSION,
        producer_name: "signalbox-train".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: "ai.signalbox".into(),
        model_version: 1,
        doc_string: doc.into(),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        metadata_props: vec![StringStringEntryProto {
            key: "models".into(),
            value: model.models.join("\n"),
        }],
    }
}

pub fn write(model: &LinearModel, doc: &str, path: &Path) -> Result<(), TrainError> {
    let bytes = to_proto(model, doc).encode_to_vec();
    std::fs::write(path, bytes).map_err(TrainError::io(path))
}

fn floats(t: &TensorProto) -> Vec<f32> {
    if !t.float_data.is_empty() {
        return t.float_data.clone();
    }
    t.raw_data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Reads a model written by [`write`] back into a [`LinearModel`] (float32 weights).
pub fn read(path: &Path) -> Result<LinearModel, TrainError> {
    let bytes = std::fs::read(path).map_err(TrainError::io(path))?;
    let proto =
        ModelProto::decode(bytes.as_slice()).map_err(|e| TrainError::Onnx(e.to_string()))?;
    let graph = proto
        .graph
        .ok_or_else(|| TrainError::Onnx("no graph".into()))?;
    let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
    if ops != ["Gemm", "Sigmoid"] {
        return Err(TrainError::Onnx(format!(
            "not a signalbox linear router: ops {ops:?}"
        )));
    }
    let find = |name: &str| {
        graph
            .initializer
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| TrainError::Onnx(format!("initializer {name} missing")))
    };
    let w = find(WEIGHTS)?;
    let b = find(BIAS)?;
    let (d, m) = match w.dims.as_slice() {
        [d, m] => (*d as usize, *m as usize),
        other => return Err(TrainError::Onnx(format!("W has dims {other:?}"))),
    };
    let wf = floats(w);
    let bf = floats(b);
    if wf.len() != d * m || bf.len() != m {
        return Err(TrainError::Onnx(
            "initializer sizes do not match dims".into(),
        ));
    }
    let models: Vec<String> = proto
        .metadata_props
        .iter()
        .find(|p| p.key == "models")
        .map(|p| p.value.lines().map(str::to_string).collect())
        .unwrap_or_default();
    if models.len() != m {
        return Err(TrainError::Onnx(
            "metadata `models` does not match W".into(),
        ));
    }
    let weights = (0..m)
        .map(|k| (0..d).map(|j| f64::from(wf[j * m + k])).collect())
        .collect();
    Ok(LinearModel {
        models,
        dim: d,
        weights,
        bias: bf.iter().map(|&v| f64::from(v)).collect(),
    })
}
