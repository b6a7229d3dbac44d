#!/usr/bin/env python3
"""Per kernel of sustained.py: its time at first and once the power limit holds, with the SM
clock and board power of its last second.

    python3 validation/gpu/sustained_report.py DIR     # DIR: sustained.csv(.gz), sustained.log, clocks.csv

Prints, per kernel: the median of its first five replays (boost clock, cold), of its last third
(steady), their ratio, and over the last second of its run the median SM clock (MHz) and board
power (W; the instantaneous reading where the driver gives one).
"""
import gzip
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clocks_per_point import samples as clock_samples  # noqa: E402  (one reader of nvidia-smi logs)


def main():
    d = sys.argv[1]
    runs = {}
    path = f"{d}/sustained.csv"
    text = open(path).read() if os.path.exists(path) else gzip.open(path + ".gz", "rt").read()
    for line in text.splitlines()[1:]:
        name, _, _, _, start, dur = line.split(",")
        runs.setdefault(name, []).append((float(start), float(dur)))
    ends = {}
    for line in open(f"{d}/sustained.log"):
        f = line.split()
        if len(f) >= 3 and f[1] == "end":
            ends[f[2]] = float(f[0])
    samples = clock_samples(f"{d}/clocks.csv")
    print(f"{'kernel':<28} {'first us':>10} {'steady us':>10} {'ratio':>6} {'MHz':>6} {'W':>6}")
    for name, r in runs.items():
        durs = [x[1] for x in r]
        first = statistics.median(durs[:5])
        steady = statistics.median(durs[-max(5, len(durs) // 3):])
        end = ends.get(name)
        win = [s for s in samples if end is not None and end - 1.0 <= s[0] <= end]
        mhz = statistics.median(s[1] for s in win) if win else float("nan")
        watts = statistics.median(s[2] for s in win) if win else float("nan")
        print(f"{name:<28} {first:10.1f} {steady:10.1f} {steady / first:6.3f} {mhz:6.0f} {watts:6.1f}")


if __name__ == "__main__":
    main()
