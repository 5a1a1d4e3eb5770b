#!/usr/bin/env bash
# The closed loop on the loopback test bed, end to end:
#
#   labelled records on a topic → train --data kafka://… (champion) → predict --serve --alias
#   champion → labels arrive → evaluate (live accuracy per version) → the scheduled retrain
#   train --data kafka://… --promote-if-better champion → the service swaps to the new champion.
#
# Usage: examples/closed-loop.sh        (builds modelcast, starts and stops its own test bed)
#        MODELCAST_BIN=path/to/modelcast examples/closed-loop.sh   (skip the build)
#
# Records are produced with the test bed's own `tansu cat produce` (no Python, no kcat). The
# wine rows play the traffic: the first 800 (with their quality) are the history the first model
# learns from; the other 799 are scored live, and their quality arrives later as labels and as
# new labelled history.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*" >&2; }

if [[ -n ${MODELCAST_BIN:-} ]]; then
	MC=$(realpath "$MODELCAST_BIN")
else
	cargo build --release --locked --bin modelcast >&2
	MC=$PWD/target/release/modelcast
fi
MODELCAST_S3S_FS=0 MODELCAST_SASL=0 MODELCAST_CHROMIUM=0 scripts/services.sh install
BED=$(mktemp -d "${TMPDIR:-/tmp}/modelcast-loop.XXXXXX")
WORK=$BED/work
mkdir -p "$WORK"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	scripts/services.sh stop "$BED/bed" >/dev/null 2>&1 || true
	rm -rf "$BED"
}
trap cleanup EXIT
MODELCAST_S3S_FS=0 MODELCAST_SASL=0 MODELCAST_CHROMIUM=0 scripts/services.sh start "$BED/bed" >&2
# shellcheck disable=SC1091
source "$BED/bed/env.sh"
TANSU=${MODELCAST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelcast}/tansu-0.6.0/bin/tansu
BROKER=tcp://$MODELCAST_TEST_BOOTSTRAP

cat >"$WORK/kafka.yaml" <<EOF
bootstrap.servers: $MODELCAST_TEST_BOOTSTRAP
fetch.wait.max.ms: 100
modelcast:
  topics: {train: loop-train, app_messages: loop-app, input: loop-in, dead_letter: loop-dead,
           shadow: loop-shadow, labels: loop-labels, model_metrics: loop-metrics}
  group_id: loop-predict
  partitions: 1
EOF
cp -r params data "$WORK/"
cd "$WORK"
"$MC" topics create --kafka-config kafka.yaml
"$TANSU" topic create --broker "$BROKER" --partitions 1 loop-labelled >/dev/null

# rows of the wine CSV as JSON lines for `tansu cat produce`: {"key": …, "value": {…}}
rows() { # FROM TO KIND (labelled | features | labels)
	python3 - "$@" <<'PY'
import csv, json, sys
lo, hi, kind = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with open("data/winequality-red.csv") as f:
    for i, r in enumerate(csv.DictReader(f)):
        if not lo <= i < hi:
            continue
        r = {k: float(v) for k, v in r.items()}
        key = f"w{i}"
        if kind == "features":
            r.pop("quality"); r["key"] = key; value = r
        elif kind == "labels":
            value = {"key": key, "label": r["quality"]}
        else:
            value = r
        print(json.dumps({"key": key, "value": value}))
PY
}
# one record per call: tansu 0.6.0 stores a multi-record batch from `cat produce` as one offset
produce() {
	local line
	while IFS= read -r line; do
		printf '%s\n' "$line" | "$TANSU" cat produce --broker "$BROKER" "$1" - >/dev/null
	done
}

log "1. the history: 800 labelled rows on loop-labelled; the first model trains from the topic"
rows 0 800 labelled | produce loop-labelled
"$MC" train --kafka-config kafka.yaml --data kafka://loop-labelled --promote champion --json |
	python3 -c 'import json,sys; r=json.load(sys.stdin); print("trained", r["version"], "held-out R²", round(r["metrics"]["model"]["r2"], 4))'

log "2. the service serves the champion; the evaluator watches the labels"
"$MC" predict --serve --kafka-config kafka.yaml --alias champion --log-format json 2>"$WORK/serve.log" &
PIDS+=($!)
"$MC" evaluate --serve --kafka-config kafka.yaml --interval 2s --horizon 1h 2>"$WORK/evaluate.log" &
PIDS+=($!)
sleep 3

log "3. live traffic: 799 records scored, then their labels arrive (and join the labelled history)"
rows 800 1599 features | produce loop-in
sleep 5
rows 800 1599 labels | produce loop-labels
rows 800 1599 labelled | produce loop-labelled
sleep 5
"$MC" evaluate --kafka-config kafka.yaml --horizon 1h >"$WORK/live.json"
python3 - "$WORK/live.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for v in m["versions"]:
    s = v["since_start"] or {"count": 0, "rmse": float("nan"), "mae": float("nan")}
    print("live: %s (%s): %d labels, RMSE %.4f, MAE %.4f" % (v["model_version"], v["stream"], s["count"], s["rmse"], s["mae"]))
print("joined:", m["counts"]["joined"], "pending predictions:", m["pending_predictions"])
PY

log "4. the scheduled retrain: all 1599 labelled rows; promoted only if better on the held-out rows"
set +e
"$MC" train --kafka-config kafka.yaml --data kafka://loop-labelled --promote-if-better champion
status=$?
set -e
case $status in
0) echo "promoted: the service swaps to the new champion" ;;
4) echo "not promoted (exit 4): the champion stays" ;;
*) exit "$status" ;;
esac
sleep 3
"$MC" history wine-quality --kafka-config kafka.yaml
grep -c '"event":"model_swapped"' "$WORK/serve.log" | xargs echo "hot swaps in the service:"
