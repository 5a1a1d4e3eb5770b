#!/usr/bin/env bash
# The whole test suite, from a fresh clone: format and lint checks, then every unit and
# integration test against real loopback services (Apache Kafka 4.4.0, garage and s3s-fs =
# S3), which scripts/services.sh installs once into ~/.cache/modelcast and starts/stops around
# the run. `.ci/run` calls exactly this. A failing run ends with the names and output of the
# failed tests (after the test bed's log tails), so the bottom of a red CI log says why.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s ==\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "install test services (cached after the first run)"
scripts/services.sh install

step "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

RUN_LOG=$(mktemp "${TMPDIR:-/tmp}/modelcast-test.XXXXXX")
trap 'rm -f "$RUN_LOG"' EXIT

# failed_tests: the failures of the run in $RUN_LOG, again: nextest's final block (its summary,
# then each failed test with its output) or libtest's `failures:` sections; otherwise (a build
# error, a crash of the test bed) the last lines of the run.
failed_tests() {
	step "failed tests (repeated from above)"
	if grep -qE '^ *Summary \[' "$RUN_LOG"; then
		sed -n '/^ *Summary \[/,$p' "$RUN_LOG" >&2
		printf '\nfailed:\n' >&2
		sed -n '/^ *Summary \[/,$p' "$RUN_LOG" | grep -E '^ +[A-Z-]+ +\[' >&2 || true
	elif grep -q '^test result: FAILED' "$RUN_LOG"; then
		awk '/^failures:$/ { on = 1 } on { print } /^test result: FAILED/ { on = 0 } /^error: / { print }' \
			"$RUN_LOG" >&2
	else
		tail -n 80 "$RUN_LOG" >&2
	fi
}

step "tests (with Kafka + garage + s3s-fs on 127.0.0.1)"
status=0
if cargo nextest --version >/dev/null 2>&1; then
	scripts/services.sh run cargo nextest run --locked --no-fail-fast --test-threads 2 \
		--failure-output final --final-status-level fail 2>&1 | tee "$RUN_LOG" || status=$?
	if ((status == 0)); then
		cargo test --locked --doc 2>&1 | tee "$RUN_LOG" || status=$?
	fi
else
	scripts/services.sh run cargo test --locked --no-fail-fast 2>&1 | tee "$RUN_LOG" || status=$?
fi
if ((status != 0)); then
	failed_tests
	exit "$status"
fi
