#!/usr/bin/env bash
# The 1,000-point design-space sweep of experiments/examples/fusemax-dse.toml, timed whole, as 4
# shards merged, and killed part-way then resumed; all three must leave the same bytes. Prints
# the wall times for the README's speed table. Usage: scripts/bench-dse.sh [path/to/strata]
set -euo pipefail
cd "$(dirname "$0")/.."
strata=${1:-target/release/strata}
[ -x "$strata" ] || { cargo build --release --quiet; strata=target/release/strata; }
exp=experiments/examples/fusemax-dse.toml
work=$(mktemp -d /tmp/strata-dse.XXXXXX)
now() { date +%s.%N; }
t0=$(now); "$strata" run $exp --quiet --out "$work/whole" >/dev/null; t1=$(now)
for i in 0 1 2 3; do "$strata" run $exp --quiet --shard $i/4 --out "$work/shard$i" >/dev/null; done; t2=$(now)
"$strata" merge "$work"/shard{0,1,2,3} --out "$work/merged" >/dev/null; t3=$(now)
"$strata" run $exp --quiet --out "$work/killed" >/dev/null & pid=$!
sleep "$(echo "($t1 - $t0) / 2" | bc -l)"; kill -9 $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
kept=$(wc -l <"$work/killed/points.jsonl" 2>/dev/null || echo 0)
t4=$(now); "$strata" run $exp --quiet --out "$work/killed" >/dev/null; t5=$(now)
"$strata" run $exp --quiet --out "$work/killed" >/dev/null; t6=$(now)
for d in merged killed; do
  for f in results.csv results.jsonl summary.md points.jsonl manifest.json; do
    cmp -s "$work/whole/$f" "$work/$d/$f" || { echo "bench-dse: $d/$f differs from the whole run" >&2; exit 1; }
  done
done
printf 'whole run, 1000 points:            %.2f s\n' "$(echo "$t1 - $t0" | bc -l)"
printf '4 shards one after another:         %.2f s (%.2f s each on average)\n' "$(echo "$t2 - $t1" | bc -l)" "$(echo "($t2 - $t1) / 4" | bc -l)"
printf 'merge:                              %.2f s\n' "$(echo "$t3 - $t2" | bc -l)"
printf 'resume after a kill at %s points: %.2f s\n' "$kept" "$(echo "$t5 - $t4" | bc -l)"
printf 'rerun with every point done:        %.2f s\n' "$(echo "$t6 - $t5" | bc -l)"
echo "bench-dse: merged and resumed outputs are byte-identical to the whole run ($work)"
