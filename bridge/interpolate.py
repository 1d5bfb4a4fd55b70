"""``${...}`` references in config strings: environment variables and secret files.

Secrets should not sit in the config file. A string value may name where they are:

- ``${VAR}`` and ``${VAR:-default}``: an environment variable; the default may itself hold
  references (``${A:-${B}}``) and is only looked at when ``VAR`` is unset.
- ``${file:/path}``: the whole content of a file (one trailing newline dropped), as a
  Kubernetes or Docker secret is mounted.
- ``${file:/path:key}``: one key of a Java properties file, as Kafka Connect's
  FileConfigProvider reads it (the path ends at the first ``:``).
- ``$${...}`` is a literal ``${...}``.

Anything else inside ``${...}`` is left as written. Every value read from a file is
registered with :mod:`bridge.redact` (a file is only ever named for a secret), and a file
that group or others can read gets one WARNING naming the file, never its content.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import javaproperties

from bridge.redact import register_secret

__all__ = ["Interpolator", "interpolate"]

log = logging.getLogger(__name__)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _closing_brace(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``${`` whose content starts at ``start`` (-1 if none)."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


@dataclass
class Interpolator:
    """Resolves references in one config document, collecting every problem (not only the first).

    ``environ`` and ``warn`` are parameters so a caller (and a test) can give its own.
    """

    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    warn: Callable[[str], None] = log.warning
    problems: list[str] = field(default_factory=list)
    _files: dict[str, str | dict[str, str] | OSError] = field(default_factory=dict)
    _warned: set[str] = field(default_factory=set)

    def value(self, value: Any, path: str = "") -> Any:
        """``value`` with every string inside it resolved; ``path`` names the key in problems."""
        if isinstance(value, dict):
            return {k: self.value(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, str):
            return self.text(value, path)
        return value

    def text(self, text: str, path: str) -> str:
        if "$" not in text:
            return text
        out: list[str] = []
        i = 0
        while i < len(text):
            if text.startswith("$${", i):
                end = _closing_brace(text, i + 3)
                if end < 0:
                    out.append(text[i:])
                    break
                out.append(text[i + 1 : end + 1])  # the escape drops one "$" and keeps the rest as written
                i = end + 1
                continue
            if text.startswith("${", i):
                end = _closing_brace(text, i + 2)
                if end < 0:
                    out.append(text[i:])
                    break
                out.append(self._reference(text[i + 2 : end], text[i : end + 1], path))
                i = end + 1
                continue
            j = text.find("$", i + 1)
            j = len(text) if j < 0 else j
            out.append(text[i:j])
            i = j
        return "".join(out)

    def _reference(self, body: str, written: str, path: str) -> str:
        if body.startswith("file:"):
            return self._file(body[len("file:") :], path)
        name = _ENV_NAME.match(body)
        if name is None:
            return written
        rest = body[name.end() :]
        if rest and not rest.startswith(":-"):
            return written
        var = name.group()
        env = self.environ.get(var)
        if env is not None:
            return env
        if rest:
            return self.text(rest[2:], path)
        self.problems.append(f"{path}: environment variable {var} is not set; set it or use ${{{var}:-default}}")
        return ""

    def _file(self, ref: str, path: str) -> str:
        file, sep, key = ref.partition(":")
        if not file:
            self.problems.append(f"{path}: ${{file:}} names no file; write ${{file:/path/to/secret}}")
            return ""
        content = self._read(file, properties=bool(sep), path=path)
        if content is None:
            return ""
        if not sep:
            assert isinstance(content, str)
            register_secret(content)
            return content
        assert isinstance(content, dict)
        if key not in content:
            self.problems.append(
                f"{path}: key {key!r} is not in properties file {file}; add a line '{key}=...' to it or fix the key "
                "after the last ':'"
            )
            return ""
        register_secret(content[key])
        return content[key]

    def _read(self, file: str, *, properties: bool, path: str) -> str | dict[str, str] | None:
        cache_key = f"{'p' if properties else 'f'}:{file}"
        if cache_key not in self._files:
            self._files[cache_key] = self._load(file, properties)
        got = self._files[cache_key]
        if isinstance(got, OSError):
            self.problems.append(
                f"{path}: cannot read secret file {file} ({got.strerror or got}); create it, fix the path, or let "
                "this process read it" if got.errno else f"{path}: secret file {file} is {got.strerror}; save it as UTF-8"
            )
            return None
        return got

    def _load(self, file: str, properties: bool) -> str | dict[str, str] | OSError:
        try:
            with open(file, "rb") as f:
                mode = os.fstat(f.fileno()).st_mode
                raw = f.read()
        except OSError as e:
            return e
        if stat.S_ISREG(mode) and mode & (stat.S_IRGRP | stat.S_IROTH) and file not in self._warned:
            self._warned.add(file)
            self.warn(
                f"secret file {file} is readable by {'group and others' if mode & stat.S_IROTH else 'its group'} "
                f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it (Kubernetes: defaultMode: 0400)"
            )
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            return OSError(0, f"not UTF-8 text: byte 0x{raw[e.start]:02x} at position {e.start}")
        if properties:
            return dict(javaproperties.loads(text))
        if text.endswith("\r\n"):
            return text[:-2]
        return text[:-1] if text.endswith("\n") else text


def interpolate(value: Any, path: str = "") -> tuple[Any, list[str]]:
    """Resolve every reference in ``value``; returns the result and the problems found."""
    it = Interpolator()
    out = it.value(value, path)
    return out, it.problems
