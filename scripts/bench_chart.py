#!/usr/bin/env python3
"""Draw BENCHMARKS.md's charts from megatorrent-bench JSON reports.

  pip install matplotlib
  python3 scripts/bench_chart.py benches/results

Reads every *.json report under the directory (recursively) and writes there:
  lookup.png  lookup req/s (median, min–max bars) against stored identities, per label;
  fanout.png  fan-out delivery time p50/p99/max (median over runs) against subscribers.
"""
import json
import pathlib
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def reports(root):
    for p in sorted(pathlib.Path(root).rglob("*.json")):
        try:
            r = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(r, dict) and "scenario" in r and r.get("runs"):
            yield r


def lookup_chart(rs, out):
    series = {}
    for r in rs:
        if r["scenario"] != "lookup":
            continue
        label = r["params"].get("label") or "default"
        s = r["summary"]["rate"]
        series.setdefault(label, []).append((r["params"]["identities"], s["median"], s["min"], s["max"]))
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, pts in sorted(series.items()):
        pts.sort()
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        err = [[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=4, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("stored identities")
    ax.set_ylabel("lookup req/s (median, min–max)")
    ax.set_ylim(bottom=0)
    ax.set_title("lookup throughput against identity count")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return True


def fanout_chart(rs, out):
    pts = []
    for r in rs:
        if r["scenario"] != "fanout":
            continue
        n = r["extra"].get("subscribers_ready") or r["params"]["subscribers"]
        med = lambda k: statistics.median([run[k] / 1000.0 for run in r["runs"]])  # noqa: E731
        pts.append((n, med("p50_us"), med("p99_us"), med("max_us")))
    if not pts:
        return False
    pts.sort()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, name in enumerate(["p50", "p99", "max"], start=1):
        ax.plot([p[0] for p in pts], [p[i] for p in pts], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("subscribers")
    ax.set_ylabel("delivery time after the publish (ms)")
    ax.set_title("fan-out of one publish")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return True


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "benches/results")
    rs = list(reports(root))
    for name, draw in [("lookup.png", lookup_chart), ("fanout.png", fanout_chart)]:
        if draw(rs, root / name):
            print(f"wrote {root / name}")
        else:
            print(f"no data for {name}", file=sys.stderr)


if __name__ == "__main__":
    main()
