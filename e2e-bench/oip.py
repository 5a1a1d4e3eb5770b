"""Request/response scoring: modelcast's Open Inference Protocol servers against MLServer.

Both serve the same kind of model (standardize + ridge, alpha 1, fitted on the wine data: modelcast
the first version `prepare` trained, MLServer a scikit-learn pipeline with its sklearn runtime)
and answer the same one-row request: one [1, 11] FP64 tensor. Closed-loop load from vegeta (HTTP)
and ghz (gRPC), 1, 16 and 64 clients, each for a fixed time after a warm-up; from each server
process tree: CPU per request (/proc utime + stime, the tree's processes summed) and RSS.

Then modelcast's adaptive batching: the same HTTP load against servers started with other
`--batch-wait-us` values, to show what waiting buys and costs.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from bed import ROOT, Bed, BenchError, Proc

PROTO = ROOT / "proto" / "inference.proto"
WINE = ROOT / "data" / "winequality-red.csv"
TARGET = "quality"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CLIENTS = (1, 16, 64)
# the batching comparison: modelcast's default (first) and longer waits, microseconds
WAITS_US = (0, 200, 1000)


def tool(name: str) -> str:
    """The load generator NAME: $MODELCAST_BENCH_<NAME> (scripts/bench.sh builds it) or PATH."""
    path = os.environ.get(f"MODELCAST_BENCH_{name.upper()}") or shutil.which(name)
    if not path:
        raise BenchError(f"{name} not found: run through scripts/bench.sh, which builds it into the cache")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(pid: int) -> list:
    """PID and its live descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def tree_cpu_s(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / CLK_TCK


def tree_rss_mb(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def row() -> list:
    return [float(x) for x in pd.read_csv(WINE).drop(columns=[TARGET]).iloc[0]]


def wait_ready(url: str, proc: Proc, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check_alive("starting")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise BenchError(f"{proc.name} not ready at {url} within {timeout:.0f} s; last lines:\n{proc.tail()}")


class Server:
    """A started server: its process, model name and ports."""

    def __init__(self, proc: Proc, model: str, http: int, grpc: int):
        self.proc, self.model, self.http, self.grpc = proc, model, http, grpc


def start_modelcast(bed: Bed, name: str, wait_us: int | None = None) -> Server:
    http, grpc = free_port(), free_port()
    flags = [] if wait_us is None else ["--batch-wait-us", str(wait_us)]
    cmd = [bed.modelcast, "predict", "--store", f"file://{bed.models}", "--http", f"127.0.0.1:{http}",
           "--grpc", f"127.0.0.1:{grpc}", *flags]
    proc = Proc(bed, name, cmd)
    wait_ready(f"http://127.0.0.1:{http}/v2/health/ready", proc)
    # the model prepare trained from params/params.yaml
    return Server(proc, "wine-quality", http, grpc)


def start_mlserver(bed: Bed, python: str) -> Server:
    """MLServer with the sklearn runtime serving the same kind of pipeline, fitted here."""
    root = bed.work / "mlserver"
    model_dir = root / "wine"
    model_dir.mkdir(parents=True, exist_ok=True)
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    import joblib

    frame = pd.read_csv(WINE)
    model = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(frame.drop(columns=[TARGET]).to_numpy(),
                                                                  frame[TARGET])
    joblib.dump(model, model_dir / "model.joblib")
    (model_dir / "model-settings.json").write_text(json.dumps({
        "name": "wine", "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"},
    }))
    http, grpc, metrics = free_port(), free_port(), free_port()
    # the defaults otherwise (one inference worker process beside the server's)
    (root / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": http, "grpc_port": grpc, "metrics_port": metrics,
        "metrics_dir": str(root / ".metrics"),
    }))
    mlserver = str(Path(python).parent / "mlserver")
    proc = Proc(bed, "mlserver", [mlserver, "start", root])
    wait_ready(f"http://127.0.0.1:{http}/v2/models/wine/ready", proc, timeout=120)
    return Server(proc, "wine", http, grpc)


def http_load(server: Server, clients: int, secs: float, body: Path) -> dict:
    """Closed loop: CLIENTS workers, each sending the next request when its answer arrived."""
    vegeta = tool("vegeta")
    targets = body.with_suffix(f".{server.http}.targets")
    targets.write_text(f"POST http://127.0.0.1:{server.http}/v2/models/{server.model}/infer\n"
                       f"Content-Type: application/json\n@{body}\n")
    attack = subprocess.Popen(
        [vegeta, "attack", "-rate=0", f"-workers={clients}", f"-max-workers={clients}", f"-duration={secs}s",
         "-keepalive=true", "-timeout=10s", f"-targets={targets}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    report = subprocess.run([vegeta, "report", "-type=json"], stdin=attack.stdout, capture_output=True, text=True)
    attack.wait()
    if attack.returncode != 0 or report.returncode != 0:
        raise BenchError(f"vegeta failed: {attack.stderr.read().decode()[-500:]} {report.stderr[-500:]}")
    r = json.loads(report.stdout)
    lat = r["latencies"]
    ok = round(r["requests"] * r["success"])
    errors = r["requests"] - ok
    return {"requests": ok, "errors": errors, "rps": r["throughput"], "p50_ms": lat["50th"] / 1e6,
            "p99_ms": lat["99th"] / 1e6, "first_error": (r.get("errors") or [None])[0]}


def grpc_load(server: Server, clients: int, secs: float, message: dict, count: int | None = None) -> dict:
    """Closed loop as http_load's, for SECS, or for COUNT requests: ghz cancels the requests in
    flight when a duration ends (they count as errors), so measured runs give a count."""
    ghz = tool("ghz")
    until = ["-n", str(count)] if count else ["-z", f"{secs}s"]
    p = subprocess.run(
        [ghz, "--insecure", "--proto", PROTO, "--call", "inference.GRPCInferenceService/ModelInfer",
         "-d", json.dumps(message), "-c", str(clients), *until, "--format", "json",
         f"127.0.0.1:{server.grpc}"],
        capture_output=True, text=True)
    if p.returncode != 0 or not p.stdout:
        raise BenchError(f"ghz failed ({p.returncode}): {p.stderr[-500:]}")
    r = json.loads(p.stdout)
    dist = {d["percentage"]: d["latency"] for d in r.get("latencyDistribution") or []}
    codes = r.get("statusCodeDistribution") or {}
    ok = codes.get("OK", 0)
    return {"requests": ok, "errors": r["count"] - ok, "rps": ok / (r["total"] / 1e9), "p50_ms": dist[50] / 1e6,
            "p99_ms": dist[99] / 1e6, "first_error": next(iter(r.get("errorDistribution") or {}), None)}


def batches(server: Server) -> tuple:
    """(rows, batches) modelcast's scoring thread has scored so far, from its /metrics."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{server.http}/metrics", timeout=5) as r:
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        for name in ("modelcast_http_batch_rows_sum", "modelcast_http_batch_rows_count"):
            if line.startswith(name + " "):
                values[name] = float(line.split()[1])
    return values.get("modelcast_http_batch_rows_sum", 0.0), values.get("modelcast_http_batch_rows_count", 0.0)


def measured(server: Server, load, warm_s: float, secs: float) -> dict:
    """LOAD(server, seconds, expected requests/s or None) after a warm-up with the same load."""
    warm = load(server, warm_s, None)
    mine = server.model != "wine"
    rows0, n0 = batches(server) if mine else (0.0, 0.0)
    cpu0, t0 = tree_cpu_s(server.proc.p.pid), time.monotonic()
    r = load(server, secs, warm["rps"])
    cpu, wall = tree_cpu_s(server.proc.p.pid) - cpu0, time.monotonic() - t0
    if mine:
        rows1, n1 = batches(server)
        r["rows_per_batch"] = (rows1 - rows0) / max(n1 - n0, 1)
    server.proc.check_alive("under load")
    if r["errors"]:
        raise BenchError(f"{server.proc.name}: {r['errors']} of {r['requests'] + r['errors']} requests failed: "
                         f"{r['first_error']}")
    return {**r, "cpu_us_per_request": cpu / max(r["requests"], 1) * 1e6, "cpu_cores": cpu / wall,
            "rss_mb": tree_rss_mb(server.proc.p.pid)}


def run(bed: Bed, quick: bool, python: str) -> dict:
    """The scenario: every server x protocol x client count, then modelcast's batching waits."""
    secs, warm = (2.0, 0.5) if quick else (10.0, 2.0)
    x = row()
    body = bed.work / "oip-one-row.json"
    body.write_text(json.dumps({"inputs": [{"name": "input-0", "shape": [1, 11], "datatype": "FP64", "data": x}]}))

    def message(server: Server) -> dict:
        return {"model_name": server.model,
                "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 11],
                            "contents": {"fp64_contents": x}}]}

    results = {"clients": list(CLIENTS), "seconds": secs, "servers": {}, "batching": {}}
    for name in ("modelcast", "mlserver"):
        server = start_modelcast(bed, "modelcast-oip") if name == "modelcast" else start_mlserver(bed, python)
        runs = {}
        for proto in ("http", "grpc"):
            for c in CLIENTS:
                def load(s, t, rps, c=c, proto=proto):
                    if proto == "http":
                        return http_load(s, c, t, body)
                    return grpc_load(s, c, t, message(s), int(rps * t) if rps else None)
                print(f"bench: oip {name} {proto} {c} clients", file=sys.stderr)
                runs[f"{proto}-{c}"] = measured(server, load, warm, secs)
        runs["idle_rss_mb"] = tree_rss_mb(server.proc.p.pid)
        results["servers"][name] = runs
        server.proc.stop()
    for wait in WAITS_US:
        server = start_modelcast(bed, f"modelcast-oip-wait{wait}", wait)
        runs = {}
        for c in CLIENTS:
            print(f"bench: oip batching wait {wait} us, {c} clients", file=sys.stderr)
            runs[str(c)] = measured(server, lambda s, t, _, c=c: http_load(s, c, t, body), warm, secs)
        results["batching"][str(wait)] = runs
        server.proc.stop()
    return results
