"""The Dockerfile: lint-clean under hadolint, and the properties the manifests rely on.

No Docker engine runs here, so the image is never built by the tests; these checks pin
what can be read from the file itself (docs/deploy.md says what was exercised by hand).
"""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement

from .support import DOCKERFILE, ROOT, run_hadolint

UID = "10001"


def stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined, comments dropped), per stage;
    stage 0 holds what comes before the first FROM."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    result: list[list[str]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        result[-1].append(line)
    return result


def test_hadolint_finds_nothing() -> None:
    result = run_hadolint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_base_image_is_pinned_and_shared_by_both_stages() -> None:
    preamble, builder, final = stages()
    (arg,) = preamble
    assert re.fullmatch(r"ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+", arg), arg
    assert builder[0] == "FROM ${PYTHON_IMAGE} AS builder"
    assert final[0] == "FROM ${PYTHON_IMAGE}"


def test_final_stage_runs_tokend_as_a_fixed_non_root_user() -> None:
    final = stages()[-1]
    assert f"USER {UID}:{UID}" in final
    assert 'ENTRYPOINT ["tokend"]' in final
    assert 'CMD ["serve", "--config", "/etc/tokend/tokend.yaml"]' in final
    assert "EXPOSE 50051 8080" in final
    assert 'VOLUME ["/var/lib/tokend"]' in final
    env = " ".join(i for i in final if i.startswith("ENV "))
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env
    # The entry point exists in the distribution the image installs.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["tokend"] == "tokend.cli:main"


def test_final_stage_copies_only_the_virtualenv_and_installs_nothing() -> None:
    final = stages()[-1]
    copies = [i for i in final if i.startswith(("COPY", "ADD"))]
    assert copies == ["COPY --from=builder /opt/tokend /opt/tokend"]
    text = " ".join(final)
    for word in ("apt-get", "pip install", "gcc", "build-essential"):
        assert word not in text, f"{word} in the final stage"
    assert "pip uninstall --yes pip setuptools wheel" in text


def test_build_context_is_an_allow_list_of_what_the_build_reads() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "start from nothing, then allow"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {m.group(1).rstrip("/") for m in
              re.finditer(r"^COPY (?!--from)(\S+)", DOCKERFILE.read_text(), re.MULTILINE)}
    assert copied <= allowed, f"COPY of paths the context leaves out: {copied - allowed}"
    assert not {".venv", ".tokend-data", ".git", ".tools", "tests"} & allowed
    # Files the packaging metadata names (readme, licence) must be copied in too.
    for directory in ("", "clients/python/"):
        project = tomllib.loads((ROOT / directory / "pyproject.toml").read_text())["project"]
        for key in ("readme", "license-files"):
            value = project.get(key, [])
            value = value.get("file", []) if isinstance(value, dict) else value
            for path in [value] if isinstance(value, str) else value:
                assert any((directory + path).startswith(c) for c in copied), (
                    f"{directory}pyproject.toml's {key} {path} is not copied into the build")


def test_postgresql_driver_brings_its_own_libpq() -> None:
    # The final stage has no libpq: psycopg must come with its bundled one (the `binary`
    # extra), unless the Dockerfile installs libpq5 into the final stage.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in map(Requirement, project["dependencies"]):
        if requirement.name == "psycopg":
            assert "binary" in requirement.extras or "libpq5" in " ".join(stages()[-1]), (
                "psycopg without the binary extra needs libpq5 in the image's final stage")
