"""The tree libraries as their users run them, on the benchmark's CSV: native categorical features.

read_csv (categorical columns as pandas categories, missing as NaN), train_test_split(test_size=0.2,
random_state=42) as sklearn_train.py, fit, R² on the held-out part, pickle the model. Prints a
JSON report.

    python boosters_train.py CSV TARGET NUMERIC_COLS CATEGORICAL_COLS OUT.pkl LIBRARY MODEL_JSON

LIBRARY is lightgbm, xgboost or sklearn (HistGradientBoostingRegressor with
categorical_features="from_dtype"). MODEL_JSON is modelcast's `model:` section as JSON, mapped
to the same hyperparameters where they exist, threads = cores:

- gradient_boosting (max_iter, learning_rate, max_leaf_nodes; modelcast's defaults for the rest:
  min_samples_leaf 20, max_bins 255, l2_regularization 0): LGBMRegressor(n_estimators,
  learning_rate, num_leaves, min_child_samples, max_bin, reg_lambda); XGBRegressor(tree_method
  hist, grow_policy lossguide, max_leaves, max_depth 0, min_child_weight 0, max_bin, reg_lambda);
  HistGradientBoostingRegressor(early_stopping=False, the same names).
- random_forest (n_estimators, max_depth, min_samples_leaf; bootstrap, all features per split):
  LightGBM's rf mode (bagging_fraction 0.632 every iteration: a bootstrap's share of distinct rows,
  num_leaves 2^max_depth); XGBRFRegressor(subsample 0.632, colsample_bynode 1); scikit-learn has no
  histogram forest (its RandomForestRegressor, exact splits, is sklearn_train.py's row).
"""

import json
import os
import pickle
import sys

import pandas as pd
from sklearn.model_selection import train_test_split

THREADS = os.cpu_count() or 1


def estimator(library: str, spec: dict):
    kind = spec.get("kind")
    if kind == "gradient_boosting":
        rounds, lr = spec.get("max_iter", 100), spec.get("learning_rate", 0.1)
        leaves, min_leaf = spec.get("max_leaf_nodes", 31), spec.get("min_samples_leaf", 20)
        bins, l2 = spec.get("max_bins", 255), spec.get("l2_regularization", 0.0)
        if library == "lightgbm":
            import lightgbm

            return lightgbm.LGBMRegressor(
                n_estimators=rounds, learning_rate=lr, num_leaves=leaves, min_child_samples=min_leaf,
                max_bin=bins, reg_lambda=l2, n_jobs=THREADS, verbose=-1, random_state=0,
            )
        if library == "xgboost":
            import xgboost

            return xgboost.XGBRegressor(
                n_estimators=rounds, learning_rate=lr, max_leaves=leaves, grow_policy="lossguide", max_depth=0,
                min_child_weight=0, max_bin=bins, reg_lambda=l2, tree_method="hist", enable_categorical=True,
                n_jobs=THREADS, random_state=0,
            )
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(
            max_iter=rounds, learning_rate=lr, max_leaf_nodes=leaves, min_samples_leaf=min_leaf, max_bins=bins,
            l2_regularization=l2, categorical_features="from_dtype", early_stopping=False, random_state=0,
        )
    if kind == "random_forest":
        trees, depth, min_leaf = spec.get("n_estimators", 100), spec.get("max_depth", 10), spec.get("min_samples_leaf", 1)
        if library == "lightgbm":
            import lightgbm

            return lightgbm.LGBMRegressor(
                boosting_type="rf", n_estimators=trees, max_depth=depth, num_leaves=2**depth,
                min_child_samples=min_leaf, bagging_fraction=0.632, bagging_freq=1, feature_fraction=1.0,
                max_bin=255, n_jobs=THREADS, verbose=-1, random_state=0,
            )
        if library == "xgboost":
            import xgboost

            return xgboost.XGBRFRegressor(
                n_estimators=trees, max_depth=depth, subsample=0.632, colsample_bynode=1.0, min_child_weight=min_leaf,
                max_bin=255, tree_method="hist", enable_categorical=True, n_jobs=THREADS, random_state=0,
            )
    raise SystemExit(f"boosters_train.py: no {library} estimator for {spec}")


def main() -> int:
    csv, target, numeric, categorical, out, library = sys.argv[1:7]
    spec = json.loads(sys.argv[7])
    numeric_cols = [c for c in numeric.split(",") if c]
    categorical_cols = [c for c in categorical.split(",") if c]
    frame = pd.read_csv(csv, dtype={c: "category" for c in categorical_cols})
    x = frame[numeric_cols + categorical_cols]
    x_train, x_test, y_train, y_test = train_test_split(x, frame[target], test_size=0.2, random_state=42)
    model = estimator(library, spec).fit(x_train, y_train)
    report = {"train_rows": len(x_train), "test_rows": len(x_test), "r2": float(model.score(x_test, y_test))}
    with open(out, "wb") as f:
        pickle.dump(model, f)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
