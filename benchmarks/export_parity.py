"""ONNX and torch.export parity with ``score_samples``, for every detector at its
default score type (and the latent neighbour scores of the AE).

Fits each detector with its defaults (``random_state=0``, CPU) on scikit-learn's digits
and, when present, on ADBench's cardio; exports it with :func:`aedetect.export.to_onnx`
and :func:`aedetect.export.to_exported_program`; scores the training rows with ONNX
Runtime and with the loaded program; reports max |exported - score_samples| / max
|score_samples| and the export time. Writes ``<out>/export_parity.md``::

    pip install -e ".[onnx]"
    python benchmarks/export_parity.py --out benchmarks/results
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from aedetect import AAEDetector, AEDetector, VAEDetector
from aedetect.export import to_exported_program, to_onnx

CASES = [("AEDetector", AEDetector, {}), ("AEDetector", AEDetector, {"score_type": "latent"}),
         ("AEDetector", AEDetector, {"score_type": "combined"}),
         ("VAEDetector", VAEDetector, {}), ("AAEDetector", AAEDetector, {})]


def relative(actual, expected):
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def datasets(adbench_dir):
    yield "digits", load_digits().data
    cardio = Path(adbench_dir) / "6_cardio.npz"
    if cardio.exists():
        with np.load(cardio) as data:
            yield "cardio", np.asarray(data["X"], dtype=np.float64)


def measure(name, X, cls, params, workdir):
    import onnxruntime

    detector = cls(random_state=0, device="cpu", **params).fit(X)
    expected = detector.score_samples(X)
    start = time.perf_counter()
    path = to_onnx(detector, Path(workdir) / "scorer.onnx")
    onnx_seconds = time.perf_counter() - start
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_scores = session.run(None, {"X": X.astype(np.float32)})[0]
    program = to_exported_program(detector).module()
    with torch.no_grad():
        program_scores = program(torch.as_tensor(X, dtype=torch.float32)).numpy()
    return {"dataset": name, "detector": cls.__name__,
            "score_type": detector.score_type, "rows": X.shape[0],
            "onnx": relative(onnx_scores, expected),
            "torch_export": relative(program_scores, expected),
            "onnx_seconds": onnx_seconds}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--adbench", default="../shared/data/adbench")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name, X in datasets(args.adbench):
            for _, cls, params in CASES:
                rows.append(measure(name, X, cls, params, workdir))
                print(rows[-1])
    lines = ["# Export parity", "",
             "max |exported - score_samples| / max |score_samples| on the training rows "
             "(float32 input), `python benchmarks/export_parity.py`; torch "
             f"{torch.__version__}.", "",
             "| dataset | detector | score_type | rows | ONNX Runtime | torch.export "
             "| to_onnx seconds |", "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['dataset']} | {r['detector']} | {r['score_type']} | {r['rows']} | "
              f"{r['onnx']:.1e} | {r['torch_export']:.1e} | {r['onnx_seconds']:.1f} |"
              for r in rows]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "export_parity.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
