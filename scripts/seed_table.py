#!/usr/bin/env python3
"""Mean ± standard deviation over seeds of runs named CONFIG_s<SEED>.

    python3 scripts/seed_table.py RUNS_DIR [--md FILE] [--dat FILE] [--title T]

Reads RUNS_DIR/*/metrics.json; one row per configuration with the number of
seeds, test accuracy, true size, mean bits, latent float accuracy and final
λ (mean ± sample standard deviation); for language-model runs the test
perplexity and the latent float perplexity instead of the accuracies. The .dat file (gnuplot) has one line
per configuration: name, true MiB mean, std, accuracy mean, std."""
import argparse
import json
import math
import pathlib
import re
import sys


def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def cell(values, digits):
    mean, std = stats(values)
    if mean is None:
        return ""
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs")
    ap.add_argument("--md")
    ap.add_argument("--dat")
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    groups = {}
    order = []
    for path in sorted(pathlib.Path(a.runs).glob("*/metrics.json")):
        name = path.parent.name
        m = re.fullmatch(r"(.+)_s(\d+)", name)
        config = m.group(1) if m else name
        if config not in groups:
            groups[config] = []
            order.append(config)
        groups[config].append(json.loads(path.read_text()))
    lines = []
    if a.title:
        lines += [f"**{a.title}**", ""]
    # Language-model runs report a perplexity instead of an accuracy.
    lm = any("perplexity" in r for runs in groups.values() for r in runs)
    score, latent_key = ("perplexity", "latent_float_perplexity") if lm else ("accuracy", "latent_float_accuracy")
    header = "test perplexity | true MiB | mean bits | latent float ppl." if lm else \
        "test accuracy (%) | true MiB | mean bits | latent float acc. (%)"
    lines += [f"| configuration | seeds | {header} | final λ |",
              "|---|---|---|---|---|---|---|"]
    dat = ["# config true_mib_mean true_mib_std accuracy_mean accuracy_std seeds"]
    for config in order:
        runs = groups[config]
        acc = [r.get(score) for r in runs]
        mib = [r.get("true_mib") for r in runs]
        bits = [r.get("mean_bits") for r in runs]
        latent = [r.get(latent_key) for r in runs]
        lam = [r.get("final_penalty") for r in runs]
        seeds = ",".join(str(r.get("seed")) for r in runs)
        lines.append(f"| {config} | {seeds} | {cell(acc, 2)} | {cell(mib, 4)} | {cell(bits, 2)} | "
                     f"{cell(latent, 2)} | {cell(lam, 1)} |")
        am, asd = stats(acc)
        mm, msd = stats(mib)
        dat.append(f"{config} {mm} {msd or 0} {am} {asd or 0} {len(runs)}")
    text = "\n".join(lines) + "\n"
    if a.md:
        pathlib.Path(a.md).write_text(text)
    else:
        sys.stdout.write(text)
    if a.dat:
        pathlib.Path(a.dat).write_text("\n".join(dat) + "\n")


if __name__ == "__main__":
    main()
