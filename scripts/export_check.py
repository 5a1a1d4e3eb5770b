#!/usr/bin/env python3
"""Score rows with modelcast's exported models in other runtimes (the export parity test).

    export_check.py --artifact MODEL.json --input ROWS.csv [--onnx M.onnx] [--pmml M.pmml]

Reads the column lists and missing-value tokens from the artifact, feeds every row of the CSV to
onnxruntime (float32 tensors `numeric`, `categorical`) and to pypmml (one field per column, float64)
and prints one JSON object: {"onnxruntime": [...], "pypmml": [...]}, a prediction per row (null
where the runtime gives none). For a classifier (the artifact names `classes`) each runtime's
`<runtime>_classes` adds, per row, {"label": ..., "probabilities": [...]} in the artifact's class
order. The comparison with `modelcast predict` is the test's job.

Environment: the test venv (scripts/services.sh installs it: onnxruntime, pypmml, numpy; pypmml
needs a Java runtime).
"""
import argparse
import csv
import json
import math


def load_rows(path, numeric, categorical, tokens):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    num, cat = [], []
    for r in rows:
        num.append([float("nan") if r[c].strip() in tokens else float(r[c]) for c in numeric])
        cat.append([r[c].strip() for c in categorical])
    return num, cat


def number(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def run_onnx(path, num, cat, n_num, n_cat, classes):
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {}
    if n_num:
        # a float64 graph (`modelcast export --float64`) takes doubles
        double = any(i.name == "numeric" and i.type == "tensor(double)" for i in sess.get_inputs())
        dtype = np.float64 if double else np.float32
        feeds["numeric"] = np.array(num, dtype=dtype).reshape(len(num), n_num)
    if n_cat:
        feeds["categorical"] = np.array(cat, dtype=object).reshape(len(cat), n_cat)
    if not classes:
        (out,) = sess.run(["prediction"], feeds)
        return [number(v) for v in out.reshape(-1)], None
    out, labels, probs = sess.run(["prediction", "label", "probabilities"], feeds)
    answers = [
        {"label": str(label), "probabilities": [float(p) for p in row]}
        for label, row in zip(labels.reshape(-1), probs)
    ]
    return [number(v) for v in out.reshape(-1)], answers


def run_pmml(path, num, cat, numeric, categorical, classes):
    from pypmml import Model

    model = Model.fromFile(path)
    preds, answers = [], []
    for nr, cr in zip(num, cat):
        rec = {c: (None if math.isnan(v) else v) for c, v in zip(numeric, nr)}
        rec.update(dict(zip(categorical, cr)))
        out = dict(model.predict(rec))
        preds.append(number(out.get("prediction")))
        if classes:
            probs = [number(out.get(f"probability({c})")) for c in classes]
            answers.append({"label": out.get("label"), "probabilities": probs})
    return preds, (answers if classes else None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--onnx")
    ap.add_argument("--pmml")
    args = ap.parse_args()
    with open(args.artifact) as f:
        art = json.load(f)
    prep = art["preprocessing"]
    numeric = [c["name"] for c in prep["numeric"]]
    categorical = [c["name"] for c in prep["categorical"]]
    tokens = set(prep["missing_tokens"])
    classes = art["estimator"].get("classes")
    num, cat = load_rows(args.input, numeric, categorical, tokens)
    out = {"rows": len(num)}
    if args.onnx:
        out["onnxruntime"], answers = run_onnx(args.onnx, num, cat, len(numeric), len(categorical), classes)
        if answers is not None:
            out["onnxruntime_classes"] = answers
    if args.pmml:
        out["pypmml"], answers = run_pmml(args.pmml, num, cat, numeric, categorical, classes)
        if answers is not None:
            out["pypmml_classes"] = answers
    print(json.dumps(out))


if __name__ == "__main__":
    main()
