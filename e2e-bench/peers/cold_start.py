"""What the seed predictor pays before its first prediction: import scikit-learn and pandas,
unpickle the model, read one row and predict it.

    python cold_start.py MODEL.pkl ONE_ROW.csv
"""

import pickle
import sys

import pandas as pd


def main() -> int:
    model_path, csv = sys.argv[1:3]
    with open(model_path, "rb") as f:
        model = pickle.load(f)
    row = pd.read_csv(csv)[list(model.feature_names_in_)]
    print(float(model.predict(row)[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
