#!/usr/bin/env bash
# The fuzz smoke run of CI (.ci/run): builds the four targets in one cargo invocation, then runs
# each for SMOKE_SECS seconds (default 45) over its committed corpus and seeds. Fails on any
# crash, panic, failed check, timeout or memory blow-up. New inputs go to a temporary directory:
# the committed corpus is not changed. Needs cargo-fuzz; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain take the -Z flags cargo-fuzz passes.
#
# With cargo-fuzz's default AddressSanitizer, as the longer runs of fuzz/README.md: one build
# serves both, and the dependencies' unsafe Rust is checked too. The
# time goes to the cold release build of the dependency tree; `--sanitizer none` (set
# FUZZ_SANITIZER=none) saves the runtime's overhead, not that.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
secs="${SMOKE_SECS:-45}"
flags=(--sanitizer "${FUZZ_SANITIZER:-address}")
targets=(stream_head auth_extract notification_sse config_layers)

cargo fuzz build "${flags[@]}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in "${targets[@]}"; do
    extra=()
    case "$target" in
        stream_head) extra=(-max_len=40000) ;;
        config_layers) extra=(-dict=config_layers.dict) ;;
    esac
    mkdir -p "$work/$target"
    echo "fuzz smoke: $target for ${secs}s"
    log="$work/$target.log"
    if ! cargo fuzz run "${flags[@]}" "$target" "$work/$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$work/" "${extra[@]}" >"$log" 2>&1; then
        # libFuzzer's report: the failed check or panic, and the input (with its Base64).
        tail -n 80 "$log" >&2
        echo "fuzz smoke: $target found a failing input" >&2
        exit 1
    fi
    grep -E '^#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units' "$log" || true
done
echo "fuzz smoke: all targets ran ${secs}s without a finding"
