"""docker/Dockerfile builds an image that runs the C transcoder (issue 18, the container).

There is no Docker engine here or in CI, so the image is not built: its install steps are
replayed instead. The Dockerfile is parsed (dockerfile-parse), every instruction is turned
into a step this module knows how to replay, and a step it does not know fails the test
before anything runs, so a new RUN line cannot slip past the check unreplayed. Each stage
gets an empty directory standing in for the image's filesystem (absolute paths map into
it) and a fresh venv standing in for the image's Python; COPY takes the same files from
the repository (honouring .dockerignore) or from an earlier stage; RUN runs the same pip
and python commands. Then the final stage's Python, started outside the source tree, must
load the C transcoder from the installed package.

What is not replayed, and why that is sound: ``apt-get`` (the replay checks that the tools
the named packages bring are present on this host instead), ``useradd`` and ``USER`` (who
runs the process changes nothing that is installed), and pip's cache (PIP_NO_CACHE_DIR is
dropped so the replay reuses the host's warm cache: the same files, fetched faster); pip
keeps the host's settings for reaching its index (certificates, proxies, find-links).
"""

from __future__ import annotations

import glob
import io
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import venv
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from tests.helpers import ROOT

DOCKERFILE = ROOT / "docker" / "Dockerfile"

# What `apt-get install` may name, and how the replay sees that the host has it instead.
APT_PACKAGES = {
    "gcc": lambda: shutil.which("gcc") is not None,
    "libc6-dev": lambda: Path("/usr/include/stdio.h").exists(),
    "zlib1g-dev": lambda: Path("/usr/include/zlib.h").exists(),
}
# Instructions that only describe the image (metadata, the process it starts, its user).
DESCRIPTIVE = {"ENTRYPOINT", "CMD", "USER", "LABEL", "EXPOSE"}


class Unreplayable(Exception):
    """A Dockerfile step this replay does not know: teach it, or the test proves nothing."""


@dataclass
class Run:
    """One command of a RUN line (RUN a && b is two), already split into words."""

    argv: list[str]
    line: int


@dataclass
class Stage:
    name: str | None
    steps: list[tuple[str, object, int]] = field(default_factory=list)  # (kind, payload, line)


def plan(text: str) -> list[Stage]:
    """The Dockerfile as stages of replayable steps; raises Unreplayable on anything else."""
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    stages: list[Stage] = []
    for ins in parser.structure:
        kind, value, line = ins["instruction"], ins["value"], ins["startline"] + 1
        if kind == "COMMENT":
            continue
        if kind == "FROM":
            words = value.split()
            if not words[0].startswith("python:") or len(words) not in (1, 3) or (
                len(words) == 3 and words[1].upper() != "AS"
            ):
                raise Unreplayable(f"line {line}: FROM {value}: only python:* images (a venv stands in for them)")
            stages.append(Stage(words[2] if len(words) == 3 else None))
            continue
        if not stages:
            raise Unreplayable(f"line {line}: {kind} before FROM")
        stage = stages[-1]
        if kind == "ENV":
            pairs = shlex.split(value)
            if not all("=" in p for p in pairs):
                raise Unreplayable(f"line {line}: ENV {value}: only the KEY=value form")
            stage.steps.append(("env", dict(p.split("=", 1) for p in pairs), line))
        elif kind == "WORKDIR":
            stage.steps.append(("workdir", value.strip(), line))
        elif kind == "COPY":
            words = shlex.split(value)
            source_stage = None
            while words and words[0].startswith("--"):
                flag = words.pop(0)
                if not flag.startswith("--from="):
                    raise Unreplayable(f"line {line}: COPY {flag}")
                source_stage = flag.split("=", 1)[1]
                if source_stage not in {s.name for s in stages[:-1]}:
                    raise Unreplayable(f"line {line}: COPY --from={source_stage}: not an earlier stage")
            if len(words) < 2 or value.lstrip().startswith("["):
                raise Unreplayable(f"line {line}: COPY {value}")
            stage.steps.append(("copy", (source_stage, words[:-1], words[-1]), line))
        elif kind == "RUN":
            stage.steps.extend(("run", cmd, line) for cmd in _commands(value, line))
        elif kind in DESCRIPTIVE:
            stage.steps.append((kind.lower(), value, line))
        else:
            raise Unreplayable(f"line {line}: {kind} is not replayed")
    if not stages:
        raise Unreplayable("no FROM")
    return stages


def _commands(value: str, line: int) -> list[Run]:
    """RUN's shell line as commands joined by && (no other shell syntax), each one checked."""
    if value.lstrip().startswith("["):
        raise Unreplayable(f"line {line}: RUN in exec form")
    lexer = shlex.shlex(value, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for word in lexer:
        if word == "&&":
            commands.append([])
        elif set(word) <= set("();<>|&") or any(c in word for c in "$`"):
            raise Unreplayable(f"line {line}: RUN {value!r}: shell syntax {word!r} is not replayed")
        else:
            commands[-1].append(word)
    out = []
    for argv in commands:
        if not argv:
            raise Unreplayable(f"line {line}: RUN {value!r}: an empty command")
        name = argv[0]
        ok = (
            name == "pip"
            or (name == "python" and len(argv) >= 3 and argv[1] in ("-c", "-m"))
            or (name == "rm" and len(argv) >= 3 and argv[1] in ("-rf", "-fr"))
            or (name == "apt-get" and argv[1:2] == ["update"])
            or (name == "apt-get" and argv[1:2] == ["install"])
            or name == "useradd"
        )
        if not ok:
            raise Unreplayable(f"line {line}: RUN {shlex.join(argv)}: not a step this replay knows")
        if name == "apt-get" and argv[1] == "install":
            unknown = [p for p in argv[2:] if not p.startswith("-") and p not in APT_PACKAGES]
            if unknown:
                raise Unreplayable(f"line {line}: apt-get install {unknown}: say how the host provides them")
        out.append(Run(argv, line))
    return out


# ------------------------------------------------------------------------------ the replay


@dataclass
class Built:
    root: Path  # the stage's filesystem
    python: Path  # the stage's interpreter (a venv)
    env: dict[str, str]
    workdir: str = "/"
    entrypoint: list[str] | None = None

    def path(self, image_path: str) -> Path:
        full = posixpath.normpath(posixpath.join(self.workdir, image_path))
        return self.root / full.lstrip("/")


def replay(stages: list[Stage], tmp: Path) -> Built:
    built: dict[str, Built] = {}
    current = None
    for n, stage in enumerate(stages):
        root = tmp / f"stage{n}" / "fs"
        root.mkdir(parents=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(tmp / f"stage{n}" / "venv")
        current = Built(root, tmp / f"stage{n}" / "venv" / "bin" / "python", {})
        for kind, payload, line in stage.steps:
            where = f"Dockerfile line {line}"
            if kind == "env":
                current.env.update(payload)
            elif kind == "workdir":
                current.workdir = posixpath.join(current.workdir, payload)
                current.path(".").mkdir(parents=True, exist_ok=True)
            elif kind == "copy":
                source_stage, sources, dest = payload
                _copy(current, built[source_stage] if source_stage else None, sources, dest, where)
            elif kind == "run":
                _run(current, payload, where)
            elif kind == "entrypoint":
                current.entrypoint = json.loads(payload)
        if stage.name:
            built[stage.name] = current
    assert current is not None
    return current


def _copy(into: Built, from_stage: Built | None, sources: list[str], dest: str, where: str) -> None:
    """Docker's COPY: a directory's contents go into the destination; several sources or a
    destination ending in / make it a directory."""
    ignored = _dockerignore() if from_stage is None else None
    matched: list[Path] = []
    for src in sources:
        if from_stage is None:
            hits = [ROOT / p for p in sorted(glob.glob(src, root_dir=ROOT)) if not _ignored(p, ignored)]
        else:
            hits = [Path(p) for p in sorted(glob.glob(str(from_stage.path(src))))]
        matched += hits
    assert matched, f"{where}: COPY {sources} matched nothing"
    target = into.path(dest)
    as_dir = dest.endswith("/") or len(matched) > 1 or len(sources) > 1
    for src in matched:
        if src.is_dir():
            base = src
            for dirpath, _dirnames, filenames in os.walk(src):
                rel_dir = Path(dirpath).relative_to(base)
                for fn in filenames:
                    rel_to_root = (Path(dirpath) / fn).relative_to(ROOT) if from_stage is None else None
                    if rel_to_root is not None and _ignored(str(rel_to_root), ignored):
                        continue
                    out = target / rel_dir / fn
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(Path(dirpath) / fn, out)
        else:
            out = target / src.name if as_dir else target
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, out)


def _dockerignore() -> list[re.Pattern[str]]:
    """.dockerignore's patterns as regexes (Docker's rules for *, ** and ?; no ! exceptions)."""
    path = ROOT / ".dockerignore"
    patterns = []
    for raw in path.read_text().splitlines() if path.exists() else []:
        pat = raw.strip()
        if not pat or pat.startswith("#"):
            continue
        if pat.startswith("!"):
            raise Unreplayable(f".dockerignore {pat}: exceptions are not replayed")
        rx = re.escape(pat.strip("/")).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        rx = rx.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        patterns.append(re.compile(rx + "(?:/.*)?"))
    return patterns


def _ignored(rel: str, patterns: list[re.Pattern[str]] | None) -> bool:
    return bool(patterns) and any(p.fullmatch(rel) for p in patterns)


def _run(stage: Built, run: Run, where: str) -> None:
    name, args = run.argv[0], run.argv[1:]
    if name in ("apt-get", "useradd"):  # checked by plan(): the host has what apt-get would bring
        if name == "apt-get" and args[0] == "install":
            missing = [p for p in args[1:] if not p.startswith("-") and not APT_PACKAGES[p]()]
            assert not missing, f"{where}: this host lacks what {missing} provide; the replay cannot stand in"
        return
    if name == "rm":
        for arg in args[1:]:
            for hit in glob.glob(str(stage.path(arg))):
                shutil.rmtree(hit) if Path(hit).is_dir() else os.remove(hit)
        return
    # pip / python: paths the Dockerfile names are the stage's, globs expand as the shell would.
    words = []
    for arg in args:
        if arg.startswith("/"):
            hits = sorted(glob.glob(str(stage.path(arg))))
            words += hits or [str(stage.path(arg))]
        else:
            words.append(arg)
    argv = [str(stage.python), "-m", "pip", *words] if name == "pip" else [str(stage.python), *words]
    # The host's environment (how pip reaches its index: certificates, proxies, find-links),
    # without what would point at this checkout's Python, then the stage's ENV.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    env |= {k: v for k, v in stage.env.items() if k != "PIP_NO_CACHE_DIR"}
    env.pop("PIP_NO_CACHE_DIR", None)
    env["PATH"] = f"{stage.python.parent}:{os.environ['PATH']}"
    proc = subprocess.run(argv, cwd=stage.path("."), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{where}: {shlex.join(run.argv)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


# ------------------------------------------------------------------------------ the tests


def test_plan_refuses_a_step_it_cannot_replay() -> None:
    """Every kind of unknown step stops the replay before anything runs."""
    good = DOCKERFILE.read_text()
    assert [s.name for s in plan(good)] == ["build", None]
    for bad, why in (
        ("RUN curl -fsSL https://example.com/x.sh | sh", "shell syntax '|'"),
        ("RUN pip install . ; true", "shell syntax ';'"),
        ("RUN echo $HOME", "shell syntax '$HOME'"),
        ("RUN make all", "not a step this replay knows"),
        ('RUN ["pip", "install", "."]', "exec form"),
        ("ADD https://example.com/x.tar.gz /opt/", "ADD is not replayed"),
        ("ARG VERSION=1", "ARG is not replayed"),
        ("COPY --chown=bridge pyproject.toml ./", "COPY --chown"),
        ("COPY --from=nowhere /wheels /wheels", "not an earlier stage"),
        ("RUN apt-get install -y libfoo-dev", "libfoo-dev"),
    ):
        with pytest.raises(Unreplayable, match=re.escape(why)):
            plan(good + "\n" + bad + "\n")
    with pytest.raises(Unreplayable, match="only python"):
        plan("FROM debian:12-slim\nRUN pip install .\n")


@pytest.mark.slow
def test_image_install_steps_give_the_c_transcoder(tmp_path: Path) -> None:
    final = replay(plan(DOCKERFILE.read_text()), tmp_path)

    # The image's Python, started where the image starts it (WORKDIR, not the source tree),
    # with nothing from this checkout on its path.
    probe = (
        "import json, logging, sys\n"
        "import connectors.dynamodb.transcode as t\n"
        "from connectors.dynamodb import _transcode\n"
        "level, line = t.startup_line()\n"
        "print(json.dumps({'implementation': t.IMPLEMENTATION, 'extension': _transcode.__file__,"
        " 'module': t.__file__, 'level': logging.getLevelName(level), 'line': line}))\n"
    )
    env = {"PATH": f"{final.python.parent}:/usr/bin:/bin", **final.env}
    proc = subprocess.run([str(final.python), "-I", "-c", probe], cwd=final.path("."), env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    site = Path(final.python).parent.parent / "lib"
    assert got["implementation"] == "c", got
    assert got["level"] == "INFO" and got["line"].startswith("transcoder: C"), got
    for key in ("extension", "module"):
        assert Path(got[key]).is_relative_to(site) and not Path(got[key]).is_relative_to(ROOT), got
    assert Path(got["extension"]).suffix == ".so"

    # The entry point the image starts is installed and answers.
    assert final.entrypoint, "the Dockerfile has no ENTRYPOINT"
    command = final.python.parent / final.entrypoint[0]
    assert command.exists(), f"ENTRYPOINT {final.entrypoint[0]} is not installed"
    proc = subprocess.run([str(command), "--help"], cwd=final.path("."), env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "run" in proc.stdout, proc.stderr
