//! ONNX graphs built in tests with `tract_onnx::pb` (the service's own protobuf types), shared
//! by the scorer suite (`tests/inference.rs`) and the learned-router tests (`tests/learned.rs`).
#![allow(dead_code)]

use prost::Message;
use tract_onnx::pb;

const FLOAT: i32 = pb::tensor_proto::DataType::Float as i32;

/// One tensor dimension: a fixed size or a named (dynamic) one.
#[derive(Clone, Copy, Debug)]
pub enum Dim {
    Fixed(i64),
    Symbolic(&'static str),
}

pub fn value_info(name: &str, dims: &[Dim]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            denotation: String::new(),
            value: Some(match *d {
                Dim::Fixed(n) => Value::DimValue(n),
                Dim::Symbolic(s) => Value::DimParam(s.to_owned()),
            }),
        })
        .collect();
    pb::ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: FLOAT,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
        }),
        doc_string: String::new(),
    }
}

pub fn initializer(name: &str, dims: &[i64], values: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.to_owned(),
        dims: dims.to_vec(),
        data_type: FLOAT,
        float_data: values.to_vec(),
        ..Default::default()
    }
}

pub fn node(op: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.to_owned(),
        name: format!("{op}_{output}"),
        input: inputs.iter().map(|s| (*s).to_owned()).collect(),
        output: vec![output.to_owned()],
        ..Default::default()
    }
}

/// A model (IR 8, opset 13) around `graph`, serialized.
pub fn encode(graph: pb::GraphProto) -> Vec<u8> {
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "signalbox-tests".to_owned(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// `output = Sigmoid(features · W + b)` with `W` row-major `[d, k]`; `batch` is the first
/// dimension of input and output.
pub fn linear_sigmoid(w: &[f32], b: &[f32], d: usize, batch: Dim, output: &str) -> Vec<u8> {
    let k = b.len();
    assert_eq!(w.len(), d * k, "W must be [d, k]");
    let (d, k) = (d as i64, k as i64);
    encode(pb::GraphProto {
        name: "routing".to_owned(),
        node: vec![
            node("Gemm", &["features", "W", "B"], "logits"),
            node("Sigmoid", &["logits"], output),
        ],
        initializer: vec![initializer("W", &[d, k], w), initializer("B", &[k], b)],
        input: vec![value_info("features", &[batch, Dim::Fixed(d)])],
        output: vec![value_info(output, &[batch, Dim::Fixed(k)])],
        ..Default::default()
    })
}
