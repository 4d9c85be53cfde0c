"""The worker's defaults live in the core alone (cpp/include/cinejobs/worker.hpp): the Python
layer, the CLI and the bindings pass on what the user gave, and read the rest back."""

from __future__ import annotations

import re
from pathlib import Path

import cinejobs
from cinejobs import _core

ROOT = Path(__file__).resolve().parents[2]

# A default written again outside the core: `concurrency: int = 8`, `default=8` next to
# --concurrency, `grace: float = 30.0`, `py::arg("lease") = 30.0`, ...
_REPEATED_DEFAULT = re.compile(
    r"""(concurrency|grace|lease|poll_interval|max_batch)["']?\)?\s*(:\s*\w+\s*)?=\s*"""
    r"""(8|30(\.0)?|0\.05|256)\b"""
)


def test_no_worker_default_is_written_outside_the_core() -> None:
    offenders = []
    for path in [
        *(ROOT / "python" / "cinejobs").rglob("*.py"),
        *(ROOT / "python" / "cinejobs").rglob("*.pyi"),
        *(ROOT / "cpp" / "bindings").glob("*.cpp"),
    ]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if _REPEATED_DEFAULT.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "worker defaults repeated outside the core:\n" + "\n".join(offenders)


def test_the_pattern_catches_what_it_is_for() -> None:
    for line in ("concurrency: int = 8,", 'py::arg("grace") = 30.0,', "lease=30.0,"):
        assert _REPEATED_DEFAULT.search(line), line


def test_options_left_out_take_the_cores_defaults(tmp_path: Path) -> None:
    defaults = _core.WorkerOptions()
    app = cinejobs.App(f"sqlite:///{tmp_path}/jobs.db")
    worker = app.worker(["default"], grace=2.5)
    assert worker.concurrency == defaults.concurrency
    assert worker.options.lease == defaults.lease
    assert worker.grace == 2.5
    assert worker.processes == 0
