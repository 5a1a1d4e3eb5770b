"""Turns e2e-bench/harness.py's results into results.json, results.md (BENCHMARKS.md-ready) and bench.png."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NAMES = {
    "modelcast": "modelcast predict --serve",
    "modelcast_fastfetch": "modelcast predict --serve, fetch.wait.max.ms: 10",
    "modelcast_nodrift": "modelcast predict --serve --no-drift",
    "modelcast_forest": "modelcast predict --serve, the default random forest (100 trees)",
    "modelcast_shadow": "modelcast predict --serve --alias champion --shadow challenger",
    "modelcast_rollback": "modelcast --serve --alias champion: promote forward / rollback to an older version, fetch.wait.max.ms: 10",
    "passthrough": "passthrough (no model: the Kafka limit)",
    "passthrough_fastfetch": "passthrough, fetch.wait.max.ms: 10",
    "batched": "Python, batched (1000/poll, vectorised)",
    "seed": "Python, the seed's way (1 record/poll)",
}


def num(x, digits: int = 0) -> str:
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def ratio(x: float) -> str:
    return f"{x:.2f}×" if x >= 1 else f"{x:.3g}× (1/{1 / x:.3g})"


def table(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def environment(env: dict) -> str:
    s = env["sizes"]
    quick = "\n**Quick smoke run (`--quick`): tiny counts, numbers not meaningful.**\n" if env["quick"] else ""
    return f"""# Benchmarks

{env["date"]}: {env["cores"]} cores ({env["cpu"]}), {env["memory_gib"]} GiB memory, Linux {env["kernel"]}.
{env["modelcast"]} built by {env["rustc"]}; Python {env["python"]}, scikit-learn {env["scikit-learn"]},
pandas {env["pandas"]}, numpy {env["numpy"]}, confluent-kafka {env["confluent-kafka"]} (librdkafka {env["librdkafka"]}).
Broker: {env["broker"]}. The broker, the contender and the load generator share the same cores.
Made by `scripts/bench.sh{" --quick" if env["quick"] else ""}` (e2e-bench/harness.py); sizes: {s["n"]:,} records
(seed predictor {s["n_seed"]:,}), latency loads {", ".join(f"{r:,}" for r in s["rates"])} records/s for
{s["rate_secs"]:g} s each, hot swap {s["swaps"]} retrainings at {s["swap_rate"]:,} records/s, training CSV {s["train_rows"]:,} rows.
{quick}"""


def throughput(r: dict, env: dict) -> str:
    rows = []
    for name, c in r["contenders"].items():
        rows.append(
            [
                NAMES[name],
                num(c["records"]),
                num(c["seconds"], 2),
                num(c["first_output_s"], 2),
                f"**{num(c['records_per_s'])}**",
                num(c["cpu_s"], 2),
                num(c["cpu_s_per_100k"], 2),
                num(c["peak_mb"], 1),
                num(c["peak_mb_per_100k"], 1),
            ]
        )
    ratios = [
        [f"modelcast / {NAMES[o]}", ratio(v["throughput"]), ratio(v["cpu_s_per_100k"]), ratio(v["peak_mb"])]
        for o, v in r["modelcast_over"].items()
    ]
    if "shadow_over_plain" in r:
        v = r["shadow_over_plain"]
        ratios.append(
            ["shadow scoring / plain serving", ratio(v["throughput"]), ratio(v["cpu_s_per_100k"]), ratio(v["peak_mb"])]
        )
    if "drift_over_nodrift" in r:
        v = r["drift_over_nodrift"]
        ratios.append(
            ["drift on / --no-drift", ratio(v["throughput"]), ratio(v["cpu_s_per_100k"]), ratio(v["peak_mb"])]
        )
    if "forest_over_ridge" in r:
        v = r["forest_over_ridge"]
        ratios.append(
            ["random forest / ridge (CPU: the rounds' median)", ratio(v["throughput"]), ratio(v["cpu_s_per_100k"]),
             ratio(v["peak_mb"])]
        )
    return f"""## Predict throughput

{env["sizes"]["n"]:,} JSON wine records pre-loaded in a 3-partition topic; each contender starts with a
fresh consumer group and output topic; timed from process start until all its outputs are in the
output topic (high watermarks polled every 50 ms), so start-up and group join are included. The
seed predictor processes only the first {env["sizes"]["n_seed"]:,} records: its rate comes from those.

{table(["contender", "records", "wall s", "first output s", "records/s", "CPU s", "CPU s /100k", "peak RSS MB", "peak MB /100k"], rows)}

{table(["ratio", "throughput", "CPU s per 100k", "peak RSS"], ratios)}

CPU is utime + stime of the process (/proc/PID/stat) from its start (start-up, group join and
model load included), peak RSS is VmHWM, both read when the last output arrived. Peak RSS does
not grow with the record count, so its ratio compares absolute peaks.
{pairs_line(r)}{drift_line(r)}{idle_line(r)}"""


def pairs_line(r: dict) -> str:
    pairs = r.get("pairs") or []
    if len(pairs) < 2:
        return ""
    cpu = ", ".join(f"{p['cpu_s_per_100k']:.2f}" for p in pairs)
    tput = ", ".join(f"{p['throughput']:.2f}" for p in pairs)
    return (
        f"\nmodelcast and the passthrough ran {len(pairs)} times each, alternating, each run with a fresh "
        "group and output topic; their rows are per-metric medians, and the ratios against the passthrough are the medians of "
        "the pairs' ratios (the broker slows as its store grows, so a back-to-back pair is the fair comparison). "
        f"Per pair, CPU per record modelcast / passthrough: {cpu}; throughput: {tput}.\n"
    )


def drift_line(r: dict) -> str:
    pairs = r.get("drift_pairs") or []
    if not pairs:
        return ""
    cpu = ", ".join(f"{p['cpu_s_per_100k']:.3f}" for p in pairs)
    return (
        "\nDrift: modelcast counting every record into drift windows (the default) and with `--no-drift` "
        f"ran back to back in each of the {len(pairs)} rounds; the row above is the median of the rounds' ratios. "
        f"Per round, CPU per record drift on / off: {cpu}.\n"
    )


def idle_line(r: dict) -> str:
    c = r["contenders"]
    if c.get("modelcast", {}).get("idle_cpu_s_per_min") is None or "idle_cpu" not in r["modelcast_over"]["passthrough"]:
        return ""
    mc, pt = c["modelcast"]["idle_cpu_s_per_min"], c["passthrough"]["idle_cpu_s_per_min"]
    return (
        f"\nIdle (no records, measured for 10 s after the work, run time of the threads in ns): "
        f"modelcast {mc:.3f} CPU-s per minute, "
        f"the passthrough {pt:.3f}: **{r['modelcast_over']['passthrough']['idle_cpu']:.2f}×**.\n"
    )


def recovery(r: dict) -> str:
    names = {
        "static_kill": "`--instance-id` (static member), after `kill -9`",
        "dynamic_term": "no instance id (dynamic member), after SIGTERM",
        "dynamic_kill": "no instance id (dynamic member), after `kill -9`",
    }
    rows = [
        [
            names.get(case, case),
            num(m["fresh_s"], 2),
            str(m["restarts"]),
            f"**{num(m['restart_p50_s'], 2)}**" if m["restart_p50_s"] is not None else "-",
            num(m["restart_max_s"], 2) if m["restart_max_s"] is not None else "> 60",
            ", ".join(num(t, 1) if t is not None else "> 60" for t in m["restart_s"]),
        ]
        for case, m in r.items()
    ]
    return f"""## Recovery time

`predict --serve` start → its first acknowledged prediction (the first new record in its output
topic, polled every 20 ms), with records queued: once fresh (new group), then after each stop and
immediate restart (a restart is waited for at most 60 s).

{table(["membership, stop", "fresh start s", "restarts", "restart p50 s", "restart max s", "each restart s"], rows)}
"""


def latency(r: dict) -> str:
    rows = []
    for name, by_rate in r.items():
        for rate, m in by_rate.items():
            t, w = m["record_ts_ms"], m["receive_ms"]
            rows.append(
                [
                    NAMES[name],
                    num(int(rate)),
                    num(m["offered_per_s"]),
                    num(t["p50"], 1),
                    num(t["p99"], 1),
                    num(t["p999"], 1),
                    f"{num(w['p50'], 1)} / {num(w['p99'], 1)} / {num(w['p999'], 1)}",
                    num(m.get("drift_ms")),
                    m["missing"],
                ]
            )
    return f"""## Latency under a steady load

A producer offers records at a steady rate, each stamped with its send time (explicit Kafka
timestamp). Latency = output record's Kafka timestamp − input record's timestamp (for modelcast the
prediction's `input_timestamp_ms`, checked to equal the send time), and also the reader's wall-clock
receive time − send time (reader polls every 5 ms). Warm-up records are sent first and excluded.
On a broker that does not answer a consumer's waiting fetch early when records arrive (Apache Kafka
does), they are seen up to `fetch.wait.max.ms` (librdkafka default 500 ms) later, which then sets
the floor of the first two rows. The last rows are modelcast with `fetch.wait.max.ms: 10` in its
kafka_config.yaml (the passthrough example has no such setting). Drift = median latency of the last
fifth of the load − that of the first fifth: hundreds of ms or more mean a growing backlog, i.e.
the offered rate is more than the contender (or the test bed: broker, load generator and contender
share the cores) sustains, and the percentiles then measure queueing.

{table(["contender", "offered /s", "achieved /s", "p50 ms", "p99 ms", "p99.9 ms", "receive p50 / p99 / p99.9 ms", "drift ms", "missing"], rows)}
"""


def hot_swap(r: dict) -> str:
    rows = []
    for name, m in r.items():
        s = m["swap_ms"]
        rows.append(
            [
                NAMES[name],
                m["retrainings"],
                num(m["offered"]),
                num(m["offered_per_s"]),
                num(s["p50"]),
                num(s["max"]),
                "–" if "rollback_ms" not in m or not m["rollback_ms"]["count"]
                else f"{num(m['rollback_ms']['p50'])} / {num(m['rollback_ms']['max'])}",
                m["never_served"],
                f"**{m['lost']}**",
                f"**{m['scored_twice']}**",
                num(m["train_wall_s_median"], 3),
            ]
        )
    return f"""## Hot swap under load

While records flow into `modelcast predict --serve`, `modelcast train --kafka-config` runs
several times, a few seconds apart. Swap time = first prediction (by record timestamp) naming the
new version − the announcement's record timestamp on the train topic. Lost = inputs with no
prediction; scored twice = keys with more than one prediction (expected 0 and 0). The train-topic
follower's fetches wait too (see the latency notes), hence the `fetch.wait.max.ms: 10` row. The
last row serves `--alias champion` and, instead of retraining, alternately promotes the newer
version and rolls back to the older one (`modelcast promote` / `modelcast rollback`); its swap is
measured from each alias move, and the rollback column is the moves back to the older version.

{table(["contender", "moves", "inputs", "offered /s", "swap p50 ms", "swap max ms", "rollback p50 / max ms", "never served", "lost", "scored twice", "command wall s"], rows)}
"""


def polars_ratios(r: dict) -> str:
    if "polars_wall_ratio" not in r:
        return ""
    return (f"; polars + scikit-learn / modelcast: **{r['polars_wall_ratio']:.1f}×** the wall time, "
            f"**{r['polars_peak_ratio']:.1f}×** the peak memory")


def train(r: dict) -> str:
    rows = [
        [n, num(r[k]["wall_s"], 2), num(r[k]["cpu_s"], 2), num(r[k]["peak_mb"], 0), f"{r[k]['r2']:.4f}"]
        for n, k in (
            ("`modelcast train`", "modelcast"),
            ("pandas + scikit-learn", "sklearn"),
            ("polars + scikit-learn", "polars"),
        )
        if k in r
    ]
    return f"""## Training

{r["rows"]:,}-row CSV ({r["csv_mb"]:.0f} MB; 20 numeric columns, 3 categorical with 5/20/50 levels,
~1% missing cells, fixed seed), ridge (alpha 1) after mean imputation, standardisation and one-hot
encoding, 20% held out, R² on the held-out part, model written to a file. Wall, CPU and peak RSS of
the child process (getrusage of a fresh wrapper).

{table(["", "wall s", "CPU s", "peak RSS MB", "held-out R²"], rows)}

scikit-learn / modelcast: **{r["wall_ratio"]:.1f}×** the wall time, **{r["peak_ratio"]:.1f}×** the peak memory{polars_ratios(r)}.
Full `modelcast train` of the wine model (1,599 rows) including the local store write and the
Kafka announcement (acknowledged): median {num(1000 * r["wine_full_train_s_median"], 1)} ms, peak RSS {num(r["wine_full_train_peak_mb"], 1)} MB.
"""


def train_trees(r: dict) -> str:
    rows = [
        f"## Training tree ensembles\n\n{r['rows']:,}-row training CSV (as above), 20% held out; the same "
        "hyperparameters everywhere they map (e2e-bench/peers/boosters_train.py), threads = cores. "
        "scikit-learn (one-hot): RandomForestRegressor(n_jobs=-1, exact splits) and "
        "HistGradientBoostingRegressor(early_stopping=False) on a dense one-hot block; LightGBM, XGBoost "
        "and scikit-learn (native) with pandas categories, as their users run them.\n",
        "| model | hyperparameters | contender | wall s | CPU s | peak RSS MB | held-out R² |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = (
        ("modelcast", "`modelcast train`"),
        ("sklearn", "pandas + scikit-learn (one-hot)"),
        ("sklearn_native", "pandas + scikit-learn (native categories)"),
        ("lightgbm", "pandas + LightGBM"),
        ("xgboost", "pandas + XGBoost (hist)"),
    )
    for kind in ("gradient_boosting", "random_forest"):
        k = r.get(kind)
        if not k:
            continue
        hp = ", ".join(f"{a}={b}" for a, b in k["hyperparameters"].items() if a != "kind")
        for who, label in labels:
            m = k.get(who)
            if m:
                rows.append(f"| {kind} | {hp} | {label} | {m['wall_s']:.2f} | {m['cpu_s']:.2f} | {m['peak_mb']:,.0f} | {m['r2']:.4f} |")
    rows.append("")
    for kind in ("gradient_boosting", "random_forest"):
        if kind not in r:
            continue
        k = r[kind]
        parts = [f"scikit-learn (one-hot) **{k['wall_ratio']:.2f}×**"]
        parts += [f"{label.split(' + ')[1]} **{k[f'{who}_wall_ratio']:.2f}×**" for who, label in labels[2:] if f"{who}_wall_ratio" in k]
        peaks = [k[who]["peak_mb"] for who, _ in labels[1:] if who in k]
        rows.append(f"{kind}: the peers' wall time over modelcast's: {', '.join(parts)}; modelcast's peak RSS is "
                    f"**{k['modelcast']['peak_mb'] / min(peaks):.2f}×** the lowest peer's.")
    return "\n".join(rows) + "\n"


def train_classifier(r: dict) -> str:
    sizes = sorted((k for k in r if k.isdigit()), key=int)
    rows = [
        "## Training a classifier out of core\n\nLogistic regression (C=1.0, L2) on a synthetic binary task: "
        "20 numeric and 3 categorical columns, 20% held out; scikit-learn's LogisticRegression "
        "(lbfgs, max_iter=1000) on the smaller CSV with the same preprocessing.\n",
        "| rows | CSV MB | contender | wall s | CPU s | peak RSS MB | held-out accuracy | log loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size in sizes:
        for who, label in (("modelcast", "`modelcast train`"), ("sklearn", "pandas + scikit-learn")):
            m = r[size].get(who)
            if m:
                rows.append(f"| {int(size):,} | {r[size]['csv_mb']:,.0f} | {label} | {m['wall_s']:.2f} | {m['cpu_s']:.2f} | "
                            f"{m['peak_mb']:,.0f} | {m['accuracy']:.4f} | {m['log_loss']:.4f} |")
    rows.append("")
    small = r[sizes[0]]
    if "wall_ratio" in small:
        rows.append(f"scikit-learn / modelcast on {int(sizes[0]):,} rows: **{small['wall_ratio']:.1f}×** the wall time, "
                    f"**{small['peak_ratio']:.1f}×** the peak memory.")
    rows.append(f"modelcast's peak RSS on {int(sizes[-1]):,} rows / on {int(sizes[0]):,}: **{r['peak_growth_10x_rows']:.2f}×**.")
    b = r.get("boosting")
    if b:
        rows += [
            "",
            f"Histogram gradient boosting on the {b['rows']:,} rows (HistGradientBoostingClassifier's defaults: "
            "100 rounds, 31 leaves, learning rate 0.1, no early stopping):",
            "",
            "| contender | wall s | CPU s | peak RSS MB | held-out accuracy | log loss |",
            "|---|---|---|---|---|---|",
        ]
        for who, label in (("modelcast", "`modelcast train`, gradient_boosting_classifier"),
                           ("sklearn", "pandas + HistGradientBoostingClassifier")):
            m = b[who]
            rows.append(f"| {label} | {m['wall_s']:.2f} | {m['cpu_s']:.2f} | {m['peak_mb']:,.0f} | "
                        f"{m['accuracy']:.4f} | {m['log_loss']:.4f} |")
        rows += ["", f"scikit-learn / modelcast: **{b['wall_ratio']:.2f}×** the wall time, "
                     f"**{b['peak_ratio']:.1f}×** the peak memory."]
    return "\n".join(rows) + "\n"


def oip(r: dict) -> str:
    """Request/response scoring against MLServer, then modelcast's batching waits."""
    mc, ml = r["servers"]["modelcast"], r["servers"]["mlserver"]
    rows = [
        "## Request/response scoring: the Open Inference Protocol against MLServer\n\n"
        "One-row requests (one [1, 11] FP64 tensor) to the wine ridge model: modelcast `predict --http "
        "--grpc` against MLServer with its sklearn runtime serving the same pipeline (standardize + ridge). "
        f"Closed loop, {r['seconds']:g} s per cell after a warm-up: vegeta (HTTP/JSON) and ghz (gRPC); the "
        "load generator shares the 2 cores. CPU per request and RSS are the server's process tree "
        "(MLServer: its server and inference worker processes).\n",
        "| protocol | clients | server | requests/s | p50 ms | p99 ms | CPU µs/request | RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for proto in ("http", "grpc"):
        for c in r["clients"]:
            for label, runs in (("modelcast", mc), ("MLServer", ml)):
                m = runs[f"{proto}-{c}"]
                rows.append(f"| {proto.upper() if proto == 'http' else 'gRPC'} | {c} | {label} | {m['rps']:,.0f} | "
                            f"{m['p50_ms']:.3f} | {m['p99_ms']:.2f} | {m['cpu_us_per_request']:,.0f} | {m['rss_mb']:,.0f} |")
    rows.append("")
    ratios = []
    for proto in ("http", "grpc"):
        for c in r["clients"]:
            a, b = mc[f"{proto}-{c}"], ml[f"{proto}-{c}"]
            ratios.append(f"{'HTTP' if proto == 'http' else 'gRPC'} ×{c}: **{a['rps'] / b['rps']:.1f}×** the requests/s, "
                          f"p99 {b['p99_ms'] / a['p99_ms']:.1f}× lower, {b['cpu_us_per_request'] / a['cpu_us_per_request']:.1f}× "
                          "less CPU per request")
    rows.append("modelcast / MLServer: " + "; ".join(ratios) + ".")
    rows.append(f"RSS after the runs: modelcast {mc['idle_rss_mb']:,.0f} MB, MLServer {ml['idle_rss_mb']:,.0f} MB.")
    rows += [
        "",
        "### Adaptive batching: what waiting buys\n\nThe same HTTP load against modelcast started with "
        "`--batch-wait-us` 0 (the default: a batch is what arrived while the previous one was scored), and "
        "longer waits for more requests to join a batch.\n",
        "| --batch-wait-us | clients | requests/s | p50 ms | p99 ms | CPU µs/request | rows per batch |",
        "|---|---|---|---|---|---|---|",
    ]
    for wait, runs in r["batching"].items():
        for c in r["clients"]:
            m = runs[str(c)]
            rows.append(f"| {wait} | {c} | {m['rps']:,.0f} | {m['p50_ms']:.3f} | {m['p99_ms']:.2f} | "
                        f"{m['cpu_us_per_request']:,.0f} | {m.get('rows_per_batch', float('nan')):.1f} |")
    return "\n".join(rows) + "\n"


def topic_train(r: dict) -> str:
    rows = [
        [f"`train --data kafka://…` ({r[k]['records']:,} records)", num(r[k]["wall_s"], 2), num(r[k]["cpu_s"], 2), num(r[k]["peak_mb"], 0)]
        for k in ("small", "large")
    ]
    rows.append([f"`train --data wine-x{r['large']['records']}.csv` (the same rows)", num(r["csv_large"]["wall_s"], 2),
                 num(r["csv_large"]["cpu_s"], 2), num(r["csv_large"]["peak_mb"], 0)])
    return f"""## Training from a topic

Red wine rows repeated as labelled JSON records on a 3-partition topic, trained with ridge
(the shipped params) from the topic: the records go to a spool re-read in blocks, so peak RSS
should not grow with the topic (target: the large topic within 1.5× the small one's).

{table(["", "wall s", "CPU s", "peak RSS MB"], rows)}

Peak RSS, large / small topic: **{r["peak_ratio_large_small"]:.2f}×**.
"""


def cold_start(r: dict) -> str:
    rows = [
        [
            "`modelcast predict --input one-row.csv`",
            num(r["modelcast"]["wall_ms_median"], 1),
            num(r["modelcast"]["peak_mb"], 1),
        ],
        [
            "Python: import sklearn, unpickle, predict one row",
            num(r["python"]["wall_ms_median"], 1),
            num(r["python"]["peak_mb"], 1),
        ],
    ]
    return f"""## Cold start

Process start to one prediction of a one-row CSV, median of the runs.

{table(["", "wall ms", "peak RSS MB"], rows)}

Python / modelcast: **{r["ratio"]:.1f}×**.
"""


def plot(results: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.8))
    for ax in axes:
        ax.text(0.5, 0.5, "not measured in this run", ha="center", va="center", transform=ax.transAxes, color="grey")
    if "throughput" in results:
        c = results["throughput"]["contenders"]
        names = list(c)
        for ax, key, label in (
            (axes[0], "records_per_s", "records/s (higher is better)"),
            (axes[1], "cpu_s_per_100k", "CPU s per 100k records (lower is better)"),
        ):
            bars = ax.bar(
                names, [c[n][key] for n in names], color=["#d95f02" if n == "modelcast" else "#7570b3" for n in names]
            )
            ax.bar_label(bars, fmt="{:,.0f}" if key == "records_per_s" else "{:,.2f}")
            ax.texts[0].remove()
            ax.set_title(label)
            ax.set_yscale("log")
    if "latency" in results:
        ax, labels, series = axes[2], ["p50", "p99", "p999"], []
        ax.texts[0].remove()
        for name, by_rate in results["latency"].items():
            for rate, m in by_rate.items():
                series.append((f"{name} @ {int(rate):,}/s", [m["record_ts_ms"][p] or 0 for p in labels]))
        width = 0.8 / max(1, len(series))
        for i, (label, values) in enumerate(series):
            ax.bar([j + i * width for j in range(len(labels))], values, width, label=label)
        ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(labels))], ["p50", "p99", "p99.9"])
        ax.set_title("end-to-end latency, ms (lower is better)")
        ax.set_yscale("log")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("modelcast benchmark" + (" (quick smoke run)" if results["environment"]["quick"] else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: dict, out: Path) -> str:
    """Write results.json, results.md and bench.png into OUT; return the markdown."""
    parts = [environment(results["environment"])]
    for key, render in (
        ("throughput", lambda r: throughput(r, results["environment"])),
        ("latency", latency),
        ("hot_swap", hot_swap),
        ("train", train),
        ("topic_train", topic_train),
        ("train_trees", train_trees),
        ("train_classifier", train_classifier),
        ("cold_start", cold_start),
        ("recovery", recovery),
        ("oip", oip),
    ):
        if key in results:
            parts.append(render(results[key]))
    if results["errors"]:
        parts.append(
            "## Failed scenarios\n\n"
            + "\n".join(f"- **{k}**: {v.splitlines()[0]}" for k, v in results["errors"].items())
            + "\n"
        )
    parts.append("![throughput, CPU and latency](bench.png)\n")
    markdown = "\n".join(parts)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(markdown)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    plot(results, out / "bench.png")
    return markdown


if __name__ == "__main__":
    # Re-render results.md and bench.png from OUT/results.json: python e2e-bench/report.py [OUT]
    import sys

    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "out")
    print(write(json.loads((out_dir / "results.json").read_text()), out_dir))
