#!/usr/bin/env bash
# Installs this build into a temporary prefix, builds docs/examples (the
# program docs/api.md walks through) against it with find_package(runnel),
# and runs it twice: every record must come back, in order per key, and the
# second run must continue at the offsets the first left on disk.
#
#   quickstart_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src="$1"
build="$2"
work="$(mktemp -d /tmp/runnel-quickstart-XXXXXX)"
bus="qs$$"
cleanup() {
  "$work/prefix/bin/runnel" --bus "$bus" bus remove --force >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$src/docs/examples" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/build" >/dev/null

cd "$work"
first="$("$work/build/quickstart" "$bus" "$work/data")"
grep -q '^30 records sent, durable and read back, in order per key$' <<<"$first"
second="$("$work/build/quickstart" "$bus" "$work/data")"
grep -q '^30 records sent, durable and read back, in order per key$' <<<"$second"
# The second run's records follow the first run's on each partition.
total="$("$work/prefix/bin/runnel" replay "$work/data" --topic greetings --format json | wc -l)"
if [[ "$total" != 60 ]]; then
  echo "expected 60 records on disk after two runs, found $total" >&2
  exit 1
fi
echo "quickstart: ok"
