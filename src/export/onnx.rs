//! ONNX export: the whole pipeline as one graph (opset 17 plus `ai.onnx.ml` 3), encoded with
//! prost from the few `onnx.proto` messages it needs (hand-derived below; field numbers as in
//! onnx/onnx.proto).
//!
//! Inputs (each present only when the model has such columns):
//! * `numeric`: float32 `[N, k]` (float64 in a [`Precision::Float64`] graph), the numeric
//!   columns in the artifact's order; missing is NaN.
//! * `categorical`: string `[N, c]`, the categorical columns in order; a missing-value token
//!   (e.g. `""`, `"NA"`) is missing; strings are matched exactly (trim them first).
//!
//! Output `prediction`: float32 `[N, 1]`. A classifier has three: `prediction` (class 1's
//! probability of two, else the predicted class's, as modelcast's `prediction` field), `label`
//! (string `[N, 1]`, the predicted class) and `probabilities` (float32 `[N, K]`, in the
//! artifact's class order).
//!
//! Graph: `IsNaN` + `Where` (impute), `Sub` + `Div` (standardise), per categorical column
//! `Gather` (the column) → `CategoryMapper` (category → row) → `Gather` from a table that is
//! the identity plus a zero row (unseen categories) and a NaN row (missing under the `reject`
//! rule), `Concat`, then `MatMul` + `Add` (linear kinds: the portable graph, which onnxruntime
//! and tract run) or `TreeEnsembleRegressor` (trees; onnxruntime). A row that modelcast would
//! reject gives NaN for linear kinds and is undefined for trees. A classifier's scores (the same
//! nodes, one column per coefficient row or ensemble output) become probabilities with the
//! standard operators modelcast's own arithmetic uses (`Sigmoid`, `Softmax`, `Clip`), and its
//! label by `GreaterOrEqual` against the stored threshold (two classes) or `ArgMax` (first
//! maximum), then `Gather` from the class names. Trees are never `TreeEnsembleClassifier`,
//! whose post-transforms and binary special case differ between runtimes.

use prost::Message;

use crate::artifact::Artifact;
use crate::error::{Error, Result};
use crate::features::MISSING_CATEGORY;
use crate::model::Fit;
use crate::params::CategoricalRule;
use crate::trees::Combine;

/// IR version 8 goes with opset 17.
const IR_VERSION: i64 = 8;
/// The default-domain opset.
pub const OPSET: i64 = 17;
/// The `ai.onnx.ml` opset.
pub const ML_OPSET: i64 = 3;
const ML: &str = "ai.onnx.ml";

const FLOAT: i32 = 1;
const INT64: i32 = 7;
const STRING: i32 = 8;
const DOUBLE: i32 = 11;

/// The graph's real numbers: float32 (every runtime, and exact for trees) or float64 (a linear
/// model whose predictions are small differences of large terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// float32 inputs, weights and outputs.
    Float32,
    /// float64 inputs, weights and outputs (linear kinds and logistic regression).
    Float64,
}

impl Precision {
    fn elem(self) -> i32 {
        match self {
            Precision::Float32 => FLOAT,
            Precision::Float64 => DOUBLE,
        }
    }

    /// A constant of this precision.
    fn tensor(self, name: &str, dims: &[i64], data: impl IntoIterator<Item = f64>) -> TensorProto {
        match self {
            Precision::Float32 => floats(name, dims, data.into_iter().map(|v| v as f32).collect()),
            Precision::Float64 => TensorProto {
                dims: dims.to_vec(),
                data_type: DOUBLE,
                double_data: data.into_iter().collect(),
                name: name.into(),
                ..Default::default()
            },
        }
    }
}

/// `onnx.ModelProto` (the fields used).
#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    /// IR version.
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// Producer.
    #[prost(string, tag = "2")]
    pub producer_name: String,
    /// Producer version.
    #[prost(string, tag = "3")]
    pub producer_version: String,
    /// Model version.
    #[prost(int64, tag = "5")]
    pub model_version: i64,
    /// Description.
    #[prost(string, tag = "6")]
    pub doc_string: String,
    /// The graph.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// Opsets.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Key-value metadata.
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// `onnx.OperatorSetIdProto`.
#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    /// Domain ("" is the default).
    #[prost(string, tag = "1")]
    pub domain: String,
    /// Version.
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// `onnx.StringStringEntryProto`.
#[derive(Clone, PartialEq, Message)]
pub struct StringStringEntryProto {
    /// Key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `onnx.GraphProto`.
#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    /// Nodes, in topological order.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// Name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Constants.
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Description.
    #[prost(string, tag = "10")]
    pub doc_string: String,
    /// Inputs.
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Outputs.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

/// `onnx.NodeProto`.
#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    /// Input names.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Output names.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Node name.
    #[prost(string, tag = "3")]
    pub name: String,
    /// Operator.
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// Attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// Operator domain.
    #[prost(string, tag = "7")]
    pub domain: String,
}

/// `onnx.AttributeProto`.
#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// FLOAT.
    #[prost(float, tag = "2")]
    pub f: f32,
    /// INT.
    #[prost(int64, tag = "3")]
    pub i: i64,
    /// STRING.
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    /// FLOATS.
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    /// INTS.
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    /// STRINGS.
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    /// The attribute's type (`AttributeProto.AttributeType`).
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

/// `onnx.TensorProto` (dense data only).
#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    /// Shape.
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    /// Element type (`TensorProto.DataType`).
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    /// FLOAT data.
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// STRING data.
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub string_data: Vec<Vec<u8>>,
    /// INT64 data.
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    /// Name.
    #[prost(string, tag = "8")]
    pub name: String,
    /// DOUBLE data.
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
}

/// `onnx.ValueInfoProto`.
#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Type.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    /// Description.
    #[prost(string, tag = "3")]
    pub doc_string: String,
}

/// `onnx.TypeProto` (tensors only).
#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    /// The tensor type.
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
}

/// `onnx.TypeProto.Tensor`.
#[derive(Clone, PartialEq, Message)]
pub struct TensorTypeProto {
    /// Element type.
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    /// Shape.
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// `onnx.TensorShapeProto`.
#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    /// Dimensions.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// `onnx.TensorShapeProto.Dimension`.
#[derive(Clone, PartialEq, Message)]
pub struct Dimension {
    /// A fixed size.
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    /// A named, free size.
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

fn tensor_info(name: &str, elem_type: i32, dims: &[Option<i64>], doc: &str) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Some(v) => Dimension { dim_value: Some(*v), dim_param: None },
            None => Dimension { dim_value: None, dim_param: Some("N".into()) },
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto { elem_type, shape: Some(TensorShapeProto { dim }) }),
        }),
        doc_string: doc.into(),
    }
}

fn floats(name: &str, dims: &[i64], data: Vec<f32>) -> TensorProto {
    TensorProto { dims: dims.to_vec(), data_type: FLOAT, float_data: data, name: name.into(), ..Default::default() }
}

fn int64s(name: &str, dims: &[i64], data: Vec<i64>) -> TensorProto {
    TensorProto { dims: dims.to_vec(), data_type: INT64, int64_data: data, name: name.into(), ..Default::default() }
}

/// Attribute constructors (type codes from `AttributeProto.AttributeType`).
fn attr_i(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i, r#type: 2, ..Default::default() }
}
fn attr_s(name: &str, s: &str) -> AttributeProto {
    AttributeProto { name: name.into(), s: s.as_bytes().to_vec(), r#type: 3, ..Default::default() }
}
fn attr_floats(name: &str, floats: Vec<f32>) -> AttributeProto {
    AttributeProto { name: name.into(), floats, r#type: 6, ..Default::default() }
}
fn attr_ints(name: &str, ints: Vec<i64>) -> AttributeProto {
    AttributeProto { name: name.into(), ints, r#type: 7, ..Default::default() }
}
fn attr_strings(name: &str, strings: Vec<Vec<u8>>) -> AttributeProto {
    AttributeProto { name: name.into(), strings, r#type: 8, ..Default::default() }
}

fn node(op: &str, domain: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: format!("{op}_{output}"),
        op_type: op.into(),
        attribute,
        domain: domain.into(),
    }
}

/// The ONNX model of an artifact, encoded, in float32 or (linear kinds) float64.
pub fn export(a: &Artifact, precision: Precision) -> Result<Vec<u8>> {
    if precision == Precision::Float64 && matches!(a.estimator.fit, Fit::Trees(_) | Fit::TreeClassifier(_)) {
        return Err(Error::Usage(format!(
            "a float64 ONNX graph is for linear models and logistic regression; {} thresholds are float32, \
             so its float32 graph is exact already",
            a.estimator.kind
        )));
    }
    let real = precision;
    let prep = &a.preprocessing;
    let (k, c) = (prep.numeric.len(), prep.categorical.len());
    let mut g = GraphProto { name: a.model_name.clone(), ..Default::default() };
    let mut blocks: Vec<String> = Vec::new();
    if k > 0 {
        let k64 = k as i64;
        g.input.push(tensor_info(
            "numeric",
            real.elem(),
            &[None, Some(k64)],
            &format!(
                "numeric columns, missing = NaN: {}",
                prep.numeric.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        ));
        let impute = prep.numeric.iter().map(|f| f.impute.unwrap_or(f64::NAN));
        g.initializer.push(real.tensor("impute", &[k64], impute));
        g.initializer.push(real.tensor("center", &[k64], prep.numeric.iter().map(|f| f.center)));
        g.initializer.push(real.tensor("scale", &[k64], prep.numeric.iter().map(|f| f.scale)));
        g.node.push(node("IsNaN", "", &["numeric"], "numeric_isnan", vec![]));
        g.node.push(node("Where", "", &["numeric_isnan", "impute", "numeric"], "numeric_imputed", vec![]));
        g.node.push(node("Sub", "", &["numeric_imputed", "center"], "numeric_centered", vec![]));
        g.node.push(node("Div", "", &["numeric_centered", "scale"], "numeric_scaled", vec![]));
        blocks.push("numeric_scaled".into());
    }
    if c > 0 {
        g.input.push(tensor_info(
            "categorical",
            STRING,
            &[None, Some(c as i64)],
            &format!(
                "categorical columns, missing = a missing-value token: {}",
                prep.categorical.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    for (j, f) in prep.categorical.iter().enumerate() {
        let m = f.categories.len();
        let (zero_row, nan_row) = (m as i64, m as i64 + 1);
        let missing_row = match (f.missing, f.categories.iter().position(|x| x == MISSING_CATEGORY)) {
            (CategoricalRule::Reject, _) => nan_row,
            (_, Some(p)) => p as i64,
            (_, None) => zero_row,
        };
        let mut strings: Vec<Vec<u8>> = f.categories.iter().map(|s| s.as_bytes().to_vec()).collect();
        let mut ids: Vec<i64> = (0..m as i64).collect();
        for t in &prep.missing_tokens {
            if !f.categories.contains(t) {
                strings.push(t.as_bytes().to_vec());
                ids.push(missing_row);
            }
        }
        let mut table = vec![0f64; (m + 2) * m];
        for i in 0..m {
            table[i * m + i] = 1.0;
        }
        table[(m + 1) * m..].fill(f64::NAN);
        let (col, text, row, onehot) =
            (format!("cat{j}_column"), format!("cat{j}_text"), format!("cat{j}_row"), format!("cat{j}_onehot"));
        g.initializer.push(int64s(&col, &[], vec![j as i64]));
        g.initializer.push(real.tensor(&format!("cat{j}_table"), &[m as i64 + 2, m as i64], table));
        g.node.push(node("Gather", "", &["categorical", &col], &text, vec![attr_i("axis", 1)]));
        g.node.push(node(
            "CategoryMapper",
            ML,
            &[&text],
            &row,
            vec![
                attr_strings("cats_strings", strings),
                attr_ints("cats_int64s", ids),
                attr_i("default_int64", zero_row),
            ],
        ));
        g.node.push(node("Gather", "", &[&format!("cat{j}_table"), &row], &onehot, vec![attr_i("axis", 0)]));
        blocks.push(onehot);
    }
    let design = if blocks.len() == 1 {
        blocks[0].clone()
    } else {
        let inputs: Vec<&str> = blocks.iter().map(String::as_str).collect();
        g.node.push(node("Concat", "", &inputs, "design", vec![attr_i("axis", 1)]));
        "design".to_string()
    };
    let p = prep.width() as i64;
    match &a.estimator.fit {
        Fit::Linear(l) => {
            g.initializer.push(real.tensor("coefficients", &[p, 1], l.coefficients.iter().copied()));
            g.initializer.push(real.tensor("intercept", &[1], [l.intercept]));
            g.node.push(node("MatMul", "", &[&design, "coefficients"], "linear", vec![]));
            g.node.push(node("Add", "", &["linear", "intercept"], "prediction", vec![]));
        }
        Fit::Trees(t) => g.node.push(tree_node(&t.trees, &design, "prediction")),
        Fit::Logistic(l) => {
            let rows = l.coefficient_rows.len() as i64;
            // coefficients as [p, rows]: column r is coefficient row r
            let w = (0..p as usize).flat_map(|j| l.coefficient_rows.iter().map(move |r| r[j]));
            g.initializer.push(real.tensor("coefficients", &[p, rows], w));
            g.initializer.push(real.tensor("intercepts", &[rows], l.intercepts.iter().copied()));
            g.node.push(node("MatMul", "", &[&design, "coefficients"], "linear", vec![]));
            g.node.push(node("Add", "", &["linear", "intercepts"], "scores", vec![]));
            let squash = if l.classes.len() == 2 { Squash::Sigmoid } else { Squash::Softmax };
            classifier_outputs(&mut g, "scores", squash, &l.classes, l.threshold, real);
        }
        Fit::TreeClassifier(t) => {
            let e = &t.trees;
            g.node.push(tree_node(e, &design, "scores"));
            let squash = match (e.combine, e.outputs) {
                (Combine::Average, 1) => Squash::Clip,
                (Combine::Average, _) => Squash::None,
                (Combine::Sum, 1) => Squash::Sigmoid,
                (Combine::Sum, _) => Squash::Softmax,
            };
            classifier_outputs(&mut g, "scores", squash, &t.classes, t.threshold, real);
        }
    }
    let target = &a.input_schema.target;
    match a.estimator.fit.classes() {
        [] => g.output.push(tensor_info("prediction", real.elem(), &[None, Some(1)], &format!("predicted {target}"))),
        classes => {
            let k = classes.len() as i64;
            let names = classes.join(", ");
            let what = if k == 2 { "the probability of class 1" } else { "the predicted class's probability" };
            g.output.push(tensor_info("prediction", real.elem(), &[None, Some(1)], &format!("{what} ({target})")));
            g.output.push(tensor_info("label", STRING, &[None, Some(1)], &format!("the predicted class of {target}")));
            g.output.push(tensor_info("probabilities", real.elem(), &[None, Some(k)], &format!("per class: {names}")));
        }
    }
    let model = ModelProto {
        ir_version: IR_VERSION,
        producer_name: "modelcast".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        model_version: 1,
        doc_string: format!("{} {} ({})", a.model_name, a.version, a.estimator.kind),
        graph: Some(g),
        opset_import: vec![
            OperatorSetIdProto { domain: String::new(), version: OPSET },
            OperatorSetIdProto { domain: ML.into(), version: ML_OPSET },
        ],
        metadata_props: [
            ("modelcast.model_name", a.model_name.as_str()),
            ("modelcast.version", a.version.as_str()),
            ("modelcast.kind", a.estimator.kind.as_str()),
            ("modelcast.target", a.input_schema.target.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| StringStringEntryProto { key: k.into(), value: v.into() })
        .collect(),
    };
    if p == 0 {
        return Err(Error::Model("a model without design columns cannot be exported".into()));
    }
    Ok(model.encode_to_vec())
}

/// How a classifier's raw scores become probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Squash {
    /// One score, class 1's probability already (a forest's mean frequency), clipped to [0, 1].
    Clip,
    /// One score, a logit.
    Sigmoid,
    /// One score per class, probabilities already (a forest's mean frequencies).
    None,
    /// One score per class, logits.
    Softmax,
}

/// The outputs of a classifier from its `scores` ([N, 1] or [N, K]): `probabilities` [N, K],
/// `label` [N, 1] (the class names, by modelcast's rule: class 1 of two when its probability
/// reaches `threshold`, else the first most probable) and `prediction` [N, 1] (what modelcast's
/// `prediction` field holds: class 1's probability of two, else the predicted class's).
fn classifier_outputs(
    g: &mut GraphProto,
    scores: &str,
    squash: Squash,
    classes: &[String],
    threshold: f64,
    real: Precision,
) {
    let names = classes.iter().map(|c| c.as_bytes().to_vec()).collect();
    g.initializer.push(TensorProto {
        dims: vec![classes.len() as i64],
        data_type: STRING,
        string_data: names,
        name: "classes".into(),
        ..Default::default()
    });
    let binary = matches!(squash, Squash::Clip | Squash::Sigmoid);
    if binary {
        match squash {
            Squash::Clip => {
                g.initializer.push(real.tensor("zero", &[], [0.0]));
                g.initializer.push(real.tensor("one_max", &[], [1.0]));
                g.node.push(node("Clip", "", &[scores, "zero", "one_max"], "prediction", vec![]));
            }
            _ => g.node.push(node("Sigmoid", "", &[scores], "prediction", vec![])),
        }
        g.initializer.push(real.tensor("one", &[1], [1.0]));
        g.initializer.push(real.tensor("threshold", &[1], [threshold]));
        g.node.push(node("Sub", "", &["one", "prediction"], "probability0", vec![]));
        g.node.push(node("Concat", "", &["probability0", "prediction"], "probabilities", vec![attr_i("axis", 1)]));
        g.node.push(node("GreaterOrEqual", "", &["prediction", "threshold"], "is_class1", vec![]));
        g.node.push(node("Cast", "", &["is_class1"], "class_index", vec![attr_i("to", INT64 as i64)]));
    } else {
        match squash {
            Squash::Softmax => g.node.push(node("Softmax", "", &[scores], "probabilities", vec![attr_i("axis", 1)])),
            _ => g.node.push(node("Identity", "", &[scores], "probabilities", vec![])),
        }
        g.node.push(node(
            "ArgMax",
            "",
            &["probabilities"],
            "class_index",
            vec![attr_i("axis", 1), attr_i("keepdims", 1), attr_i("select_last_index", 0)],
        ));
        g.node.push(node(
            "GatherElements",
            "",
            &["probabilities", "class_index"],
            "prediction",
            vec![attr_i("axis", 1)],
        ));
    }
    g.node.push(node("Gather", "", &["classes", "class_index"], "label", vec![attr_i("axis", 0)]));
}

/// A `TreeEnsembleRegressor` writing `output` ([N, outputs]): one target per output; a
/// multi-output forest's leaves hold one value per output, a boosted ensemble's tree `i` adds to
/// output `i mod outputs`.
fn tree_node(e: &crate::trees::Ensemble, design: &str, output: &str) -> NodeProto {
    let (mut tree_ids, mut node_ids, mut features, mut modes, mut values, mut trues, mut falses) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut t_trees, mut t_nodes, mut t_ids, mut t_weights) = (vec![], vec![], vec![], vec![]);
    for (ti, t) in e.trees.iter().enumerate() {
        for i in 0..t.len() {
            tree_ids.push(ti as i64);
            node_ids.push(i as i64);
            if t.is_leaf(i) {
                features.push(0);
                modes.push(b"LEAF".to_vec());
                values.push(0.0);
                trues.push(0);
                falses.push(0);
                match (e.combine, e.outputs) {
                    (_, 1) => {
                        t_trees.push(ti as i64);
                        t_nodes.push(i as i64);
                        t_ids.push(0);
                        t_weights.push(t.value[i] as f32);
                    }
                    (Combine::Average, k) => {
                        for j in 0..k {
                            t_trees.push(ti as i64);
                            t_nodes.push(i as i64);
                            t_ids.push(j as i64);
                            t_weights.push(t.value[i * k + j] as f32);
                        }
                    }
                    (Combine::Sum, k) => {
                        t_trees.push(ti as i64);
                        t_nodes.push(i as i64);
                        t_ids.push((ti % k) as i64);
                        t_weights.push(t.value[i] as f32);
                    }
                }
            } else {
                features.push(t.feature[i] as i64);
                modes.push(b"BRANCH_LEQ".to_vec());
                // thresholds are f32-exact by construction (crate::trees)
                values.push(t.threshold[i] as f32);
                trues.push(t.left[i] as i64);
                falses.push(t.right[i] as i64);
            }
        }
    }
    let aggregate = match e.combine {
        Combine::Average => "AVERAGE",
        Combine::Sum => "SUM",
    };
    let bases = match (e.combine, e.outputs) {
        (_, 1) => vec![e.base as f32],
        // a multi-output forest averages its trees' frequencies and adds nothing
        (Combine::Average, k) => vec![0.0; k],
        (Combine::Sum, _) => e.bases.iter().map(|&b| b as f32).collect(),
    };
    node(
        "TreeEnsembleRegressor",
        ML,
        &[design],
        output,
        vec![
            attr_s("aggregate_function", aggregate),
            attr_floats("base_values", bases),
            attr_i("n_targets", e.outputs as i64),
            attr_ints("nodes_falsenodeids", falses),
            attr_ints("nodes_featureids", features),
            attr_strings("nodes_modes", modes),
            attr_ints("nodes_nodeids", node_ids),
            attr_ints("nodes_treeids", tree_ids),
            attr_ints("nodes_truenodeids", trues),
            attr_floats("nodes_values", values),
            attr_s("post_transform", "NONE"),
            attr_ints("target_ids", t_ids),
            attr_ints("target_nodeids", t_nodes),
            attr_ints("target_treeids", t_trees),
            attr_floats("target_weights", t_weights),
        ],
    )
}
