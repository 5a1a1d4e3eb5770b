"""The best a Python predictor can do: batches of up to 1000 records, one vectorised predict.

Same at-least-once contract as `modelcast predict --serve`: consume a batch, predict it with
the pickled scikit-learn pipeline, produce the predictions with produce_batch, wait for every
delivery report (flush), and only then store the batch's offsets (auto-committed).

    python batched_predictor.py BOOTSTRAP INPUT OUTPUT GROUP MODEL.pkl
"""

import json
import pickle
import signal
import sys
import time

import numpy as np
import pandas as pd
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

BATCH = 1000


def produce_all(producer: Producer, topic: str, messages: list[dict]) -> None:
    """produce_batch, retrying the messages that did not fit in the local queue."""
    while messages:
        producer.produce_batch(topic, messages)
        messages = [{k: v for k, v in m.items() if k != "_error"} for m in messages if "_error" in m]
        if messages:
            producer.poll(0.01)


def next_offsets(msgs: list) -> list:
    """The offset after the last message of each partition in MSGS."""
    last = {}
    for m in msgs:
        last[(m.topic(), m.partition())] = max(m.offset(), last.get((m.topic(), m.partition()), -1))
    return [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]


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
            "enable.auto.offset.store": False,
        }
    )
    consumer.subscribe([input_topic])
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    print("batched predictor ready", file=sys.stderr, flush=True)

    while not stop:
        msgs = consumer.consume(num_messages=BATCH, timeout=1.0)
        good = [m for m in msgs if not m.error()]
        for m in msgs:
            if m.error() and m.error().code() != KafkaError._PARTITION_EOF:
                print(f"consumer error: {m.error()}", file=sys.stderr)
        if not good:
            continue
        records = [json.loads(m.value()) for m in good]
        x = np.array([[r.get(f, np.nan) for f in features] for r in records], dtype=float)
        predictions = model.predict(pd.DataFrame(x, columns=features))
        now = int(time.time() * 1000)
        out = []
        for m, p in zip(good, predictions, strict=False):
            key = m.key().decode() if m.key() else f"{m.partition()}:{m.offset()}"
            value = {
                "key": key,
                "prediction": float(p),
                "model_version": "sklearn-pickle",
                "input_timestamp_ms": m.timestamp()[1],
                "predicted_at_ms": now,
            }
            out.append({"key": m.key(), "value": json.dumps(value)})
        produce_all(producer, output_topic, out)
        if producer.flush(30) != 0:
            print("deliveries not acknowledged within 30 s", file=sys.stderr)
            return 1
        consumer.store_offsets(offsets=next_offsets(good))

    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
