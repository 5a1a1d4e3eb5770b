#!/usr/bin/env python3
"""Generate scikit-learn reference numbers for modelcast's parity tests.

Re-run (from the repository root):
    python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements-reference.txt \
        && .venv/bin/python scripts/sklearn_reference.py

Versions used to produce the committed outputs: python 3.11.7, numpy 2.4.6,
pandas 3.1.1, scikit-learn 1.9.1 (scipy 1.17.1).

Writes (deterministically, numpy default_rng with fixed seeds):
    tests/fixtures/mixed.csv, tests/fixtures/highcard.csv,
    tests/fixtures/sklearn_reference.json   (override with --out)

Semantics: fit on ALL rows. Numerics: SimpleImputer(mean|median) then optional
StandardScaler (ddof=0). Categoricals: SimpleImputer(constant "missing") then
OneHotEncoder(handle_unknown="ignore"), not scaled. Design = [numeric, one-hot].
"""
import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

ROOT = Path(__file__).resolve().parent.parent
NA_TOKENS = ["", "NA", "N/A", "NaN", "null"]
WINE = "data/winequality-red.csv"
MIXED = "tests/fixtures/mixed.csv"
HIGHCARD = "tests/fixtures/highcard.csv"
WINE_NUM = ["fixed acidity", "volatile acidity", "citric acid", "residual sugar",
            "chlorides", "free sulfur dioxide", "total sulfur dioxide", "density",
            "pH", "sulphates", "alcohol"]
MIXED_UNSEEN = {"x1": "1.5", "x2": "", "x3": "-0.3", "color": "purple", "size": "M"}
HIGHCARD_UNSEEN = {"a": "0.1", "b": "2", "shop": "shop_999"}


def m(kind, alpha=None, l1_ratio=None):
    return {"kind": kind, "alpha": alpha, "l1_ratio": l1_ratio}


# name, data, target, numeric, categorical, missing_numeric, scale, model
CASES = [
    ("wine_ols_std", WINE, "quality", WINE_NUM, [], "mean", "standardize", m("linear")),
    ("wine_ols_raw", WINE, "quality", WINE_NUM, [], "mean", "none", m("linear")),
    ("wine_ridge", WINE, "quality", WINE_NUM, [], "mean", "standardize", m("ridge", 1.0)),
    ("wine_ridge_raw", WINE, "quality", WINE_NUM, [], "mean", "none", m("ridge", 10.0)),
    ("wine_lasso", WINE, "quality", WINE_NUM, [], "mean", "standardize", m("lasso", 0.01)),
    ("wine_enet", WINE, "quality", WINE_NUM, [], "mean", "standardize",
     m("elastic_net", 0.02, 0.5)),
    ("mixed_ols", MIXED, "y", ["x1", "x2", "x3"], ["color", "size"], "mean",
     "standardize", m("linear")),
    ("mixed_ols_median", MIXED, "y", ["x1", "x2", "x3"], ["color", "size"], "median",
     "none", m("linear")),
    ("mixed_ridge", MIXED, "y", ["x1", "x2", "x3"], ["color", "size"], "mean",
     "standardize", m("ridge", 0.5)),
    ("mixed_lasso", MIXED, "y", ["x1", "x2", "x3"], ["color", "size"], "mean",
     "standardize", m("lasso", 0.005)),
    ("mixed_enet", MIXED, "y", ["x1", "x2", "x3"], ["color", "size"], "mean",
     "standardize", m("elastic_net", 0.01, 0.3)),
    ("highcard_ols", HIGHCARD, "y", ["a", "b"], ["shop"], "mean", "standardize",
     m("linear")),
    ("highcard_ridge", HIGHCARD, "y", ["a", "b"], ["shop"], "mean", "standardize",
     m("ridge", 1.0)),
]


def fmt(v):
    return "" if np.isnan(v) else f"{v:.4f}"


def write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def make_mixed(path, n=400, seed=20240611):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) * [1.0, 2.0, 0.5] + [0.0, 1.0, -1.0]
    colors = np.array(["red", "green", "blue", "black"])
    sizes = np.array(["S", "M", "L", "XL"])
    color = colors[rng.integers(0, 4, n)]
    size = sizes[rng.choice(4, n, p=[0.2, 0.4, 0.3, 0.1])]
    c_eff = {"red": 1.0, "green": -0.5, "blue": 0.25, "black": 0.0}
    s_eff = {"S": -1.0, "M": 0.0, "L": 0.5, "XL": 1.5}
    y = (2.0 + x @ [1.5, -0.8, 3.0] + np.array([c_eff[c] for c in color])
         + np.array([s_eff[s] for s in size]) + rng.normal(0, 0.5, n))
    x[rng.random((n, 3)) < 0.08] = np.nan          # ~8% numeric cells missing
    color = np.where(rng.random(n) < 0.05, "", color)  # ~5% colors missing
    rows = [[i, fmt(x[i, 0]), fmt(x[i, 1]), fmt(x[i, 2]), color[i], size[i], fmt(y[i])]
            for i in range(n)]
    write_csv(path, ["id", "x1", "x2", "x3", "color", "size", "y"], rows)


def make_highcard(path, n=3000, n_shops=300, n_singletons=8, seed=7):
    rng = np.random.default_rng(seed)
    # every shop once, then skewed (power-law) draws over all but the last
    # n_singletons shops, so those appear exactly once and the tail is rare.
    k = n_shops - n_singletons
    w = 1.0 / np.arange(1, k + 1) ** 0.7
    shop_idx = np.concatenate([np.arange(n_shops), rng.choice(k, n - n_shops, p=w / w.sum())])
    shop_idx = rng.permutation(shop_idx)
    a = rng.normal(0, 1, n)
    b = rng.uniform(-3, 5, n)
    shop_eff = rng.normal(0, 2, n_shops)
    y = 1.0 + 0.7 * a - 1.2 * b + shop_eff[shop_idx] + rng.normal(0, 0.5, n)
    rows = [[fmt(a[i]), fmt(b[i]), f"shop_{shop_idx[i]:03d}", fmt(y[i])] for i in range(n)]
    write_csv(path, ["a", "b", "shop", "y"], rows)


def read_data(path, numeric, categorical, target):
    df = pd.read_csv(path, dtype={c: str for c in categorical}, na_values=NA_TOKENS,
                     keep_default_na=False)
    X = df[numeric + categorical].copy()
    X[numeric] = X[numeric].astype(float)
    for c in categorical:  # plain object dtype with np.nan for missing
        X[c] = X[c].astype(object).where(X[c].notna(), np.nan)
    return X, df[target].astype(float).to_numpy()


def record_frame(record, numeric, categorical):
    row = {c: [float(record[c]) if record[c] not in NA_TOKENS else np.nan] for c in numeric}
    row.update({c: np.array([record[c] if record[c] not in NA_TOKENS else np.nan],
                            dtype=object) for c in categorical})
    return pd.DataFrame(row)[numeric + categorical]


def build_pipeline(numeric, categorical, missing_numeric, scale, model):
    num_steps = [("impute", SimpleImputer(strategy=missing_numeric))]
    if scale == "standardize":
        num_steps.append(("scale", StandardScaler()))
    cat = Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                    ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False))])
    transformers = [("num", Pipeline(num_steps), numeric)]
    if categorical:
        transformers.append(("cat", cat, categorical))
    pre = ColumnTransformer(transformers, remainder="drop")
    kind, alpha, l1 = model["kind"], model["alpha"], model["l1_ratio"]
    est = {"linear": lambda: LinearRegression(),
           "ridge": lambda: Ridge(alpha=alpha, solver="auto"),
           "lasso": lambda: Lasso(alpha=alpha, tol=1e-12, max_iter=1_000_000),
           "elastic_net": lambda: ElasticNet(alpha=alpha, l1_ratio=l1, tol=1e-12,
                                             max_iter=1_000_000)}[kind]()
    return Pipeline([("pre", pre), ("model", est)])


def unseen_record(data, numeric, categorical):
    if data == MIXED:
        return dict(MIXED_UNSEEN)
    if data == HIGHCARD:
        return dict(HIGHCARD_UNSEEN)
    with open(ROOT / data, newline="") as f:  # first data row, raw strings
        reader = csv.DictReader(f)
        first = next(reader)
    return {c: first[c] for c in numeric + categorical}


def run_case(name, data, target, numeric, categorical, missing_numeric, scale, model):
    X, y = read_data(ROOT / data, numeric, categorical, target)
    pipe = build_pipeline(numeric, categorical, missing_numeric, scale, model)
    pipe.fit(X, y)
    design = pipe[:-1].transform(X)
    est = pipe[-1]
    record = unseen_record(data, numeric, categorical)
    unseen = pipe.predict(record_frame(record, numeric, categorical))
    return {
        "name": name, "data": data, "target": target, "numeric": numeric,
        "categorical": categorical, "missing_numeric": missing_numeric, "scale": scale,
        "model": model, "n_features": int(design.shape[1]),
        "coef": [float(v) for v in est.coef_], "intercept": float(est.intercept_),
        "r2": float(pipe.score(X, y)),
        "predictions": [float(v) for v in pipe.predict(X)[:200]],
        "rank": int(np.linalg.matrix_rank(design - design.mean(axis=0))),
        "unseen_record": record, "predict_unseen": float(unseen[0]),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "tests/fixtures/sklearn_reference.json"))
    args = ap.parse_args()
    make_mixed(ROOT / MIXED)
    make_highcard(ROOT / HIGHCARD)
    cases = [run_case(*c) for c in CASES]
    doc = {"generated_by": "scripts/sklearn_reference.py",
           "sklearn_version": sklearn.__version__, "numpy_version": np.__version__,
           "pandas_version": pd.__version__, "cases": cases}
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1, allow_nan=False)
        f.write("\n")
    for c in cases:
        print(f"{c['name']:18s} r2={c['r2']:.6f} n_features={c['n_features']:3d} "
              f"rank={c['rank']:3d} unseen={c['predict_unseen']:.6f}")


if __name__ == "__main__":
    main()
