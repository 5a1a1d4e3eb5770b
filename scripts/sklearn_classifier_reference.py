#!/usr/bin/env python3
"""Generate scikit-learn reference numbers for modelcast's classifier parity test.

Re-run (from the repository root, in the venv of scripts/requirements-reference.txt):
    .venv/bin/python scripts/sklearn_classifier_reference.py

Writes tests/fixtures/sklearn_classifier_reference.json (override with --out). Reads the
fixtures scripts/sklearn_reference.py writes (tests/fixtures/mixed.csv).

Semantics: fit on ALL rows, preprocessing as scripts/sklearn_reference.py (SimpleImputer then
StandardScaler for numerics; constant "missing" then OneHotEncoder(handle_unknown="ignore") for
categoricals). The estimator is LogisticRegression(C, class_weight) with the newton-cholesky
solver at tol=1e-12: the exact optimum of the same penalised log loss modelcast minimises. The
elastic-net cases (l1_ratio > 0) use the saga solver, the one scikit-learn offers for that
penalty, at tol=1e-15 with an iteration cap it must stay under (checked): its weights then
move by less than 1e-15 relative per epoch.
Multinomial intercepts are defined up to a common shift, so they are centred (as modelcast
stores them) before they are written.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

MAX_SAGA_EPOCHS = 1_000_000
ROOT = Path(__file__).resolve().parent.parent
NA_TOKENS = ["", "NA", "N/A", "NaN", "null"]
WINE = "data/winequality-red.csv"
MIXED = "tests/fixtures/mixed.csv"
WINE_NUM = ["fixed acidity", "volatile acidity", "citric acid", "residual sugar",
            "chlorides", "free sulfur dioxide", "total sulfur dioxide", "density",
            "pH", "sulphates", "alcohol"]

# name, data, numeric, categorical, target: {column, classes | positive}, C, class_weight, l1_ratio
CASES = [
    ("wine_good_balanced", WINE, WINE_NUM, [], {"column": "quality", "positive": ">= 7"}, 1.0,
     "balanced", 0.0),
    ("wine_good_c01", WINE, WINE_NUM, [], {"column": "quality", "positive": ">= 7"}, 0.1, None,
     0.0),
    ("wine_grade", WINE, WINE_NUM, [], {"column": "quality", "classes": [3, 4, 5, 6, 7, 8]},
     1.0, None, 0.0),
    ("mixed_binary", MIXED, ["x1", "x2", "x3"], ["color", "size"],
     {"column": "y", "positive": "> 2.5"}, 0.5, {"1": 2.0}, 0.0),
    ("mixed_size", MIXED, ["x1", "x2", "x3"], ["color"],
     {"column": "size", "classes": ["S", "M", "L", "XL"]}, 2.0, "balanced", 0.0),
    ("wine_good_enet", WINE, WINE_NUM, [], {"column": "quality", "positive": ">= 7"}, 0.1,
     "balanced", 0.5),
    ("wine_grade_enet", WINE, WINE_NUM, [], {"column": "quality", "classes": [3, 4, 5, 6, 7, 8]},
     0.2, None, 0.7),
    ("mixed_binary_l1", MIXED, ["x1", "x2", "x3"], ["color", "size"],
     {"column": "y", "positive": "> 2.5"}, 0.05, None, 1.0),
    ("mixed_size_enet", MIXED, ["x1", "x2", "x3"], ["color"],
     {"column": "size", "classes": ["S", "M", "L", "XL"]}, 0.5, "balanced", 0.5),
]


def target_of(df, target):
    col = df[target["column"]]
    if "positive" in target:
        op, value = target["positive"].split()
        v = col.astype(float)
        t = float(value)
        return {">=": v >= t, ">": v > t, "<=": v <= t, "<": v < t}[op].astype(int).to_numpy()
    classes = [str(c) for c in target["classes"]]
    text = col.astype(str)
    return np.array([classes.index(s) for s in text])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "tests/fixtures/sklearn_classifier_reference.json"))
    args = ap.parse_args()
    cases = []
    for name, data, numeric, categorical, target, c, class_weight, l1_ratio in CASES:
        df = pd.read_csv(ROOT / data, dtype={c_: str for c_ in categorical + [target["column"]]},
                         na_values=NA_TOKENS, keep_default_na=False)
        X = df[numeric + categorical].copy()
        X[numeric] = X[numeric].astype(float)
        for col in categorical:
            X[col] = X[col].astype(object).where(X[col].notna(), np.nan)
        y = target_of(df, target)
        num = Pipeline([("impute", SimpleImputer(strategy="mean")), ("scale", StandardScaler())])
        transformers = [("num", num, numeric)]
        if categorical:
            transformers.append(("cat", Pipeline([
                ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False))]),
                categorical))
        cw = class_weight
        if isinstance(cw, dict):
            cw = {int(k): v for k, v in cw.items()}
        if l1_ratio == 0.0:
            est = LogisticRegression(C=c, class_weight=cw, solver="newton-cholesky", tol=1e-12,
                                     max_iter=1000)
        else:
            est = LogisticRegression(C=c, class_weight=cw, l1_ratio=l1_ratio, solver="saga",
                                     tol=1e-15, max_iter=MAX_SAGA_EPOCHS)
        pipe = Pipeline([("pre", ColumnTransformer(transformers, remainder="drop")),
                         ("model", est)])
        pipe.fit(X, y)
        if l1_ratio > 0.0 and np.max(est.n_iter_) >= MAX_SAGA_EPOCHS:
            raise SystemExit(f"{name}: saga did not converge in {MAX_SAGA_EPOCHS} epochs")
        probs = pipe.predict_proba(X)
        coef = est.coef_
        intercept = est.intercept_.copy()
        if len(intercept) > 1:
            intercept -= intercept.mean()
        k = probs.shape[1]
        auc = roc_auc_score(y, probs[:, 1]) if k == 2 else roc_auc_score(
            y, probs, multi_class="ovr", average="macro")
        cases.append({
            "name": name, "data": data, "numeric": numeric, "categorical": categorical,
            "target": target, "C": c, "class_weight": class_weight, "l1_ratio": l1_ratio,
            "n_features": int(pipe[:-1].transform(X[:1]).shape[1]),
            "coef": coef.tolist(), "intercept": intercept.tolist(),
            "n_iter": int(np.max(est.n_iter_)),
            "probabilities": probs[:200].tolist(),
            "accuracy": float(accuracy_score(y, probs.argmax(axis=1))),
            "log_loss": float(log_loss(y, probs)),
            "auc": float(auc),
        })
    doc = {"generated_by": "scripts/sklearn_classifier_reference.py",
           "sklearn_version": sklearn.__version__, "numpy_version": np.__version__,
           "pandas_version": pd.__version__, "cases": cases}
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1, allow_nan=False)
        f.write("\n")


if __name__ == "__main__":
    main()
