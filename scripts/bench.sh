#!/usr/bin/env bash
# End-to-end benchmark: modelcast against the raw Kafka limit (examples/passthrough.rs) and the
# seed's Python pipeline, all measured in one run on a loopback test bed.
#
# Usage:
#   scripts/bench.sh [--quick] [HARNESS_ARGS...]
#
#   --quick   tiny counts: a smoke run of every scenario (under 2 minutes once built)
#   other arguments go to e2e-bench/harness.py (e.g. --out DIR, --only throughput,latency)
#
# Steps: cargo build --release (modelcast and the passthrough example), a Python venv from
# e2e-bench/requirements.txt in $MODELCAST_CACHE/bench-venv (made once, remade when the file
# changes; it holds MLServer for the oip scenario), vegeta and ghz (the oip scenario's load
# generators, built once into $MODELCAST_CACHE/bench-go-bin), the test bed (scripts/services.sh start; stopped on exit, also on failure), then
# e2e-bench/harness.py. Results: e2e-bench/out/results.md, results.json, bench.png (not committed).
#
# Environment:
#   MODELCAST_CACHE   cache directory (default: ${XDG_CACHE_HOME:-$HOME/.cache}/modelcast)
#   PYTHON            interpreter for the venv (default: python3.11, else python3)
#   CARGO_BUILD_JOBS  as for cargo (e.g. 1 to leave a core free)
set -euo pipefail
cd "$(dirname "$0")/.."

MODELCAST_CACHE="${MODELCAST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelcast}"
export MODELCAST_CACHE
VENV="$MODELCAST_CACHE/bench-venv"

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
	sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"
	exit 0
fi

log "building modelcast and the passthrough example (release)"
cargo build --release --locked --bin modelcast --example passthrough

# The venv is rebuilt when e2e-bench/requirements.txt changes (its hash is kept inside the venv).
want=$(sha256sum e2e-bench/requirements.txt | cut -d' ' -f1)
if [[ ! -x $VENV/bin/python || $(cat "$VENV/.requirements.sha256" 2>/dev/null) != "$want" ]]; then
	python=${PYTHON:-$(command -v python3.11 || command -v python3)} || die "python3 is needed"
	log "creating $VENV with $($python --version 2>&1)"
	rm -rf "$VENV"
	mkdir -p "$MODELCAST_CACHE"
	"$python" -m venv "$VENV"
	"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r e2e-bench/requirements.txt
	printf '%s\n' "$want" >"$VENV/.requirements.sha256"
fi

# The request/response scenario's load generators, pinned, built once into the cache
# (Go module proxy; about 40 s the first time).
GOTOOLS="$MODELCAST_CACHE/bench-go-bin"
for mod in github.com/tsenart/vegeta/v12@v12.13.0 github.com/bojand/ghz/cmd/ghz@v0.93.0; do
	name=${mod%@*}
	name=${name##*/}
	[[ $name == v12 ]] && name=vegeta
	if [[ ! -x $GOTOOLS/$name.${mod#*@} ]]; then
		command -v go >/dev/null || die "go is needed to build $name (the load generator of the oip scenario)"
		log "building $mod"
		GOBIN="$GOTOOLS/tmp" go install "$mod"
		mv "$GOTOOLS/tmp/$name" "$GOTOOLS/$name.${mod#*@}"
	fi
	export "MODELCAST_BENCH_${name^^}=$GOTOOLS/$name.${mod#*@}"
done

MODELCAST_S3S_FS=0 scripts/services.sh install
BED=$(mktemp -d "${TMPDIR:-/tmp}/modelcast-bench.XXXXXX")
HARNESS_PID=""
cleanup() {
	local status=$?
	if [[ -n $HARNESS_PID ]]; then
		kill -TERM "$HARNESS_PID" 2>/dev/null || true
		wait "$HARNESS_PID" 2>/dev/null || true
	fi
	scripts/services.sh stop "$BED" || true
	if ((status != 0)); then
		for f in "$BED"/*.log; do
			[[ -e $f ]] || continue
			log "last lines of $(basename "$f"):"
			tail -n 10 "$f" >&2 || true
		done
	fi
	rm -rf "$BED"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Only the broker is needed; garage comes along with `start` (s3s-fs is skipped).
MODELCAST_S3S_FS=0 scripts/services.sh start "$BED"
# shellcheck source=/dev/null
source "$BED/env.sh"

log "running e2e-bench/harness.py against $MODELCAST_TEST_BROKER at $MODELCAST_TEST_BOOTSTRAP"
status=0
"$VENV/bin/python" e2e-bench/harness.py "$@" &
HARNESS_PID=$!
wait "$HARNESS_PID" || status=$?
HARNESS_PID=""
exit "$status"
