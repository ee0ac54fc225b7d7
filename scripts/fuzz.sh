#!/usr/bin/env bash
# Runs figway's cargo-fuzz targets (fuzz/fuzz_targets/) one after another,
# each for a bounded time, and exits non-zero if any of them crashed.
#
# NOT run in CI: it needs a nightly toolchain and minutes per target, far
# more than a CI run should spend. Run it by hand (docs/fuzzing.md).
#
#   scripts/fuzz.sh                  # every target, 60 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh framing
#
# Installs cargo-fuzz with `cargo install` when missing. A crash leaves its
# input in fuzz/artifacts/TARGET/; the corpus grows in fuzz/corpus/TARGET/
# (both ignored by git) and is reused by the next run.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

seconds="${FUZZ_SECONDS:-60}"
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=(config path framing h1_response h1_request)
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: a nightly toolchain is needed (rustup toolchain install nightly)" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz
fi

failed=()
for target in "${targets[@]}"; do
  corpus="$root/fuzz/corpus/$target"
  mkdir -p "$corpus"
  seeds=("$root/fuzz/seeds/$target")
  # The shipped example is the richest valid config there is to mutate.
  if [ "$target" = config ]; then
    cp -n config/example.toml "$corpus/example.toml"
  fi
  args=(-max_total_time="$seconds" -timeout=10)
  if [ -f "$root/fuzz/dict/$target.dict" ]; then
    args+=(-dict="$root/fuzz/dict/$target.dict")
  fi
  echo "--- fuzz $target for ${seconds}s"
  if ! cargo +nightly fuzz run "$target" "$corpus" "${seeds[@]}" -- "${args[@]}"; then
    failed+=("$target")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz.sh: crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz.sh: no crash in ${targets[*]}"
