//! PMML 4.4 export: a `RegressionModel` (linear kinds) or a `MiningModel` of `TreeModel`
//! segments (trees), with the preprocessing as PMML transformations:
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
    let _ = writeln!(s, "    <DataField name=\"{}\" optype=\"continuous\" dataType=\"double\"/>", esc(target));
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
    let output = "    <Output>\n      <OutputField name=\"prediction\" optype=\"continuous\" dataType=\"double\" \
                  feature=\"predictedValue\"/>\n    </Output>\n";
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
        Fit::Logistic(_) | Fit::TreeClassifier(_) => {
            return Err(Error::Usage("PMML export of a classifier is not built yet".into()))
        }
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
    let pad = " ".repeat(indent);
    let _ = writeln!(s, "{pad}<Node score=\"{}\">", num(t.value[i]));
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
    if !t.is_leaf(i) {
        tree_nodes(s, t, names, t.left[i] as usize, Some((i, true)), indent + 2);
        tree_nodes(s, t, names, t.right[i] as usize, Some((i, false)), indent + 2);
    }
    let _ = writeln!(s, "{pad}</Node>");
}
