#!/usr/bin/env bash
# Measures the main and the held-out set on the GPU at hand, with the default (read) L2 flush,
# into OUT/<device> and OUT/<device>-heldout (device: h100 or h200, from nvidia-smi), then runs
# sustained.py (kernels replayed back to back for seconds: the power limit's effect) into
# OUT/sustained.csv, and samples the SM clock and power every 20 ms into OUT/clocks.csv beside
# timestamped logs, so a kernel's clock can be read off by the time its row was printed. The
# held-out set's rows go to OUT/heldout.log only: they are predicted once the model is final,
# not looked at before. PARTS (default "sets sustained") picks what runs.
#
#     bash validation/gpu/measure_device.sh /path/to/out [PARTS]
set -euo pipefail
out=${1:?usage: measure_device.sh OUT [PARTS]}
parts=${2:-sets sustained}
here=$(dirname "$0")
name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
case "$name" in
  *H200*) dev=h200 ;;
  *H100*) dev=h100 ;;
  *) echo "unknown GPU: $name" >&2; exit 1 ;;
esac
mkdir -p "$out"
q=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu
# The instantaneous power reading, where the driver has it (power.draw averages over ~1 s).
nvidia-smi --help-query-gpu | grep -q power.draw.instant && q=$q,power.draw.instant
nvidia-smi --query-gpu=$q --format=csv,nounits -lms 20 > "$out/clocks.csv" &
sampler=$!
trap 'kill $sampler 2>/dev/null || true' EXIT
export PYTHONUNBUFFERED=1
if [[ " $parts " == *" sets "* ]]; then
  python3 "$here/measure.py" --out "$out/$dev" 2>&1 | tee "$out/log"
  python3 "$here/measure.py" --set heldout --out "$out/$dev-heldout" > "$out/heldout.log" 2>&1
  echo "held-out set: $(($(wc -l < "$out/$dev-heldout/measurements.csv") - 1)) rows"
  sha256sum "$out/$dev-heldout/measurements.csv"
fi
if [[ " $parts " == *" sustained "* ]]; then
  python3 "$here/sustained.py" --out "$out" 2>&1 | tee "$out/sustained.log"
fi
