"""Ablation of aedetect's defaults on the ADBench protocol.

Each variant below is the default ``AEDetector`` (or ``VAEDetector``) with ONE choice
undone, or every choice undone (``previous defaults``: the rules before issue 6), so
that the table shows what each default is worth. Same protocol, seeds and output
format as ``adbench.py``; ``--include`` adds the rows of an ``adbench.py`` CSV (the
defaults and the other libraries) to the report.

Example::

    python benchmarks/tune.py ../shared/data/adbench --out benchmarks/results --jobs 8 \\
        --include benchmarks/results/adbench.csv
"""

import functools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import adbench  # noqa: E402

#: The defaults before issue 6: standard scaling, no batch norm, dropout or trimming,
#: hidden widths (clip(2 d, 16, 256), clip(d, 8, 128)).
PREVIOUS = {"scaling": "standard", "batch_norm": False, "dropout": 0.0,
            "trim_fraction": 0.0}

#: name -> (detector class, parameters, hidden-size rule: 'previous' or None).
VARIANTS = {
    "AE previous defaults": ("AEDetector", PREVIOUS, "previous"),
    "AE scaling=standard": ("AEDetector", {"scaling": "standard"}, None),
    "AE trim_fraction=0": ("AEDetector", {"trim_fraction": 0.0}, None),
    "AE no batch_norm, no dropout": ("AEDetector", {"batch_norm": False, "dropout": 0.0},
                                     None),
    "AE previous widths": ("AEDetector", {}, "previous"),
    "AE max_iter=30": ("AEDetector", {"max_iter": 30}, None),
    "VAE previous defaults": ("VAEDetector", PREVIOUS, "previous"),
    "AAE previous defaults": ("AAEDetector", PREVIOUS, "previous"),
}


def previous_hidden_sizes(n_features):
    """The hidden-size rule before issue 6."""
    return (int(np.clip(2 * n_features, 16, 256)), int(np.clip(n_features, 8, 128)))


def make_variant(class_name, params, sizes, seed, device):
    import aedetect

    cls = getattr(aedetect, class_name)
    if sizes == "previous":
        cls = type(f"{class_name}PreviousSizes", (cls,),
                   {"_default_hidden_sizes": staticmethod(previous_hidden_sizes)})
    return cls(random_state=seed, device=device, **params)


def registry():
    import aedetect

    return {name: adbench.Method(name, functools.partial(make_variant, cls, params, sizes),
                                 adbench.minus_score_samples)
            for name, (cls, params, sizes) in VARIANTS.items() if cls in aedetect.__all__}


DESCRIPTION = ("Each `AE ...`/`VAE ...`/`AAE ...` row is the default detector with the "
               "change its name says (`previous defaults`: standard scaling, no batch norm, dropout or "
               "trimming, widths (clip(2d, 16, 256), clip(d, 8, 128)) for d features); "
               "the other rows are the defaults of each library.")


def main(argv=None):
    argv, include = adbench.take_include(sys.argv[1:] if argv is None else argv)
    rows = adbench.main(argv, registry=registry(), name="tuning", transpose=True,
                        title="Ablation of the aedetect defaults", description=DESCRIPTION)
    if include:
        args = adbench.build_parser().parse_args(argv)
        md_path = Path(args.out) / "tuning.md"
        note = (f"- Rows of {Path(include).name} (the defaults and the other methods) "
                "are included.")
        header = [line for line in md_path.read_text().splitlines()
                  if line.startswith("- ") and line != note]
        header.append(note)
        extra = adbench.read_rows(include)
        order = [*adbench.default_methods(), *VARIANTS]
        adbench.write_report(extra + rows, md_path, header, methods=order, transpose=True,
                             title="Ablation of the aedetect defaults",
                             description=DESCRIPTION)
        print(md_path.read_text())


if __name__ == "__main__":
    main()
