#!/usr/bin/env bash
# `make bench`: every benchmark, one after another, each printing its table.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/boot/run.sh" "${BENCH_N:-10}"
if [[ -x "$here/vmm/run.sh" ]]; then
  "$here/vmm/run.sh"
fi
if [[ -x "$here/testhost/run.sh" ]]; then
  "$here/testhost/run.sh" "${BENCH_N:-10}"
fi
"$here/pull/run.sh" "${BENCH_PULL_N:-3}"
