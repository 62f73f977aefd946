"""Fixtures for the deployment tests: each kustomization rendered once per session."""

from __future__ import annotations

import pytest

from .support import KUSTOMIZATIONS, Obj, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Obj]]:
    """`kustomize build` of every kustomization, by name (builds kustomize on first use)."""
    return {name: render(name) for name in KUSTOMIZATIONS}
