#!/usr/bin/env bash
# Converts a full-size checkpoint with the CLI and reports wall time, peak RSS and bundle size
# (issue #3 item 9: peak RSS ≤ 2 GB; q4 bundle ≤ 450 MB).
#
#   tools/bench/convert-scale.sh [--weights q4|q8|f16|f32] [--model DIR] [--vq DIR] [--out DIR] [--keep]
#
# Defaults: the random SimpleAR-0.5B checkpoint + full-width decoder.jit in
# ${TMPDIR:-/tmp}/simplear-full, written first if missing by (under a minute, Node only):
#   npm run fixtures:full -- --out DIR
# Peak RSS comes from GNU time (`apt-get install -y time`); the CLI is one process.
set -euo pipefail
cd "$(dirname "$0")/../.."

weights=q4
model=
vq=
out=
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --weights) weights=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --vq) vq=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
if [ -z "$model" ]; then
  model=${TMPDIR:-/tmp}/simplear-full
  if [ ! -f "$model/decoder.jit" ] || { [ ! -f "$model/model.safetensors" ] && [ ! -f "$model/model.safetensors.index.json" ]; }; then
    echo "convert-scale: writing the full-size random checkpoint to $model (npm run fixtures:full)…" >&2
    npm run -s fixtures:full -- --out "$model" >&2
  fi
fi
vq=${vq:-$model}
out=${out:-$(mktemp -d "${TMPDIR:-/tmp}/simplear-bundle.XXXXXX")/bundle-$weights}

for f in config.json tokenizer.json; do
  [ -f "$model/$f" ] || { echo "no $model/$f: make the checkpoint first (npm run fixtures:full -- --out DIR)" >&2; exit 2; }
done
[ -f "$vq/decoder.jit" ] || { echo "no $vq/decoder.jit (npm run fixtures:full writes one)" >&2; exit 2; }

src_bytes=$(du -cb "$model"/*.safetensors "$vq/decoder.jit" | tail -1 | cut -f1)
cmd=(node --import tsx src/cli/main.ts convert --model "$model" --vq "$vq" --out "$out" --weights "$weights" --force)
[ -x /usr/bin/time ] || { echo "needs GNU time for the peak RSS: apt-get install -y time" >&2; exit 2; }
timing=$(mktemp)
/usr/bin/time -v -o "$timing" "${cmd[@]}"
peak_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$timing")
wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$timing")
rm -f "$timing"

bundle_bytes=$(du -cb "$out"/chunk-*.bin "$out/manifest.json" | tail -1 | cut -f1)
awk -v w="$weights" -v t="$wall" -v rss="$peak_kb" -v b="$bundle_bytes" -v s="$src_bytes" 'BEGIN {
  printf "convert-scale: weights %s\n", w
  printf "  time       %.1f s (%.0f MB/s of source)\n", t, s / 1e6 / t
  printf "  peak RSS   %.0f MB (%.2f GiB; target <= 2 GB)\n", rss / 1024, rss / 1048576
  printf "  source     %.1f MB\n", s / 1e6
  printf "  bundle     %.1f MB (%.1f MiB)%s\n", b / 1e6, b / 1048576, (w == "q4" ? "; target <= 450 MB" : "")
}'
if [ "$keep" = 1 ]; then echo "  kept at $out"; else rm -rf "$(dirname "$out")"; fi
