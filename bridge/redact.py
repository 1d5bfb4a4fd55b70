"""Keep secrets out of everything a user can see: error lines, log lines, validate output.

Two kinds of secret reach messages by accident: credentials inside URLs
(``https://user:password@host``, also in a mistyped URL that failed validation), and
configured values a library echoes back (a SASL password in a librdkafka error, a
registry token in an HTTP error). URLs are masked by shape; configured secrets are
registered once at config load (:func:`register_secret`) and masked wherever they occur.
A logging filter applies both to every log record, and the command line's stdout and
stderr pass through :class:`RedactingStream` (``install_output_redaction``): every line any
command prints is masked at that one choke point, so no call site has to remember.
"""

from __future__ import annotations

import io
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TextIO

__all__ = [
    "MASK",
    "RedactingFilter",
    "RedactingStream",
    "install_log_redaction",
    "install_output_redaction",
    "is_secret_key",
    "redact",
    "register_secret",
    "register_secrets",
    "register_url_secrets",
]

MASK = "***"

# scheme://user:password@  (any scheme, so a typo such as "htps://" is masked too). The
# password runs to the last '@' before the path: clients split user-info there, so an
# unencoded '@' in a password ("p@ss") is the password's, not the host's. A token given as
# the user part alone (scheme://token@) or a password with a space cannot be told by shape:
# the config's URLs register theirs at load (register_url_secrets).
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s/:@'\"]*):(?P<pw>[^\s/'\"]*)@")
# Bare "user:password@host" without a scheme (e.g. in a comma-separated broker list).
_BARE_USERINFO = re.compile(r"(?<![\w/])(?P<user>[\w.\-]+):(?P<pw>[^\s/@:'\"]+)@(?=[\w.\-\[])")

_SECRET_KEY = re.compile(r"password|secret|token|jaas|credential|(^|[._])key(\.pem)?$|private", re.IGNORECASE)
_MIN_SECRET_LEN = 3

_lock = threading.Lock()
_secrets: set[str] = set()


def is_secret_key(key: str) -> bool:
    """Whether a config key (librdkafka property or our own) holds a secret value."""
    return bool(_SECRET_KEY.search(key)) and not key.endswith((".location", "_location", ".id", ".algorithm"))


def register_secret(value: Any) -> None:
    """Mask ``value`` in every message from now on (too-short values would mask ordinary text)."""
    if isinstance(value, str) and len(value) >= _MIN_SECRET_LEN:
        with _lock:
            _secrets.add(value)


def register_secrets(mapping: Mapping[str, Any]) -> None:
    """Register the values of every secret-looking key of a flat mapping (librdkafka settings)."""
    for k, v in mapping.items():
        if is_secret_key(str(k)):
            register_secret(str(v))


def register_url_secrets(urls: str) -> None:
    """Register the user-info of each URL of a comma-separated list as a secret: the password
    (raw and percent-decoded), or the user part when it stands alone and looks like a token."""
    from urllib.parse import unquote, urlsplit

    for url in urls.split(","):
        try:
            parts = urlsplit(url.strip())
            user, password = parts.username, parts.password
        except ValueError:
            continue
        # A user part alone counts when it looks like a token (long, no dots), so that a
        # plain user name ("bridge") does not mask that word in every line.
        token = user if password is None and user and len(user) >= 12 and "." not in user else None
        for value in (password, token):
            if value:
                register_secret(value)
                register_secret(unquote(value))


def _mask_url(m: re.Match[str]) -> str:
    return f"{m.group('scheme')}{m.group('user')}:{MASK}@"


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with URL credentials and every registered (or ``extra``) secret masked."""
    out = _URL_USERINFO.sub(_mask_url, text)
    out = _BARE_USERINFO.sub(lambda m: f"{m.group('user')}:{MASK}@", out)
    with _lock:
        secrets = sorted(_secrets.union(s for s in extra if s and len(s) >= _MIN_SECRET_LEN), key=len, reverse=True)
    for s in secrets:
        if s in out:
            out = out.replace(s, MASK)
    return out


class RedactingFilter(logging.Filter):
    """Masks secrets in a log record's final message (arguments included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is logging's problem, not ours
            return True
        clean = redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            # The formatter appends the traceback text; mask it by formatting it here.
            import traceback

            clean += "\n" + redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
            record.exc_info = None
            record.exc_text = None
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


def install_log_redaction() -> None:
    """Attach the filter to every handler of the root logger (idempotent)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


class RedactingStream(io.TextIOBase):
    """A text stream that masks secrets in whatever is written to it, a whole line at a time.

    Text is held until its line is complete (a secret split over two ``write`` calls, as
    ``print`` makes them, is still one line to mask) and passed on at a newline or a flush.
    """

    def __init__(self, inner: TextIO) -> None:
        super().__init__()
        self.inner = inner
        self._pending = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:  # type: ignore[override]
        with self._lock:
            self._pending += text
            if "\n" in text:
                head, _, self._pending = self._pending.rpartition("\n")
                self.inner.write(redact(head + "\n"))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self.inner.write(redact(self._pending))
                self._pending = ""
        self.inner.flush()

    def fileno(self) -> int:
        return self.inner.fileno()

    def isatty(self) -> bool:
        return self.inner.isatty()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.inner.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self.inner.errors


def install_output_redaction() -> Callable[[], None]:
    """Route ``sys.stdout`` and ``sys.stderr`` through :class:`RedactingStream`; returns
    the function that flushes and restores them (the command line calls it on exit)."""
    saved = sys.stdout, sys.stderr
    sys.stdout = RedactingStream(saved[0])  # type: ignore[assignment]
    sys.stderr = RedactingStream(saved[1])  # type: ignore[assignment]

    def restore() -> None:
        for wrapped in (sys.stdout, sys.stderr):
            try:
                wrapped.flush()
            except (OSError, ValueError):  # a closed pipe: nothing more to say
                pass
        sys.stdout, sys.stderr = saved

    return restore
