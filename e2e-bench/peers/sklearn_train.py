"""The scikit-learn way to do what `modelcast train` does on the benchmark's CSV.

read_csv, train_test_split(test_size=0.2), ColumnTransformer[numeric: SimpleImputer(mean) +
StandardScaler | categorical: SimpleImputer(constant "missing") + OneHotEncoder(ignore)],
Ridge(alpha=1.0), R² on the held-out part, pickle the fitted pipeline. Prints a JSON report.

    python sklearn_train.py CSV TARGET NUMERIC_COLS CATEGORICAL_COLS OUT.pkl [MODEL_JSON]
    (column lists comma-separated; either may be empty)

MODEL_JSON (default: ridge) is modelcast's `model:` section as JSON ({"kind":
"logistic_regression", "C": 1.0} is LogisticRegression(C=1.0, max_iter=1000), reporting held-out
accuracy and log loss instead of R²): {"kind": "random_forest",
"n_estimators": 20, "max_depth": 10} becomes RandomForestRegressor(n_estimators=20, max_depth=10,
n_jobs=-1); {"kind": "gradient_boosting", ...} HistGradientBoostingRegressor(early_stopping=False,
...), the same hyperparameters by the same names; {"kind": "gradient_boosting_classifier", ...}
HistGradientBoostingClassifier(early_stopping=False, ...), reporting accuracy and log loss. Trees
get a dense one-hot block (as modelcast's).
"""

import json
import pickle
import sys

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def estimator(spec: dict):
    kind = spec.pop("kind", "ridge")
    spec.pop("seed", None)
    if kind == "random_forest":
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(n_jobs=-1, random_state=0, **spec)
    if kind == "logistic_regression":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=spec.get("C", 1.0), max_iter=1000)
    if kind == "gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(early_stopping=False, random_state=0, **spec)
    if kind == "gradient_boosting_classifier":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(early_stopping=False, random_state=0, **spec)
    return Ridge(alpha=spec.get("alpha", 1.0))


def build(numeric: list[str], categorical: list[str], spec: dict | None = None) -> Pipeline:
    spec = dict(spec or {"kind": "ridge", "alpha": 1.0})
    dense = spec.get("kind") in ("random_forest", "gradient_boosting", "gradient_boosting_classifier")
    parts = []
    if numeric:
        parts.append(("num", make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()), numeric))
    if categorical:
        parts.append(
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=not dense),
                ),
                categorical,
            )
        )
    prep = ColumnTransformer(parts, sparse_threshold=0.0 if dense else 0.3)
    return Pipeline([("prep", prep), ("model", estimator(spec))])


def main() -> int:
    csv, target, numeric, categorical, out = sys.argv[1:6]
    spec = json.loads(sys.argv[6]) if len(sys.argv) > 6 else None
    numeric_cols = [c for c in numeric.split(",") if c]
    categorical_cols = [c for c in categorical.split(",") if c]
    dtypes = {c: "string" for c in categorical_cols}
    frame = pd.read_csv(csv, dtype=dtypes)
    x = frame[numeric_cols + categorical_cols]
    # Categories as plain objects with NaN for missing, as SimpleImputer expects.
    for c in categorical_cols:
        x[c] = x[c].astype(object).where(x[c].notna(), float("nan"))
    x_train, x_test, y_train, y_test = train_test_split(x, frame[target], test_size=0.2, random_state=42)
    model = build(numeric_cols, categorical_cols, spec).fit(x_train, y_train)
    report = {"train_rows": len(x_train), "test_rows": len(x_test)}
    if (spec or {}).get("kind") in ("logistic_regression", "gradient_boosting_classifier"):
        from sklearn.metrics import accuracy_score, log_loss

        probs = model.predict_proba(x_test)
        report |= {"accuracy": accuracy_score(y_test, model.classes_[probs.argmax(axis=1)]),
                   "log_loss": log_loss(y_test, probs)}
    else:
        report["r2"] = model.score(x_test, y_test)
    with open(out, "wb") as f:
        pickle.dump(model, f)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
