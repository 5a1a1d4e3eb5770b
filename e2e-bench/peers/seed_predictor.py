"""The seed's predictor, as the original predictor.py ran it: one record per poll.

Consumes feature records (JSON objects) from INPUT in consumer group GROUP, predicts each one
with a pickled scikit-learn pipeline (a one-row DataFrame per record, as the seed did), and
produces one prediction per record to OUTPUT. Offsets are auto-committed. Stops on SIGTERM.

    python seed_predictor.py BOOTSTRAP INPUT OUTPUT GROUP MODEL.pkl
"""

import json
import pickle
import signal
import sys
import time

import pandas as pd
from confluent_kafka import Consumer, KafkaError, Producer


def main() -> int:
    bootstrap, input_topic, output_topic, group, model_path = sys.argv[1:6]
    with open(model_path, "rb") as f:
        model = pickle.load(f)
    features = list(model.feature_names_in_)

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([input_topic])
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    print("seed predictor ready", file=sys.stderr, flush=True)

    while not stop:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                print(f"consumer error: {msg.error()}", file=sys.stderr)
            continue
        record = json.loads(msg.value())
        row = pd.DataFrame([record], columns=features)
        prediction = float(model.predict(row)[0])
        key = msg.key().decode() if msg.key() else f"{msg.partition()}:{msg.offset()}"
        out = {
            "key": key,
            "prediction": prediction,
            "model_version": "sklearn-pickle",
            "input_timestamp_ms": msg.timestamp()[1],
            "predicted_at_ms": int(time.time() * 1000),
        }
        while True:
            try:
                producer.produce(output_topic, key=msg.key(), value=json.dumps(out))
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)

    producer.flush(30)
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
