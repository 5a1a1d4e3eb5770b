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
# The test bed is the Apache Kafka broker of scripts/services.sh alone (no S3 server: models go
# to the file store in the work directory); its install needs java 17+ and mvn. Records are
# produced with Kafka's own console producer (org.apache.kafka.tools.ConsoleProducer, from the
# kafka-tools jar that the install puts next to the broker's), no Python Kafka client, no kcat.
# The wine rows play the traffic: the first 800 (with their quality) are the history the first
# model learns from; the other 799 are scored live, and their quality arrives later as labels and
# as new labelled history.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

log() { printf '\n== %s\n' "$*" >&2; }
# the test bed without the S3 servers, Chromium or the export checkers
bed() { MODELCAST_GARAGE=0 MODELCAST_S3S_FS=0 MODELCAST_CHROMIUM=0 MODELCAST_EXPORT_CHECKS=0 "$ROOT/scripts/services.sh" "$@"; }

if [[ -n ${MODELCAST_BIN:-} ]]; then
	MC=$(realpath "$MODELCAST_BIN")
else
	cargo build --release --locked --bin modelcast >&2
	MC=$PWD/target/release/modelcast
fi
bed install
BED=$(mktemp -d "${TMPDIR:-/tmp}/modelcast-loop.XXXXXX")
WORK=$BED/work
mkdir -p "$WORK"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	bed stop "$BED/bed" >/dev/null 2>&1 || true
	rm -rf "$BED"
}
trap cleanup EXIT
bed start "$BED/bed" >&2
# shellcheck disable=SC1091
source "$BED/bed/env.sh"
BOOTSTRAP=$MODELCAST_TEST_BOOTSTRAP

# Kafka's command-line tools, run from the broker's jars ($MODELCAST_TEST_BROKER is kafka-VERSION,
# the name of its directory in the cache): a small client JVM, C1 only, quiet logging
LIBS=${MODELCAST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelcast}/$MODELCAST_TEST_BROKER/libs
compgen -G "$LIBS/kafka-tools-*.jar" >/dev/null ||
	{ echo "no kafka-tools jar in $LIBS: run scripts/services.sh install" >&2; exit 1; }
kafka_tool() { # CLASS ARGS...
	local class=$1
	shift
	env -u JAVA_TOOL_OPTIONS -u JDK_JAVA_OPTIONS -u _JAVA_OPTIONS "${MODELCAST_JAVA:-java}" \
		-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData \
		-Dlog4j2.level=WARN -cp "$LIBS/*" "org.apache.kafka.tools.$class" "$@"
}

cat >"$WORK/kafka.yaml" <<EOF
bootstrap.servers: $BOOTSTRAP
modelcast:
  topics: {train: loop-train, app_messages: loop-app, input: loop-in, dead_letter: loop-dead,
           shadow: loop-shadow, labels: loop-labels, model_metrics: loop-metrics}
  group_id: loop-predict
  partitions: 1
EOF
cp -r params data "$WORK/"
cd "$WORK"
"$MC" topics create --kafka-config kafka.yaml
kafka_tool TopicCommand --bootstrap-server "$BOOTSTRAP" --create --topic loop-labelled \
	--partitions 1 --replication-factor 1 >/dev/null

# rows of the wine CSV as KEY<TAB>JSON lines for the console producer
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
        print(key, json.dumps(value), sep="\t")
PY
}
# produce TOPIC: stdin's KEY<TAB>VALUE lines as records (acks=all, idempotent: the defaults)
produce() {
	kafka_tool ConsoleProducer --bootstrap-server "$BOOTSTRAP" --topic "$1" \
		--reader-property parse.key=true --reader-property key.separator=$'\t'
}
# live_json: the live accuracy so far, as JSON
live_json() { "$MC" evaluate --kafka-config kafka.yaml --horizon 1h; }

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
rows 800 1599 labels | produce loop-labels
rows 800 1599 labelled | produce loop-labelled
# until every label has met its prediction (60 s at most)
for _ in $(seq 60); do
	live_json >"$WORK/live.json"
	python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["counts"]["joined"] < 799)' "$WORK/live.json" && break
	sleep 1
done
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
swaps() { grep -c '"event":"model_swapped"' "$WORK/serve.log" || true; }
if ((status == 0)); then
	# the service follows the alias: wait (30 s at most) for it to swap
	for _ in $(seq 30); do
		(($(swaps) >= 1)) && break
		sleep 1
	done
fi
"$MC" history wine-quality --kafka-config kafka.yaml
echo "hot swaps in the service: $(swaps)"
