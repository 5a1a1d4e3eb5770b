//! PMML 4.4 export: a `RegressionModel` (linear kinds; logistic regression as a classification
//! `RegressionModel`, `logit` for two classes, `softmax` for more) or a `MiningModel` of
//! `TreeModel` segments (trees; a forest classifier averages the leaves' `ScoreDistribution`s, a
//! boosted classifier is a `modelChain`: a summing `MiningModel` per output, then a
//! classification `RegressionModel` on their scores), with the preprocessing as PMML
//! transformations:
//!
//! * imputation: `MiningField missingValueReplacement` (none under the `reject` rule, so a
//!   missing value gives a missing prediction);
//! * standardisation: a `NormContinuous` derived field `std(<column>)` (two `LinearNorm` points);
//! * one-hot: a `NormDiscrete` derived field `<column>=<category>` per category; an unseen
//!   category is valid (`invalidValueTreatment="asIs"`) and matches none, so all zeros;
//! * the missing-value tokens are `Value property="missing"` of each categorical `DataField`.
//!
//! Numbers are written in Rust's shortest round-trip form, so a float64 evaluator reads the
//! exact coefficients and thresholds.

use std::fmt::Write;

use crate::artifact::Artifact;
use crate::error::{Error, Result};
use crate::features::{Preprocessing, MISSING_CATEGORY};
use crate::model::Fit;
use crate::params::{CategoricalRule, NumericRule};
use crate::trees::{Combine, Ensemble, Tree};
use crate::util::escape::esc;

/// A double in its shortest round-trip form.
fn num(v: f64) -> String {
    format!("{v:?}")
}

/// The name of design column `j` as PMML sees it: a raw numeric field, `std(<name>)`, or
/// `<column>=<category>`.
fn design_fields(prep: &Preprocessing) -> Vec<String> {
    let mut v: Vec<String> = prep
        .numeric
        .iter()
        .map(|f| if scaled(f.center, f.scale) { format!("std({})", f.name) } else { f.name.clone() })
        .collect();
    for f in &prep.categorical {
        v.extend(f.categories.iter().map(|c| format!("{}={c}", f.name)));
    }
    v
}

fn scaled(center: f64, scale: f64) -> bool {
    center != 0.0 || scale != 1.0
}

fn mining_schema(s: &mut String, prep: &Preprocessing, target: Option<&str>, indent: &str) {
    let _ = writeln!(s, "{indent}<MiningSchema>");
    for f in &prep.numeric {
        let replace = match (f.missing, f.impute) {
            (NumericRule::Reject, _) | (_, None) => String::new(),
            (_, Some(v)) => format!(" missingValueReplacement=\"{}\"", num(v)),
        };
        let _ =
            writeln!(s, "{indent}  <MiningField name=\"{}\"{replace} invalidValueTreatment=\"asIs\"/>", esc(&f.name));
    }
    for f in &prep.categorical {
        let replace = if f.missing == CategoricalRule::Reject {
            String::new()
        } else {
            format!(" missingValueReplacement=\"{MISSING_CATEGORY}\"")
        };
        let _ =
            writeln!(s, "{indent}  <MiningField name=\"{}\"{replace} invalidValueTreatment=\"asIs\"/>", esc(&f.name));
    }
    if let Some(t) = target {
        let _ = writeln!(s, "{indent}  <MiningField name=\"{}\" usageType=\"target\"/>", esc(t));
    }
    let _ = writeln!(s, "{indent}</MiningSchema>");
}

/// The PMML document of an artifact.
pub fn export(a: &Artifact) -> Result<Vec<u8>> {
    let prep = &a.preprocessing;
    let target = &a.input_schema.target;
    let mut s = String::new();
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s.push_str("<PMML xmlns=\"http://www.dmg.org/PMML-4_4\" version=\"4.4\">\n");
    let _ = writeln!(
        s,
        "  <Header description=\"{} {} ({})\">\n    <Application name=\"modelcast\" version=\"{}\"/>\n    <Timestamp>{}</Timestamp>\n  </Header>",
        esc(&a.model_name),
        esc(&a.version),
        esc(&a.estimator.kind),
        env!("CARGO_PKG_VERSION"),
        a.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let fields = prep.numeric.len() + prep.categorical.len() + 1;
    let _ = writeln!(s, "  <DataDictionary numberOfFields=\"{fields}\">");
    for f in &prep.numeric {
        let _ = writeln!(s, "    <DataField name=\"{}\" optype=\"continuous\" dataType=\"double\"/>", esc(&f.name));
    }
    for f in &prep.categorical {
        let _ = writeln!(s, "    <DataField name=\"{}\" optype=\"categorical\" dataType=\"string\">", esc(&f.name));
        for t in prep.missing_tokens.iter().filter(|t| !f.categories.contains(t)) {
            let _ = writeln!(s, "      <Value value=\"{}\" property=\"missing\"/>", esc(t));
        }
        let _ = writeln!(s, "    </DataField>");
    }
    let classes = a.estimator.fit.classes();
    let custom = |c: &&dyn crate::model::Classifier| c.classes().len() == 2 && c.threshold() != 0.5;
    if let Some(c) = a.estimator.fit.classifier().filter(custom) {
        return Err(Error::Usage(format!(
            "PMML labels the most probable class, and this model predicts class 1 from a probability of {}; \
             export it as ONNX, which applies the threshold",
            c.threshold()
        )));
    }
    if classes.is_empty() {
        let _ = writeln!(s, "    <DataField name=\"{}\" optype=\"continuous\" dataType=\"double\"/>", esc(target));
    } else {
        let _ = writeln!(s, "    <DataField name=\"{}\" optype=\"categorical\" dataType=\"string\">", esc(target));
        for c in classes {
            let _ = writeln!(s, "      <Value value=\"{}\"/>", esc(c));
        }
        let _ = writeln!(s, "    </DataField>");
    }
    s.push_str("  </DataDictionary>\n  <TransformationDictionary>\n");
    for f in prep.numeric.iter().filter(|f| scaled(f.center, f.scale)) {
        let _ = writeln!(
            s,
            "    <DerivedField name=\"std({n})\" optype=\"continuous\" dataType=\"double\">\n      \
             <NormContinuous field=\"{n}\" outliers=\"asIs\">\n        <LinearNorm orig=\"{c}\" norm=\"0\"/>\n        \
             <LinearNorm orig=\"{c1}\" norm=\"1\"/>\n      </NormContinuous>\n    </DerivedField>",
            n = esc(&f.name),
            c = num(f.center),
            c1 = num(f.center + f.scale),
        );
    }
    for f in &prep.categorical {
        for c in &f.categories {
            let _ = writeln!(
                s,
                "    <DerivedField name=\"{n}={v}\" optype=\"continuous\" dataType=\"double\">\n      \
                 <NormDiscrete field=\"{n}\" value=\"{v}\"/>\n    </DerivedField>",
                n = esc(&f.name),
                v = esc(c)
            );
        }
    }
    s.push_str("  </TransformationDictionary>\n");
    let names = design_fields(prep);
    let output = if classes.is_empty() {
        "    <Output>\n      <OutputField name=\"prediction\" optype=\"continuous\" dataType=\"double\" \
         feature=\"predictedValue\"/>\n    </Output>\n"
            .to_string()
    } else {
        class_output(classes)
    };
    let output = output.as_str();
    match &a.estimator.fit {
        Fit::Linear(l) => {
            let _ = writeln!(s, "  <RegressionModel functionName=\"regression\" modelName=\"{}\">", esc(&a.model_name));
            mining_schema(&mut s, prep, Some(target), "    ");
            s.push_str(output);
            let _ = writeln!(s, "    <RegressionTable intercept=\"{}\">", num(l.intercept));
            for (n, c) in names.iter().zip(&l.coefficients) {
                let _ = writeln!(
                    s,
                    "      <NumericPredictor name=\"{}\" exponent=\"1\" coefficient=\"{}\"/>",
                    esc(n),
                    num(*c)
                );
            }
            s.push_str("    </RegressionTable>\n  </RegressionModel>\n");
        }
        Fit::Trees(t) => mining_model(&mut s, a, &t.trees, &names, output),
        Fit::Logistic(l) => {
            let binary = l.classes.len() == 2;
            let method = if binary { "logit" } else { "softmax" };
            let _ = writeln!(
                s,
                "  <RegressionModel functionName=\"classification\" normalizationMethod=\"{method}\" modelName=\"{}\">",
                esc(&a.model_name)
            );
            mining_schema(&mut s, prep, Some(target), "    ");
            s.push_str(output);
            // two classes: class 1's logit first, then class 0 as the rest (1 - p); more: a
            // table per class, softmax
            let tables: Vec<(&String, usize)> =
                if binary { vec![(&l.classes[1], 0)] } else { l.classes.iter().zip(0..).collect() };
            for (class, r) in tables {
                let _ = writeln!(
                    s,
                    "    <RegressionTable intercept=\"{}\" targetCategory=\"{}\">",
                    num(l.intercepts[r]),
                    esc(class)
                );
                for (n, c) in names.iter().zip(&l.coefficient_rows[r]) {
                    let _ = writeln!(
                        s,
                        "      <NumericPredictor name=\"{}\" exponent=\"1\" coefficient=\"{}\"/>",
                        esc(n),
                        num(*c)
                    );
                }
                s.push_str("    </RegressionTable>\n");
            }
            if binary {
                let _ =
                    writeln!(s, "    <RegressionTable intercept=\"0.0\" targetCategory=\"{}\"/>", esc(&l.classes[0]));
            }
            s.push_str("  </RegressionModel>\n");
        }
        Fit::TreeClassifier(t) => match t.trees.combine {
            Combine::Average => forest_classifier(&mut s, a, &t.trees, &t.classes, &names, output),
            Combine::Sum => boosting_classifier(&mut s, a, &t.trees, &t.classes, &names, output),
        },
    }
    s.push_str("</PMML>\n");
    Ok(s.into_bytes())
}

fn mining_model(s: &mut String, a: &Artifact, e: &Ensemble, names: &[String], output: &str) {
    let prep = &a.preprocessing;
    let _ = writeln!(s, "  <MiningModel functionName=\"regression\" modelName=\"{}\">", esc(&a.model_name));
    mining_schema(s, prep, Some(&a.input_schema.target), "    ");
    s.push_str(output);
    let method = match e.combine {
        Combine::Average => "average",
        Combine::Sum => "sum",
    };
    let _ = writeln!(s, "    <Segmentation multipleModelMethod=\"{method}\">");
    let segment = |s: &mut String, id: &str, body: &dyn Fn(&mut String)| {
        let _ = writeln!(s, "      <Segment id=\"{id}\">\n        <True/>");
        s.push_str(
            "        <TreeModel functionName=\"regression\" splitCharacteristic=\"binarySplit\" \
             missingValueStrategy=\"none\" noTrueChildStrategy=\"returnLastPrediction\">\n",
        );
        mining_schema(s, prep, None, "          ");
        body(s);
        s.push_str("        </TreeModel>\n      </Segment>\n");
    };
    for (k, t) in e.trees.iter().enumerate() {
        segment(s, &(k + 1).to_string(), &|s| tree_nodes(s, t, names, 0, None, 10));
    }
    if e.combine == Combine::Sum && e.base != 0.0 {
        // the starting value (the training mean) as one more constant tree
        segment(s, "base", &|s| {
            let _ = writeln!(s, "          <Node score=\"{}\">\n            <True/>\n          </Node>", num(e.base));
        });
    }
    s.push_str("    </Segmentation>\n  </MiningModel>\n");
}

/// Node `i` of `t` and its subtree, reached by `pred` (`None`: the root) where `pred` is the
/// parent and whether this is its left (`<=`) child. Recursion depth is the tree's depth.
fn tree_nodes(s: &mut String, t: &Tree, names: &[String], i: usize, pred: Option<(usize, bool)>, indent: usize) {
    tree_nodes_with(s, t, names, i, pred, indent, &|_, i, _| format!(" score=\"{}\"", num(t.value[i])));
}

/// What a node of a tree writes: its attributes after `<Node` (given the node and the padding of
/// its children, it may also append the elements that follow its predicate to `s`).
type NodeBody<'a> = dyn Fn(&mut String, usize, &str) -> String + 'a;

fn tree_nodes_with(
    s: &mut String,
    t: &Tree,
    names: &[String],
    i: usize,
    pred: Option<(usize, bool)>,
    indent: usize,
    body: &NodeBody<'_>,
) {
    let pad = " ".repeat(indent);
    let mut inner = String::new();
    let attrs = body(&mut inner, i, &format!("{pad}  "));
    let _ = writeln!(s, "{pad}<Node{attrs}>");
    match pred {
        None => {
            let _ = writeln!(s, "{pad}  <True/>");
        }
        Some((parent, left)) => {
            // float64 `<` at the midpoint to the next float32 = modelcast's float32 `<=`
            let op = if left { "lessThan" } else { "greaterOrEqual" };
            let _ = writeln!(
                s,
                "{pad}  <SimplePredicate field=\"{}\" operator=\"{op}\" value=\"{}\"/>",
                esc(&names[t.feature[parent] as usize]),
                num(crate::trees::pmml_threshold(t.threshold[parent]))
            );
        }
    }
    s.push_str(&inner);
    if !t.is_leaf(i) {
        tree_nodes_with(s, t, names, t.left[i] as usize, Some((i, true)), indent + 2, body);
        tree_nodes_with(s, t, names, t.right[i] as usize, Some((i, false)), indent + 2, body);
    }
    let _ = writeln!(s, "{pad}</Node>");
}

/// The output fields of a classifier: `label` (the predicted class), `probability(<class>)` per
/// class, and `prediction` (class 1's probability of two, else the predicted class's), as
/// modelcast's prediction message.
fn class_output(classes: &[String]) -> String {
    let mut o = String::from("    <Output>\n");
    o.push_str(
        "      <OutputField name=\"label\" optype=\"categorical\" dataType=\"string\" feature=\"predictedValue\"/>\n",
    );
    for c in classes {
        let _ = writeln!(
            o,
            "      <OutputField name=\"probability({c})\" optype=\"continuous\" dataType=\"double\" \
             feature=\"probability\" value=\"{c}\"/>",
            c = esc(c)
        );
    }
    let value = if classes.len() == 2 { format!(" value=\"{}\"", esc(&classes[1])) } else { String::new() };
    let _ = writeln!(
        o,
        "      <OutputField name=\"prediction\" optype=\"continuous\" dataType=\"double\" feature=\"probability\"{value}/>"
    );
    o.push_str("    </Output>\n");
    o
}

/// A forest classifier: the trees' class distributions averaged (`ScoreDistribution` at each
/// leaf: class 1's frequency and its complement for two classes, the frequencies for more).
fn forest_classifier(s: &mut String, a: &Artifact, e: &Ensemble, classes: &[String], names: &[String], output: &str) {
    let prep = &a.preprocessing;
    let _ = writeln!(s, "  <MiningModel functionName=\"classification\" modelName=\"{}\">", esc(&a.model_name));
    mining_schema(s, prep, Some(&a.input_schema.target), "    ");
    s.push_str(output);
    s.push_str("    <Segmentation multipleModelMethod=\"average\">\n");
    let k = e.outputs;
    for (n, t) in e.trees.iter().enumerate() {
        let _ = writeln!(s, "      <Segment id=\"{}\">\n        <True/>", n + 1);
        s.push_str(
            "        <TreeModel functionName=\"classification\" splitCharacteristic=\"binarySplit\" \
             missingValueStrategy=\"none\" noTrueChildStrategy=\"returnLastPrediction\">\n",
        );
        mining_schema(s, prep, Some(&a.input_schema.target), "          ");
        tree_nodes_with(s, t, names, 0, None, 10, &|inner, i, pad| {
            if !t.is_leaf(i) {
                return String::new();
            }
            let probs: Vec<f64> = if k == 1 {
                let p1 = e.base + t.value[i];
                vec![1.0 - p1, p1]
            } else {
                t.value[i * k..(i + 1) * k].to_vec()
            };
            let best = crate::model::logistic::decide(&probs, 0.5);
            for (c, p) in classes.iter().zip(&probs) {
                let _ = writeln!(
                    inner,
                    "{pad}<ScoreDistribution value=\"{}\" recordCount=\"{p}\" probability=\"{p}\"/>",
                    esc(c),
                    p = num(*p)
                );
            }
            format!(" score=\"{}\"", esc(&classes[best]))
        });
        s.push_str("        </TreeModel>\n      </Segment>\n");
    }
    s.push_str("    </Segmentation>\n  </MiningModel>\n");
}

/// A boosted classifier as a model chain: per output a regression `MiningModel` summing its trees
/// and its base into `score(<j>)`, then a classification `RegressionModel` on those scores
/// (`logit` of class 1's score for two classes, `softmax` over one score per class for more).
fn boosting_classifier(s: &mut String, a: &Artifact, e: &Ensemble, classes: &[String], names: &[String], output: &str) {
    let prep = &a.preprocessing;
    let k = e.outputs;
    let _ = writeln!(s, "  <MiningModel functionName=\"classification\" modelName=\"{}\">", esc(&a.model_name));
    mining_schema(s, prep, Some(&a.input_schema.target), "    ");
    s.push_str(output);
    s.push_str("    <Segmentation multipleModelMethod=\"modelChain\">\n");
    for j in 0..k {
        let base = if k == 1 { e.base } else { e.bases[j] };
        let _ = writeln!(s, "      <Segment id=\"score{j}\">\n        <True/>");
        s.push_str("        <MiningModel functionName=\"regression\">\n");
        mining_schema(s, prep, None, "          ");
        let _ = writeln!(
            s,
            "          <Output>\n            <OutputField name=\"score({j})\" optype=\"continuous\" dataType=\"double\" \
             feature=\"predictedValue\"/>\n          </Output>"
        );
        s.push_str("          <Segmentation multipleModelMethod=\"sum\">\n");
        for (n, t) in e.trees.iter().enumerate().filter(|(n, _)| n % k == j) {
            let _ = writeln!(s, "            <Segment id=\"{}\">\n              <True/>", n + 1);
            s.push_str(
                "              <TreeModel functionName=\"regression\" splitCharacteristic=\"binarySplit\" \
                 missingValueStrategy=\"none\" noTrueChildStrategy=\"returnLastPrediction\">\n",
            );
            mining_schema(s, prep, None, "                ");
            tree_nodes(s, t, names, 0, None, 16);
            s.push_str("              </TreeModel>\n            </Segment>\n");
        }
        let _ = writeln!(
            s,
            "            <Segment id=\"base{j}\">\n              <True/>\n              <TreeModel functionName=\"regression\">\n"
        );
        mining_schema(s, prep, None, "                ");
        let _ = writeln!(
            s,
            "                <Node score=\"{}\">\n                  <True/>\n                </Node>\n              </TreeModel>\n            </Segment>",
            num(base)
        );
        s.push_str("          </Segmentation>\n        </MiningModel>\n      </Segment>\n");
    }
    let binary = k == 1;
    let method = if binary { "logit" } else { "softmax" };
    s.push_str("      <Segment id=\"classes\">\n        <True/>\n");
    let _ = writeln!(s, "        <RegressionModel functionName=\"classification\" normalizationMethod=\"{method}\">");
    s.push_str("          <MiningSchema>\n");
    for j in 0..k {
        let _ = writeln!(s, "            <MiningField name=\"score({j})\"/>");
    }
    let _ = writeln!(s, "            <MiningField name=\"{}\" usageType=\"target\"/>", esc(&a.input_schema.target));
    s.push_str("          </MiningSchema>\n");
    let tables: Vec<(&String, usize)> = if binary { vec![(&classes[1], 0)] } else { classes.iter().zip(0..).collect() };
    for (class, j) in tables {
        let _ = writeln!(
            s,
            "          <RegressionTable intercept=\"0.0\" targetCategory=\"{}\">\n            \
             <NumericPredictor name=\"score({j})\" exponent=\"1\" coefficient=\"1.0\"/>\n          </RegressionTable>",
            esc(class)
        );
    }
    if binary {
        let _ = writeln!(s, "          <RegressionTable intercept=\"0.0\" targetCategory=\"{}\"/>", esc(&classes[0]));
    }
    s.push_str("        </RegressionModel>\n      </Segment>\n    </Segmentation>\n  </MiningModel>\n");
}
