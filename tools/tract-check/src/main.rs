//! `tract-check MODEL.onnx INPUT.json`: run a modelcast ONNX export in tract and print the
//! predictions as a JSON array. INPUT.json is `{"numeric": [[f32...]...], "categorical":
//! [[string...]...]}` (either may be absent or empty, as the model's inputs are). Used by
//! modelcast's export parity test; `null` stands for NaN.
use std::error::Error;

use tract_onnx::prelude::*;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        return Err("usage: tract-check MODEL.onnx INPUT.json".into());
    }
    let input: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&args[2])?)?;
    let rows = |k: &str| input.get(k).and_then(|v| v.as_array()).cloned().unwrap_or_default();
    let (num, cat) = (rows("numeric"), rows("categorical"));
    let mut model = tract_onnx::onnx().model_for_path(&args[1])?;
    let mut inputs: TVec<TValue> = tvec!();
    let mut slot = 0;
    if num.first().and_then(|r| r.as_array()).is_some_and(|r| !r.is_empty()) {
        let k = num[0].as_array().map_or(0, |r| r.len());
        let data: Vec<f32> = num
            .iter()
            .flat_map(|r| r.as_array().cloned().unwrap_or_default())
            .map(|v| v.as_f64().map_or(f32::NAN, |v| v as f32))
            .collect();
        let t: Tensor = tract_ndarray::Array2::from_shape_vec((num.len(), k), data)?.into();
        model.set_input_fact(slot, f32::fact([num.len(), k]).into())?;
        inputs.push(t.into());
        slot += 1;
    }
    if cat.first().and_then(|r| r.as_array()).is_some_and(|r| !r.is_empty()) {
        let c = cat[0].as_array().map_or(0, |r| r.len());
        let data: Vec<String> = cat
            .iter()
            .flat_map(|r| r.as_array().cloned().unwrap_or_default())
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect();
        let t: Tensor = tract_ndarray::Array2::from_shape_vec((cat.len(), c), data)?.into();
        model.set_input_fact(slot, String::fact([cat.len(), c]).into())?;
        inputs.push(t.into());
    }
    let plan = model.into_optimized()?.into_runnable()?;
    let out = plan.run(inputs)?;
    let preds: Vec<Option<f64>> = out[0]
        .to_plain_array_view::<f32>()?
        .iter()
        .map(|&v| if v.is_nan() { None } else { Some(v as f64) })
        .collect();
    println!("{}", serde_json::to_string(&preds)?);
    Ok(())
}
