#!/usr/bin/env bash
# One command for a machine with a real GPU: headless Chromium (Vulkan, no SwiftShader) runs the
# built app's worker engine on a FULL-SIZE random-weight SimpleAR-0.5B + Cosmos decoder and
# generates a 1024² image; prints seconds for prefill, decode, VQ decode and total
# (GenerationResult.timings), ms per step and the loop's stats, then the JSON report.
#
#   bench/gpu.sh                      full-size model (written once to $SIMPLEAR_CKPT), 1024²
#   SIMPLEAR_TINY=1 bench/gpu.sh      the tiny test fixture instead (checks the plumbing)
#
# Needs only Node 20+ and Chromium: the full-size checkpoint (random weights, the released
# SimpleAR-0.5B and Cosmos DV8x16x16 decoder shapes, original formats) is written by
# `npm run fixtures:full` (~1.4 GB, under a minute).
#
# Environment:
#   CHROMIUM       Chromium/Chrome binary (default: chromium, then google-chrome, chromium-browser)
#   SIZE           image side in px (default 1024; 128 with SIMPLEAR_TINY=1)
#   SIMPLEAR_CKPT  where the full-size random checkpoint lives / is written (default ${TMPDIR:-/tmp}/simplear-full)
#   WEIGHTS        LM weights in the browser: q4 (default) | q8 | f16 | f32
#   GPU_FLAGS=0    run without the real-GPU flags (SwiftShader), e.g. to test this script on a CPU box
#   OUT            JSON report file (default bench-gpu-<date>.json in the repo root)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
missing=()
say() { printf 'gpu.sh: %s\n' "$*" >&2; }

# ── prerequisites ──
if command -v node >/dev/null; then
  major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 20 ] || missing+=("node >= 20 (found $(node --version))")
else
  missing+=("node >= 20 (https://nodejs.org or apt-get install nodejs)")
fi
chromium_bin=""
if [ -n "${CHROMIUM:-}" ]; then candidates=("$CHROMIUM"); else candidates=(chromium google-chrome chromium-browser google-chrome-stable); fi
for c in "${candidates[@]}"; do
  if p=$(command -v "$c" 2>/dev/null); then chromium_bin=$p; break; fi
  if [ -x "$c" ]; then chromium_bin=$c; break; fi
done
[ -n "$chromium_bin" ] || missing+=("Chromium${CHROMIUM:+ at $CHROMIUM} (apt-get install chromium, or set CHROMIUM=/path/to/chrome)")

TINY=${SIMPLEAR_TINY:-0}
CKPT=${SIMPLEAR_CKPT:-${TMPDIR:-/tmp}/simplear-full}
if [ "$TINY" = 1 ]; then
  MODEL=$ROOT/tests/fixtures/tiny-simplear
  VQ=$ROOT/tests/fixtures/tiny-cosmos
  SIZE=${SIZE:-128}
  WEIGHTS=${WEIGHTS:-f32}
else
  MODEL=$CKPT
  SIZE=${SIZE:-1024}
  WEIGHTS=${WEIGHTS:-q4}
fi
if [ ${#missing[@]} -gt 0 ]; then
  say "missing:"
  for m in "${missing[@]}"; do printf '  - %s\n' "$m" >&2; done
  exit 2
fi
say "node $(node --version), chromium $("$chromium_bin" --version 2>/dev/null || echo "$chromium_bin")"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
command -v vulkaninfo >/dev/null && (vulkaninfo --summary 2>/dev/null | grep -E 'deviceName|driverName' >&2 || true)

# ── dependencies and the app ──
[ -d node_modules/playwright-core ] || { say "installing npm dependencies (npm ci)…"; npm ci; }
[ -f dist/index.html ] || { say "building the app (npm run build)…"; npm run build; }

# ── the full-size checkpoint (written once) ──
if [ "$TINY" != 1 ]; then
  if { [ ! -f "$CKPT/model.safetensors" ] && [ ! -f "$CKPT/model.safetensors.index.json" ]; } || [ ! -f "$CKPT/decoder.jit" ]; then
    say "writing the full-size random checkpoint to $CKPT (npm run fixtures:full)…"
    npm run -s fixtures:full -- --out "$CKPT"
  fi
  VQ=$CKPT
fi

# ── the run ──
OUT=${OUT:-$ROOT/bench-gpu-$(date +%Y%m%d-%H%M%S).json}
flags=(--browser-only --model "$MODEL" --vq "$VQ" --size "$SIZE" --weights "$WEIGHTS" --json "$OUT")
[ "${GPU_FLAGS:-1}" = 1 ] && flags+=(--gpu)
say "model $MODEL, decoder $VQ, ${SIZE}², LM $WEIGHTS; report → $OUT"
CHROMIUM_PATH=$chromium_bin node --import tsx tools/bench/main.ts "${flags[@]}"
