"""Every ensemble of saved members, scored offline, and chosen without peeking (issue 20).

Reads the score files of ``member_scores.py`` and, for every combination of up to
``--max-size`` members, averages the members' standardized scores (each member's
``score_samples`` centred by the median of its training scores and divided by their
MAD, as ``aedetect.EnsembleDetector`` does) on each dataset and seed. It reports, per
combination, the mean AUC-ROC on the ten datasets the defaults were chosen on
(in-sample), on the 13 others (held out) and on all 23, the AUC-PR, the wins against
IsolationForest (its rows from ``--include``, an ``adbench.py`` CSV of the same
protocol) and the summed fit time; then two selections that never see the data they are
judged on:

- *choose on the ten, confirm on the 13*: the combination with the best in-sample mean,
  and its held-out mean;
- *leave one dataset out*: for each dataset, the combination with the best mean over the
  other 22, scored on the one left out; the mean of those 23 scores is what the choosing
  rule is worth on data it did not see.

Example::

    python benchmarks/ensemble_selection.py DIR --include benchmarks/results/adbench.csv \\
        --out benchmarks/results/ensembles/selection.md
"""

import argparse
import itertools
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
import adbench  # noqa: E402
from heldout import TUNING  # noqa: E402

from aedetect.ensemble import standardization  # noqa: E402


def load_members(folder):
    """``{(dataset, seed): {member: (train_scores, test_scores, y_test, fit_seconds)}}``."""
    runs = defaultdict(dict)
    for path in sorted(Path(folder).glob("*/seed*/*.npz")):
        if path.name.endswith(".partial.npz"):
            continue
        with np.load(path) as data:
            runs[path.parent.parent.name, int(path.parent.name[4:])][path.stem] = (
                data["train_scores"], data["test_scores"], data["y_test"],
                float(data["fit_seconds"]))
    return runs


def standardized(train, test):
    """``test`` centred by the median of ``train`` and divided by its MAD (x 1.4826), as
    ``EnsembleDetector`` standardizes its members' scores (the same function)."""
    center, spread = standardization(train)
    return (test - center) / spread


def evaluate(runs, combination):
    """``{dataset: (mean AUC-ROC, mean AUC-PR, mean fit seconds)}`` over the seeds."""
    per_dataset = defaultdict(list)
    for (dataset, _), members in runs.items():
        if not all(member in members for member in combination):
            continue
        y = members[combination[0]][2]
        outlier_score = -np.mean([standardized(members[m][0], members[m][1])
                                  for m in combination], axis=0)
        per_dataset[dataset].append((roc_auc_score(y, outlier_score),
                                     average_precision_score(y, outlier_score),
                                     sum(members[m][3] for m in combination)))
    return {dataset: tuple(np.mean(values, axis=0)) for dataset, values in per_dataset.items()}


def reference(csv_path, method="IsolationForest"):
    """``{dataset: (mean AUC-ROC, mean AUC-PR, mean fit seconds)}`` of ``method``."""
    per_dataset = defaultdict(list)
    for row in adbench.read_rows(csv_path):
        if row["method"] == method:
            per_dataset[row["dataset"]].append((row["auc_roc"], row["auc_pr"],
                                                row["fit_seconds"]))
    return {dataset: tuple(np.mean(values, axis=0)) for dataset, values in per_dataset.items()}


def mean_over(results, datasets, column=0):
    return float(np.mean([results[d][column] for d in datasets]))


def leave_one_out(table, datasets):
    """For each dataset, the combination with the best mean AUC-ROC over the others and
    its AUC-ROC / AUC-PR on the one left out."""
    picks = {}
    for left_out in datasets:
        others = [d for d in datasets if d != left_out]
        best = max(table, key=lambda name: mean_over(table[name], others))
        picks[left_out] = (best, table[best][left_out][0], table[best][left_out][1])
    return picks


def report(runs, forest, max_size, members=None):
    members = members or sorted({m for run in runs.values() for m in run})
    datasets = sorted({dataset for dataset, _ in runs}, key=str.lower)
    complete = [d for d in datasets if d in forest]
    tuning = [d for d in complete if d in TUNING]
    held = [d for d in complete if d not in TUNING]
    table = {}
    for size in range(1, max_size + 1):
        for combination in itertools.combinations(members, size):
            results = evaluate(runs, combination)
            if all(d in results for d in complete):
                table[" + ".join(combination)] = results
    table_rows = []
    for name, results in table.items():
        wins = sum(results[d][0] > forest[d][0] for d in complete)
        table_rows.append((mean_over(results, complete), name, results, wins))
    table_rows.sort(reverse=True)
    lines = ["# Ensembles of saved members, chosen in-sample and by leaving one dataset out",
             "",
             f"{len(complete)} datasets ({len(tuning)} in-sample: the defaults were chosen "
             f"on them; {len(held)} held out), seeds "
             f"{sorted({seed for _, seed in runs})}; each combination's members' scores "
             "standardized by their training scores' median and MAD, then averaged.", "",
             "| combination | AUC-ROC in-sample | held out | all | AUC-PR all | wins vs IF "
             "| fit s (mean) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    forest_row = ("IsolationForest", forest, None)
    for name, results, wins in [forest_row] + [(n, r, w) for _, n, r, w in table_rows]:
        lines.append(
            f"| {name} | {mean_over(results, tuning):.3f} | {mean_over(results, held):.3f} "
            f"| {mean_over(results, complete):.3f} | {mean_over(results, complete, 1):.3f} "
            f"| {'' if wins is None else wins} | {mean_over(results, complete, 2):.1f} |")
    chosen = max(table, key=lambda name: mean_over(table[name], tuning))
    lines += ["", "## Choose on the ten, confirm on the 13", "",
              f"Best in-sample: **{chosen}**, {mean_over(table[chosen], tuning):.3f} "
              f"in-sample, **{mean_over(table[chosen], held):.3f} held out** "
              f"(IsolationForest {mean_over(forest, held):.3f}), "
              f"{mean_over(table[chosen], complete):.3f} over all "
              f"{len(complete)}."]
    picks = leave_one_out(table, complete)
    lodo_roc = np.mean([auc for _, auc, _ in picks.values()])
    lodo_pr = np.mean([pr for _, _, pr in picks.values()])
    lodo_wins = sum(auc > forest[d][0] for d, (_, auc, _) in picks.items())
    counts = defaultdict(int)
    for name, _, _ in picks.values():
        counts[name] += 1
    lines += ["", "## Leave one dataset out", "",
              f"Mean AUC-ROC on the left-out dataset **{lodo_roc:.3f}** (IsolationForest "
              f"{mean_over(forest, complete):.3f}), AUC-PR {lodo_pr:.3f} "
              f"({mean_over(forest, complete, 1):.3f}), {lodo_wins} wins of "
              f"{len(complete)}. Combinations picked (times):", ""]
    lines += [f"- {name}: {count}" for name, count in
              sorted(counts.items(), key=lambda item: -item[1])]
    lines += ["", "| left out | picked | AUC-ROC | IsolationForest |",
              "| --- | --- | ---: | ---: |"]
    lines += [f"| {d} | {name} | {auc:.3f} | {forest[d][0]:.3f} |"
              for d, (name, auc, _) in picks.items()]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scores", help="the --out folder of member_scores.py")
    parser.add_argument("--include", required=True,
                        help="adbench.py CSV with IsolationForest's rows (same protocol)")
    parser.add_argument("--members", nargs="+", default=None)
    parser.add_argument("--max-size", type=int, default=3)
    parser.add_argument("--out", default=None, help="markdown file to write")
    args = parser.parse_args(argv)
    text = report(load_members(args.scores), reference(args.include), args.max_size,
                  args.members)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
