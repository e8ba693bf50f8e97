"""Compare two runs of ``benchmarks/adbench.py`` cell by cell (same datasets, seeds and
methods): how many AUCs are bit-identical, the largest difference, and each method's
mean AUC-ROC / AUC-PR and fit seconds in both runs, against an optional reference table.

Used for refactors that must not change results (run adbench.py on the old and on the
new code with the same arguments, then compare)::

    python benchmarks/compare_runs.py OLD/adbench.csv NEW/adbench.csv \\
        --out benchmarks/results/house_refactor/comparison.md
"""

import argparse
import csv
from collections import defaultdict
from pathlib import Path


def load(path):
    """``{(dataset, seed, method): row}`` of an adbench CSV."""
    with open(path, newline="") as handle:
        return {(row["dataset"], row["seed"], row["method"]): row
                for row in csv.DictReader(handle)}


def means(rows, keys, field):
    """Mean over datasets of the per-dataset mean over seeds, per method."""
    per = defaultdict(lambda: defaultdict(list))
    for key in keys:
        dataset, _, method = key
        per[method][dataset].append(float(rows[key][field]))
    return {method: sum(sum(v) / len(v) for v in datasets.values()) / len(datasets)
            for method, datasets in per.items()}


def compare(before, after):
    keys = sorted(set(before) & set(after))
    if not keys:
        raise SystemExit("The two runs have no (dataset, seed, method) cell in common.")
    identical = sum(before[k]["auc_roc"] == after[k]["auc_roc"]
                    and before[k]["auc_pr"] == after[k]["auc_pr"] for k in keys)
    largest = max(abs(float(before[k][f]) - float(after[k][f]))
                  for k in keys for f in ("auc_roc", "auc_pr"))
    table = {field: (means(before, keys, field), means(after, keys, field))
             for field in ("auc_roc", "auc_pr", "fit_seconds")}
    return keys, identical, largest, table


def report(before_path, after_path):
    before, after = load(before_path), load(after_path)
    keys, identical, largest, table = compare(before, after)
    methods = sorted({key[2] for key in keys})
    n_datasets = len({key[0] for key in keys})
    lines = [f"Cells compared: {len(keys)} ({n_datasets} datasets x seeds x methods); "
             f"AUC-ROC and AUC-PR bit-identical in {identical}; largest difference "
             f"{largest:.2g}.", "",
             "| method | AUC-ROC before | AUC-ROC after | AUC-PR before | AUC-PR after "
             "| fit s before | fit s after |", "| --- |" + " ---: |" * 6]
    for method in methods:
        cells = [table[field][side][method] for field in ("auc_roc", "auc_pr", "fit_seconds")
                 for side in (0, 1)]
        lines.append(f"| {method} | " + " | ".join(
            f"{value:.3f}" if i < 4 else f"{value:.2f}" for i, value in enumerate(cells)) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--out", help="also write the markdown table here")
    args = parser.parse_args(argv)
    text = report(args.before, args.after)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
