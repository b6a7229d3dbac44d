#!/usr/bin/env python3
"""The SM clock each measured point ran at, from measure_device.sh's clock samples.

    python3 validation/gpu/clocks_per_point.py validation/gpu/h100/clocks.csv validation/gpu/h100/timeline.log

measure.py prints a wall-clock time when it finishes a point; nvidia-smi sampled the SM clock
and board power every 20 ms (clocks.csv). A point's window runs from the previous point's time
to its own (warm-up, eager and graph timing, the profiled call). Prints, per point, the samples
in the window, the lowest and median SM clock (MHz) and the median and highest power (W; the
board's power reading lags and averages, so it is a hint only).
"""
import datetime
import statistics
import sys


def samples(path):
    """(time, SM MHz, W) per sample of an nvidia-smi log; the instantaneous power where the
    driver gave it (power.draw averages over about a second)."""
    rows = [[x.strip() for x in line.split(",")] for line in open(path).read().splitlines()]
    col = {h.split(" [")[0]: i for i, h in enumerate(rows[0])}
    power = col.get("power.draw.instant", col["power.draw"])
    out = []
    for f in rows[1:]:
        try:
            t = datetime.datetime.strptime(f[0], "%Y/%m/%d %H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc)
            out.append((t.timestamp(), int(f[col["clocks.current.sm"]]), float(f[power])))
        except (ValueError, IndexError):  # a line cut off when the sampler was stopped
            continue
    return out


def main(clocks, timeline):
    s = samples(clocks)
    points = [line.split() for line in open(timeline) if line[:1].isdigit() and "." in line.split()[0]]
    print(f"{'point':<34} {'n':>3} {'min MHz':>8} {'median':>7} {'W median':>9} {'W max':>7}")
    for i, p in enumerate(points):
        t1 = float(p[0])
        t0 = float(points[i - 1][0]) if i else t1 - 1.0
        w = [(c, pw) for t, c, pw in s if t0 < t <= t1]
        if not w:
            continue
        c = [x[0] for x in w]
        pw = [x[1] for x in w]
        print(f"{p[2][:34]:<34} {len(w):>3} {min(c):>8} {statistics.median(c):>7.0f} "
              f"{statistics.median(pw):>9.1f} {max(pw):>7.1f}")


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
