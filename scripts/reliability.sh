#!/usr/bin/env bash
# Fault-injection suite: the long forms of tests/it/reliability.rs (broker restart, S3 outage,
# ten kill -9s while 220,000 records flow, the soak; the normal suite runs each small), one at a
# time on a private test bed, plus a time-boxed proptest run of every decoder. Prints a
# pass/fail summary; see docs/RELIABILITY.md.
#   scripts/reliability.sh                           everything (~40 minutes: 5 decoders x 10 min of fuzzing on 2 cores)
#   MODELCAST_FUZZ_SECONDS=30 scripts/reliability.sh  a shorter fuzzing pass (~10 minutes in all)
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh install
status=0
summary=()
for t in broker_restart_mid_stream_loses_nothing_and_train_fails_cleanly \
	s3_outage_fails_train_and_predict_retries_the_new_model \
	crash_ten_times_while_220k_records_flow \
	soak_one_million_records_with_flat_memory_and_fds; do
	printf '\n== %s ==\n' "$t" >&2
	if scripts/services.sh run cargo test --release --locked --test it "reliability::$t" -- --include-ignored --exact --nocapture 2>&1 | tee "/tmp/modelcast-reliability-$t.log" | grep -E "^(RELIABILITY|test |broker restart|kill)|panicked"; then
		if grep -q "test result: ok. 1 passed" "/tmp/modelcast-reliability-$t.log"; then
			summary+=("PASS $t")
		else
			summary+=("FAIL $t"); status=1
		fi
	else
		summary+=("FAIL $t"); status=1
	fi
done
printf '\n== decoders under proptest (%s s each) ==\n' "${MODELCAST_FUZZ_SECONDS:=600}" >&2
if MODELCAST_FUZZ_SECONDS=$MODELCAST_FUZZ_SECONDS cargo test --release --locked --lib fuzz -- --nocapture 2>&1 |
	tee /tmp/modelcast-reliability-fuzz.log | grep -E "^FUZZ|panicked" >&2 && grep -q "test result: ok" /tmp/modelcast-reliability-fuzz.log; then
	summary+=("PASS fuzz ($MODELCAST_FUZZ_SECONDS s per decoder)")
else
	summary+=("FAIL fuzz"); status=1
fi
printf '\n== summary ==\n'
printf '%s\n' "${summary[@]}"
exit $status
