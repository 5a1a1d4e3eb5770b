#!/usr/bin/env python3
"""Reference held-out accuracy and log loss of scikit-learn's tree classifiers, for modelcast's
tree-classifier parity test (tests/it/parity.rs reads the output; Python is not needed to run it).

Re-run (from the repository root, in the venv of scripts/requirements-reference.txt):
    .venv/bin/python scripts/sklearn_tree_classifier_reference.py

Writes tests/fixtures/sklearn_tree_classifiers.json (override with --out).

The split is modelcast's documented one (README, "evaluation"): SplitMix64-seeded selection
sampling (seed 42) holds out exactly round(0.2·n) rows. Trees see raw values. A binary model
predicts class 1 when its probability is at least 0.5 (modelcast's default threshold; scikit-learn's
`predict` takes class 0 on an exact tie, which a forest of 100 trees can reach), more classes the
first most probable. The log loss clips probabilities at the float64 epsilon, as
`sklearn.metrics.log_loss`.

Two kinds of case, as scripts/sklearn_trees_reference.py:

* EXACT: HistGradientBoostingClassifier on columns whose training values fit in 255 bins, so
  both sides bin exactly (one bin per distinct value) and boosting is deterministic. The
  reference is scikit-learn's fit on the exact training split: its held-out probabilities, which
  modelcast reproduces one by one.
* SPREAD: the forests (whose randomness is not scikit-learn's) and boosting on columns that do not
  bin exactly. The reference is scikit-learn on the exact split, averaged over the seeds in SEEDS
  (a forest; boosting is the same for every seed), with the spread of JITTER fits on seeded 99%
  subsamples of the training rows beside it: how far scikit-learn moves from itself when 1% of the
  data changes.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

ROOT = Path(__file__).resolve().parent.parent
MASK = (1 << 64) - 1
WINE = "data/winequality-red.csv"
CANCER = "data/breast-cancer.csv"
WINE_NUM = ["fixed acidity", "volatile acidity", "citric acid", "residual sugar",
            "chlorides", "free sulfur dioxide", "total sulfur dioxide", "density",
            "pH", "sulphates", "alcohol"]
# every wine column but density (403 distinct values): at most 140 distinct training values each
WINE_EXACT = [c for c in WINE_NUM if c != "density"]
GOOD = {"column": "quality", "positive": ">= 7", "class_weight": "balanced"}
GRADE = {"column": "quality", "classes": [3, 4, 5, 6, 7, 8]}
DIAGNOSIS = {"column": "diagnosis", "classes": ["benign", "malignant"]}


def forest(**kw):
    params = {"kind": "random_forest_classifier", **kw}
    return (lambda s, cw: RandomForestClassifier(random_state=s, n_jobs=1, class_weight=cw, **kw)), params


def boosting(**kw):
    params = {"kind": "gradient_boosting_classifier", **kw}
    return (lambda s, cw: HistGradientBoostingClassifier(early_stopping=False, random_state=s,
                                                         class_weight=cw, **kw)), params


# name, data, target, features (None: all of the data's but the target), (factory, params), exact
CASES = [
    ("wine_good_boosting_exact", WINE, GOOD, WINE_EXACT, boosting(), True),
    ("wine_grade_boosting_exact", WINE, GRADE, WINE_EXACT, boosting(), True),
    ("wine_grade_boosting_slow_exact", WINE, GRADE, WINE_EXACT,
     boosting(max_iter=200, learning_rate=0.05, max_depth=4, min_samples_leaf=10,
              l2_regularization=1.0), True),
    ("wine_good_boosting", WINE, GOOD, WINE_NUM, boosting(), False),
    ("wine_grade_boosting", WINE, GRADE, WINE_NUM, boosting(), False),
    ("cancer_boosting", CANCER, DIAGNOSIS, None, boosting(), False),
    ("wine_good_forest", WINE, GOOD, WINE_NUM, forest(min_samples_leaf=5), False),
    ("wine_grade_forest", WINE, GRADE, WINE_NUM, forest(min_samples_leaf=3), False),
    ("cancer_forest", CANCER, DIAGNOSIS, None, forest(min_samples_leaf=2), False),
]
SEEDS = list(range(10))
JITTER = 20


def splitmix(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def split(n, fraction=0.2, seed=42):
    """modelcast's data::held_out (see scripts/sklearn_trees_reference.py)."""
    n_test = int(min(max(round(n * fraction), 1), max(n - 1, 1)))
    state, need, test = seed, n_test, []
    for i in range(n):
        if need == 0:
            break
        state, r = splitmix(state)
        if r % (n - i) < need:
            test.append(i)
            need -= 1
    test_set = set(test)
    return [i for i in range(n) if i not in test_set], test


def labels_of(df, target):
    col = df[target["column"]]
    if "positive" in target:
        op, value = target["positive"].split()
        v, t = col.astype(float), float(value)
        return {">=": v >= t, ">": v > t, "<=": v <= t, "<": v < t}[op].astype(int).to_numpy(), 2
    classes = [str(c) for c in target["classes"]]
    text = col.map(lambda v: str(int(v)) if isinstance(v, (int, float)) and float(v).is_integer() else str(v))
    return text.map(classes.index).to_numpy(), len(classes)


def scores(proba, y, k):
    """Accuracy (modelcast's decision rule) and log loss of probabilities (one column per class)."""
    if k == 2:
        pred = (proba[:, 1] >= 0.5).astype(int)
    else:
        pred = np.argmax(proba, axis=1)
    p = np.clip(proba[np.arange(len(y)), y], np.finfo(float).eps, 1 - np.finfo(float).eps)
    return float((pred == y).mean()), float(-np.log(p).mean())


def full_proba(est, X, k):
    """Probabilities over all k classes (a class absent from a training sample gets 0)."""
    out = np.zeros((len(X), k))
    out[:, est.classes_] = est.predict_proba(X)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "tests/fixtures/sklearn_tree_classifiers.json"))
    args = ap.parse_args()
    cases = []
    for name, data, target, features, (make, params), exact in CASES:
        df = pd.read_csv(ROOT / data)
        features = features or [c for c in df.columns if c != target["column"]]
        X = df[features].to_numpy(dtype=float)
        y, k = labels_of(df, target)
        train, test = (np.array(r) for r in split(len(df)))
        cw = target.get("class_weight")
        case = {"name": name, "data": data, "target": target, "features": features, "model": params,
                "test_rows": len(test), "classes": k}
        if exact:
            for j, col in enumerate(features):
                distinct = len(np.unique(X[train, j]))
                assert distinct <= 255, f"{name}: {col} has {distinct} distinct training values"
            fits = [full_proba(make(s, cw).fit(X[train], y[train]), X[test], k) for s in SEEDS[:3]]
            assert all(np.array_equal(fits[0], f) for f in fits), f"{name}: not deterministic"
            acc, loss = scores(fits[0], y[test], k)
            case.update({"exact": True, "accuracy": acc, "log_loss": loss,
                         "probabilities": fits[0].tolist()})
            print(f"{name:32s} exact: accuracy {acc:.4f}, log loss {loss:.4f}")
        else:
            split_scores = [scores(full_proba(make(s, cw).fit(X[train], y[train]), X[test], k), y[test], k)
                            for s in SEEDS]
            rng = np.random.default_rng(2026)
            jitter = []
            for s in range(JITTER):
                rows = np.sort(rng.choice(train, int(0.99 * len(train)), replace=False))
                jitter.append(scores(full_proba(make(s, cw).fit(X[rows], y[rows]), X[test], k), y[test], k))
            acc = [a for a, _ in split_scores]
            loss = [l for _, l in split_scores]
            case.update({"exact": False, "seeds": SEEDS,
                         "accuracy": float(np.mean(acc)), "log_loss": float(np.mean(loss)),
                         "accuracy_seeds": acc, "log_loss_seeds": loss,
                         "accuracy_jitter_sd": float(np.std([a for a, _ in jitter])),
                         "log_loss_jitter_sd": float(np.std([l for _, l in jitter])), "jitter_fits": JITTER})
            print(f"{name:32s} accuracy {np.mean(acc):.4f} ({min(acc):.4f}..{max(acc):.4f}, jitter sd "
                  f"{case['accuracy_jitter_sd']:.4f}); log loss {np.mean(loss):.4f} ({min(loss):.4f}.."
                  f"{max(loss):.4f}, jitter sd {case['log_loss_jitter_sd']:.4f})")
        cases.append(case)
    doc = {"generated_by": "scripts/sklearn_tree_classifier_reference.py",
           "sklearn_version": sklearn.__version__, "numpy_version": np.__version__,
           "split": {"test_fraction": 0.2, "seed": 42}, "cases": cases}
    with open(args.out, "w") as f:
        json.dump(doc, f, allow_nan=False)
        f.write("\n")


if __name__ == "__main__":
    main()
