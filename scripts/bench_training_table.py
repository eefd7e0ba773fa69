#!/usr/bin/env python3
"""Table over several runs of bench_training (its --json files): per thread
count and method on mlp16, the fastest-round ratio of each run, the paired
ratio of each run (median over its rounds of step / plain step of the same
round), their mean ± standard deviation over the runs, the first run's
peak-RSS ratio and in-step training_step() time.

    scripts/bench_training_table.py docs/benchmarks/bench_training.json \
        docs/benchmarks/bench_training_repeat_b.json docs/benchmarks/bench_training_repeat_c.json
"""
import json
import statistics
import sys


def main(paths):
    runs = [json.load(open(p)) for p in paths]
    rows = {}
    for run in runs:
        for row in run["rows"]:
            if row["model"] == "mlp16" and row["method"] != "none":
                rows.setdefault((row["threads"], row["method"]), []).append(row)
    print("| threads | method | fastest-round ratio, each run | paired ratio, each run | paired: mean ± sd "
          "| peak RSS × plain (first run) | in-step training_step() ms (first run) |")
    print("|---|---|---|---|---|---|---|")
    for (threads, method), found in sorted(rows.items()):
        fastest = [r["step_ratio"] for r in found]
        paired = [r["paired_ratio"] for r in found]
        sd = statistics.stdev(paired) if len(paired) > 1 else float("nan")
        in_step = found[0].get("in_step_s", {}).get("training_step", float("nan")) * 1e3
        print(f"| {threads} | {method} | {', '.join(f'{x:.3f}' for x in fastest)} "
              f"| {', '.join(f'{x:.3f}' for x in paired)} | {statistics.mean(paired):.3f} ± {sd:.3f} "
              f"| {found[0]['peak_rss_ratio']:.3f} | {in_step:.2f} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
