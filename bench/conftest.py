"""pytest collects the micro-benchmark files here (bench_*.py) when given the folder:

    .venv/bin/python -m pytest bench/ --benchmark-enable [--benchmark-json=bench/out/micro.json]

(pytest's own default only collects test_*.py; a file named on the command line is collected either way.)
bench_upstream.py is a script, not a benchmark module: it is left out.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run against this checkout, as the tests do
_SCRIPTS = {"bench_upstream.py"}


def pytest_collect_file(file_path: Path, parent):
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_") and file_path.name not in _SCRIPTS
            and file_path.parent == HERE and not parent.session.isinitpath(file_path)):
        return pytest.Module.from_parent(parent, path=file_path)
    return None
