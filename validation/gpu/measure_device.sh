#!/usr/bin/env bash
# Measures the main and the held-out set on the GPU at hand, with the default (read) L2 flush,
# into OUT/<device> and OUT/<device>-heldout (device: h100 or h200, from nvidia-smi), and samples
# the SM clock and power every 20 ms into OUT/clocks.csv beside a timestamped log, so a kernel's
# clock can be read off by the time its row was printed. The held-out set's rows go to
# OUT/heldout.log only: they are predicted once the model is final, not looked at before.
#
#     bash validation/gpu/measure_device.sh /path/to/out
set -euo pipefail
out=${1:?usage: measure_device.sh OUT}
here=$(dirname "$0")
name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
case "$name" in
  *H200*) dev=h200 ;;
  *H100*) dev=h100 ;;
  *) echo "unknown GPU: $name" >&2; exit 1 ;;
esac
mkdir -p "$out"
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv,nounits -lms 20 \
  > "$out/clocks.csv" &
sampler=$!
trap 'kill $sampler 2>/dev/null || true' EXIT
export PYTHONUNBUFFERED=1
python3 "$here/measure.py" --out "$out/$dev" 2>&1 | tee "$out/log"
python3 "$here/measure.py" --set heldout --out "$out/$dev-heldout" > "$out/heldout.log" 2>&1
echo "held-out set: $(($(wc -l < "$out/$dev-heldout/measurements.csv") - 1)) rows"
sha256sum "$out/$dev-heldout/measurements.csv"
