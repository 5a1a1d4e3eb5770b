"""The 2026 Python way to do what `modelcast train` does on the benchmark's CSV: polars reads the
CSV (multithreaded), scikit-learn takes the polars frame directly (its ColumnTransformer accepts
polars since 1.4) and fits the same pipeline as sklearn_train.py (mean imputation, standard
scaling, one-hot with unseen categories ignored, Ridge(alpha=1.0)); 20% held out; the fitted
pipeline pickled. Prints a JSON report.

    python polars_train.py CSV TARGET NUMERIC_COLS CATEGORICAL_COLS OUT.pkl
"""

import json
import pickle
import sys

import polars as pl
from sklearn.model_selection import train_test_split

from sklearn_train import build


def main() -> int:
    csv, target, numeric, categorical, out = sys.argv[1:6]
    numeric_cols = [c for c in numeric.split(",") if c]
    categorical_cols = [c for c in categorical.split(",") if c]
    frame = pl.read_csv(csv, schema_overrides={c: pl.String for c in categorical_cols})
    x = frame.select(numeric_cols + categorical_cols)
    y = frame.get_column(target).to_numpy()
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=42)
    model = build(numeric_cols, categorical_cols).fit(x_train, y_train)
    r2 = model.score(x_test, y_test)
    with open(out, "wb") as f:
        pickle.dump(model, f)
    print(json.dumps({"r2": r2, "train_rows": x_train.height, "test_rows": x_test.height}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
