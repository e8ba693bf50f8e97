"""Every Python block of README.md runs as written.

Each ``## `` section of the README is one test: its Python blocks run in order in one
namespace (a section never relies on names from another, so any section can be copied
into a fresh interpreter), in a temporary working directory placed so that the README's
``../shared/data`` paths resolve as they do from a checkout. A section holding the
comment ``<!-- test: slow -->`` is marked slow (``make test-readme`` runs them all). A
block right after ``<!-- test: requires MODULE -->`` (an optional extra, such as pyspark)
runs only where that module is installed, with a warning where it is not.
"""

import importlib.util
import os
import re
import warnings
from pathlib import Path

import matplotlib
import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHARED = REPO.parent / "shared"
SLOW_MARK = "<!-- test: slow -->"
REQUIRES = re.compile(r"<!-- test: requires ([\w.]+) -->")


def sections():
    """``(title, line, blocks, slow)`` for each ``## `` section with Python blocks; each
    block is ``(first line number, code, required module or None)``."""
    found, title, start, blocks, slow = [], "(top)", 1, [], False
    lines = README.read_text(encoding="utf-8").splitlines()
    code, code_start, required = None, 0, None
    for number, line in enumerate(lines, start=1):
        if code is not None:
            if line.strip() == "```":
                blocks.append((code_start, "\n".join(code), required))
                code = None
            else:
                code.append(line)
            continue
        if line.startswith("## "):
            if blocks:
                found.append((title, start, blocks, slow))
            title, start, blocks, slow = line[3:].strip(), number, [], False
        elif line.strip() in ("```python", "```py"):
            code, code_start = [], number + 1
            match = REQUIRES.fullmatch(_line_before(lines, number))
            required = match.group(1) if match else None
        elif line.strip() == SLOW_MARK:
            slow = True
    if blocks:
        found.append((title, start, blocks, slow))
    return found


def _line_before(lines, number):
    """The last non-blank line before line ``number`` (1-based)."""
    for line in reversed(lines[:number - 1]):
        if line.strip():
            return line.strip()
    return ""


def _param(section):
    title, line, blocks, slow = section
    marks = [pytest.mark.slow] if slow else []
    ident = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return pytest.param(blocks, id=ident, marks=marks)


@pytest.fixture
def checkout_dir(tmp_path, monkeypatch):
    """A working directory with ``../shared`` beside it, as in a checkout."""
    work = tmp_path / "checkout"
    work.mkdir()
    if SHARED.is_dir():
        (tmp_path / "shared").symlink_to(SHARED)
    monkeypatch.chdir(work)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    return work


def test_readme_has_sections_with_code():
    titles = [title for title, *_ in sections()]
    assert "Quick start" in titles and len(titles) >= 8


@pytest.mark.parametrize("blocks", [_param(section) for section in sections()])
def test_readme_section_runs(blocks, checkout_dir):
    matplotlib.use("Agg")
    namespace = {"__name__": "__readme__"}
    try:
        for line, code, required in blocks:
            if required and importlib.util.find_spec(required) is None:
                warnings.warn(f"README.md:{line} not run: it needs {required}, which is not "
                              "installed", UserWarning)
                continue
            exec(compile(code, f"README.md:{line}", "exec"), namespace)
    finally:
        import matplotlib.pyplot as plt

        plt.close("all")
        if "aedetect.tracking" in __import__("sys").modules:
            import aedetect.tracking

            aedetect.tracking.autolog(disable=True)
            aedetect.tracking.flush()  # the section's runs end before its directory goes
            import mlflow

            while mlflow.active_run() is not None:
                mlflow.end_run()
    assert os.getcwd() == str(checkout_dir)
