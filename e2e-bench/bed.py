"""The plumbing of e2e-bench/harness.py: contender processes, the broker, and Kafka helpers."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A scenario could not be measured; the message says why."""


class Proc:
    """A contender process with its output in LOGS/NAME.log; CPU and peak RSS from /proc."""

    def __init__(self, bed: "Bed", name: str, cmd: list):
        self.name, self.log = name, bed.logs / f"{name}.log"
        with open(self.log, "ab") as log:
            self.t0 = time.monotonic()
            self.p = subprocess.Popen([str(c) for c in cmd], stdout=log, stderr=log, cwd=ROOT)
        bed.procs.append(self)

    def cpu_s(self) -> float:
        stat = Path(f"/proc/{self.p.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def cpu_ns_threads(self) -> int:
        """Run time of the live threads in ns (/proc/PID/task/*/schedstat): finer than cpu_s,
        but it misses threads that have ended."""
        total = 0
        for t in Path(f"/proc/{self.p.pid}/task").iterdir():
            try:
                total += int((t / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        return total

    def peak_mb(self) -> float:
        for line in Path(f"/proc/{self.p.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def check_alive(self, doing: str) -> None:
        if self.p.poll() is not None:
            raise BenchError(
                f"{self.name} exited with {self.p.returncode} while {doing}; last lines of {self.log}:\n{self.tail()}"
            )

    def stop(self, timeout: float = 30) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"bench: {self.name} ignored SIGTERM for {timeout} s: killing it", file=sys.stderr)
                self.p.kill()
                self.p.wait()
        return self.p.returncode

    def tail(self, n: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


class Bed:
    """The broker, the binaries, the work directories and every process the run started."""

    def __init__(self, args):
        self.bootstrap = args.bootstrap
        self.modelcast, self.passthrough = Path(args.modelcast), Path(args.passthrough)
        self.out = Path(args.out).resolve()
        self.work, self.logs = self.out / "work", self.out / "logs"
        self.run_id = time.strftime("%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.models = self.work / "models"
        self.procs: list[Proc] = []
        for d in (self.work, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        for f in self.logs.glob("*.log"):
            f.unlink()
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap})
        self.meta = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "bench-meta"})
        self.train_topic = self.topic("train")
        self._loader = None

    def loader(self) -> Producer:
        """The load generator's producer, made once: an idempotent producer's first records
        wait about 1 s for its producer id, which must not count as latency."""
        if self._loader is None:
            warm = self.topic("warm")
            self.create_topics([warm], 1)
            self._loader = producer(self, linger_ms=5)
            send(self._loader, warm, "warm", "{}")
            flush(self._loader, "warming up the load generator")
        return self._loader

    def topic(self, name: str) -> str:
        return f"bench-{name}-{self.run_id}"

    def create_topics(self, names: list, partitions: int = 3) -> None:
        futures = self.admin.create_topics([NewTopic(n, partitions, 1) for n in names], request_timeout=30)
        for name, f in futures.items():
            try:
                f.result(30)
            except Exception as e:  # noqa: BLE001 - an existing topic is fine
                if "TOPIC_ALREADY_EXISTS" not in str(e):
                    raise BenchError(f"cannot create topic {name}: {e}") from e

    def kafka_config(self, name: str, input_topic: str, output_topic: str, extra: dict | None = None) -> Path:
        """A kafka_config.yaml for one modelcast instance; every instance shares the train topic.
        EXTRA: more librdkafka properties."""
        path = self.work / f"kafka-{name}.yaml"
        q = json.dumps
        props = {"bootstrap.servers": self.bootstrap, **(extra or {})}
        path.write_text(
            "".join(f"{k}: {q(str(v))}\n" for k, v in props.items()) + "modelcast:\n  topics:\n"
            f"    train: {q(self.train_topic)}\n    input: {q(input_topic)}\n"
            f"    app_messages: {q(output_topic)}\n    dead_letter: {q(self.topic('dead'))}\n"
            f"    shadow: {q(output_topic + '-shadow')}\n"
            f"    model_drift: {q(self.topic('drift'))}\n"
            f"  group_id: {q(self.topic(name + '-group'))}\n  partitions: 3\n  replication_factor: 1\n"
            "  timeout_ms: 30000\n"
        )
        self.run(name + "-topics", [self.modelcast, "topics", "create", "--kafka-config", path, "--partitions", 3])
        return path

    def run(self, name: str, cmd: list, timeout: float = 600) -> str:
        """Run a command to completion; its stderr goes to LOGS/NAME.log; returns its stdout."""
        with open(self.logs / f"{name}.log", "ab") as log:
            try:
                p = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=log, cwd=ROOT, timeout=timeout)
            except subprocess.TimeoutExpired as e:
                raise BenchError(f"{name} did not finish within {timeout:.0f} s") from e
        if p.returncode != 0:
            tail = (self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
            raise BenchError(f"{name} exited with {p.returncode}:\n" + "\n".join(tail))
        return p.stdout.decode()

    def ends(self, topic: str) -> dict:
        """High watermark of every partition of TOPIC."""
        md = self.meta.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None or not md.partitions:
            raise BenchError(f"topic {topic} not found on {self.bootstrap}")
        return {p: self.high_watermark(topic, p) for p in md.partitions}

    def high_watermark(self, topic: str, partition: int) -> int:
        """The partition's high watermark. A topic created a moment ago may not have its leader
        known to every broker component yet (Kafka answers NOT_LEADER_FOR_PARTITION for a short
        while): retried for up to 30 s, as modelcast's own watermark reads are."""
        deadline = time.monotonic() + 30
        while True:
            try:
                return self.meta.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)[1]
            except KafkaException as e:
                retriable = e.args[0].code() in (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                                                 KafkaError.UNKNOWN_TOPIC_OR_PART)
                if not retriable or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def count(self, topic: str) -> int:
        return sum(self.ends(topic).values())

    def close(self) -> None:
        for p in self.procs:
            p.stop(10)
        self.meta.close()


def producer(bed: Bed, linger_ms: int) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bed.bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": linger_ms,
            "queue.buffering.max.messages": 500_000,
        }
    )


def send(p: Producer, topic: str, key: str, value: str, **kw) -> None:
    while True:
        try:
            p.produce(topic, value, key, **kw)
            return
        except BufferError:
            p.poll(0.01)


def flush(p: Producer, what: str) -> None:
    if p.flush(60) != 0:
        raise BenchError(f"{what}: records not delivered within 60 s")


def wait_for(bed: Bed, topic: str, target: int, timeout: float, proc: Proc, doing: str) -> float | None:
    """Poll TOPIC's high watermarks every 50 ms until they add up to TARGET; returns when (since
    PROC started) the topic first had a record, if that happened while waiting."""
    deadline, first = time.monotonic() + timeout, None
    while (n := bed.count(topic)) < target:
        proc.check_alive(f"{doing} ({n}/{target} records in {topic})")
        if first is None and n > 0:
            first = time.monotonic() - proc.t0
        if time.monotonic() > deadline:
            raise BenchError(
                f"{proc.name}: {n}/{target} records in {topic} after {timeout:.0f} s while {doing}; last lines of {proc.log}:\n{proc.tail()}"
            )
        time.sleep(0.05)
    return first


def read_range(bed: Bed, topic: str, start: dict, timeout: float = 60) -> list:
    """Every record of TOPIC from START offsets up to the current ends: (key, timestamp, value)."""
    end = bed.ends(topic)
    c = Consumer({"bootstrap.servers": bed.bootstrap, "group.id": "bench-read", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, start.get(p, 0)) for p in end])
    want, out, deadline = sum(end.values()) - sum(start.get(p, 0) for p in end), [], time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        for m in c.consume(10_000, 0.5):
            if not m.error():
                out.append((m.key().decode(), m.timestamp()[1], m.value()))
    c.close()
    if len(out) < want:
        raise BenchError(f"read only {len(out)}/{want} records of {topic} within {timeout:.0f} s")
    return out


class Reader(threading.Thread):
    """Reads TOPIC from START offsets while a load runs: (key, record timestamp, value, receive ms)."""

    def __init__(self, bed: Bed, topic: str, start: dict):
        super().__init__(daemon=True)
        self.c = Consumer(
            {
                "bootstrap.servers": bed.bootstrap,
                "group.id": "bench-reader",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
            }
        )
        self.c.assign([TopicPartition(topic, p, o) for p, o in start.items()])
        self.rows, self.done = [], threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            batch = self.c.consume(1000, 0.005)
            now = time.time() * 1000
            self.rows.extend((m.key().decode(), m.timestamp()[1], m.value(), now) for m in batch if not m.error())
        self.c.close()

    def stop(self) -> None:
        self.done.set()
        self.join(10)


MEASURE = """import json, resource, subprocess, sys, time
t = time.perf_counter()
rc = subprocess.call(sys.argv[2:])
wall = time.perf_counter() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
json.dump({"rc": rc, "wall_s": wall, "cpu_s": r.ru_utime + r.ru_stime, "peak_mb": r.ru_maxrss / 1024}, open(sys.argv[1], "w"))
"""


def measure(bed: Bed, name: str, cmd: list) -> dict:
    """Wall time, CPU and peak RSS of one child, taken by a fresh wrapper process."""
    path = bed.work / f"{name}.rusage.json"
    stdout = bed.run(name, [sys.executable, "-c", MEASURE, path, *cmd], timeout=1800)
    r = json.loads(path.read_text())
    if r["rc"] != 0:
        raise BenchError(f"{name} exited with {r['rc']}; see {bed.logs / (name + '.log')}")
    return {**r, "stdout": stdout}
