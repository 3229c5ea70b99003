#!/usr/bin/env bash
# `make fuzz`: builds every fuzz target (hull-vmm's in vmm/fuzz, the
# host's in fuzz/) with libFuzzer's coverage instrumentation on the stable
# toolchain, runs each for a fixed number of executions from its seeds
# (FUZZ_RUNS, default 100000; by count, not time, so CI is repeatable) and
# prints a table of executions and crashes. Exits non-zero if a target
# crashed; the input that did is kept under build/fuzz/crashes/.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${FUZZ_RUNS:-100000}
out=${FUZZ_OUT:-$PWD/build/fuzz}
target_dir=${FUZZ_TARGET_DIR:-$PWD/target/fuzz}
triple=x86_64-unknown-linux-gnu
# cargo-fuzz's instrumentation without a sanitizer: every flag is stable.
# --target keeps build scripts and proc macros uninstrumented.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"

declare -A crate_of=(
  [blk]=vmm/fuzz [net]=vmm/fuzz [vsock]=vmm/fuzz [snapshot]=vmm/fuzz
  [host_to_agent]=fuzz [agent_to_host]=fuzz [oci_config]=fuzz
  [image_documents]=fuzz [image_layer]=fuzz
)
order=(blk net vsock snapshot host_to_agent agent_to_host oci_config image_documents image_layer)

for crate in vmm/fuzz fuzz; do
  cargo build --release --locked --target "$triple" --manifest-path "$crate/Cargo.toml" \
    --target-dir "$target_dir" >&2
done

rm -rf "$out" && mkdir -p "$out/crashes"
# image_layer unpacks into a fresh directory per input: on tmpfs, not disk.
[[ -d /dev/shm ]] && export TMPDIR=/dev/shm
report="$out/report.md"
printf '| target | executions | crashes | seconds |\n|---|---:|---:|---:|\n' >"$report"
failed=0
for t in "${order[@]}"; do
  corpus="$out/corpus/$t"
  mkdir -p "$corpus"
  seeds="${crate_of[$t]}/seeds/$t"
  [[ -d $seeds ]] && cp "$seeds"/* "$corpus"/
  log="$out/$t.log"
  status=0
  # -seed fixes libFuzzer's choices; inputs up to 64 KiB; a target
  # holding more than 2 GiB is a finding too.
  "$target_dir/$triple/release/$t" -runs="$runs" -seed=1 -max_len=65536 -rss_limit_mb=2048 \
    -timeout=10 -print_final_stats=1 -artifact_prefix="$out/crashes/$t-" "$corpus" \
    >"$log" 2>&1 || status=$?
  done_line=$(grep -E '^Done [0-9]+ runs' "$log" | tail -1 || true)
  execs=$(sed -E 's/^Done ([0-9]+) runs.*/\1/' <<<"${done_line:-Done 0 runs}")
  secs=$(sed -E 's/.* in ([0-9]+) second.*/\1/' <<<"${done_line:-in 0 second}")
  crashes=$(find "$out/crashes" -name "$t-*" | wc -l)
  if ((status != 0)) || [[ -z $done_line ]] || ((crashes > 0)); then
    failed=1
    crashes=$((crashes > 0 ? crashes : 1))
    echo "fuzz: $t failed (exit $status); see $log" >&2
    tail -20 "$log" >&2
  fi
  printf '| %s | %s | %s | %s |\n' "$t" "$execs" "$crashes" "$secs" >>"$report"
done
cat "$report"
exit "$failed"
