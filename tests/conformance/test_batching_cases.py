"""conformance/batching/cases.json is exactly what conformance/batching/make_cases.py makes.

The cases themselves are run by every client's unit tests (conformance/README.md
"Batching cases"); this keeps the committed file and its generator in step in CI.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

GENERATOR = Path(__file__).resolve().parents[2] / "conformance" / "batching" / "make_cases.py"


def _generator() -> Any:
    """The generator as a module (it is a script, not a package member)."""
    name = "conformance_batching_make_cases"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_generator_reproduces_the_committed_cases(capsys: pytest.CaptureFixture[str]) -> None:
    assert _generator().main(["--check"]) == 0, capsys.readouterr().err


def test_the_check_notices_a_changed_expectation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generator = _generator()
    edited = tmp_path / "cases.json"
    edited.write_text(generator.CASES.read_text("utf-8").replace("61440", "61439", 1), "utf-8")
    monkeypatch.setattr(generator, "CASES", edited)
    assert generator.main(["--check"]) == 1


def test_the_generator_makes_the_same_file_twice() -> None:
    generator = _generator()
    assert generator.render(generator.document()) == generator.render(generator.document())
