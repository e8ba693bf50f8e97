"""Every Python block of README.md runs as written.

Each ``## `` section of the README is one test: its Python blocks run in order in one
namespace (a section never relies on names from another, so any section can be copied
into a fresh interpreter), in a temporary working directory placed so that the README's
``../shared/data`` paths resolve as they do from a checkout. A section holding the
comment ``<!-- test: slow -->`` is marked slow (``make test-readme`` runs them all).
"""

import os
import re
from pathlib import Path

import matplotlib
import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHARED = REPO.parent / "shared"
SLOW_MARK = "<!-- test: slow -->"


def sections():
    """``(title, line, blocks, slow)`` for each ``## `` section with Python blocks; each
    block is ``(first line number, code)``."""
    found, title, start, blocks, slow = [], "(top)", 1, [], False
    lines = README.read_text(encoding="utf-8").splitlines()
    code, code_start = None, 0
    for number, line in enumerate(lines, start=1):
        if code is not None:
            if line.strip() == "```":
                blocks.append((code_start, "\n".join(code)))
                code = None
            else:
                code.append(line)
            continue
        if line.startswith("## "):
            if blocks:
                found.append((title, start, blocks, slow))
            title, start, blocks, slow = line[3:].strip(), number, [], False
        elif line.strip() == "```python":
            code, code_start = [], number + 1
        elif line.strip() == SLOW_MARK:
            slow = True
    if blocks:
        found.append((title, start, blocks, slow))
    return found


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
        for line, code in blocks:
            exec(compile(code, f"README.md:{line}", "exec"), namespace)
    finally:
        import matplotlib.pyplot as plt

        plt.close("all")
        if "aedetect.tracking" in __import__("sys").modules:
            import aedetect.tracking

            aedetect.tracking.autolog(disable=True)
            import mlflow

            while mlflow.active_run() is not None:
                mlflow.end_run()
    assert os.getcwd() == str(checkout_dir)
