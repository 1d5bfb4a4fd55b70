"""GetRecords response body → Avro key and value per record, in one pass.

The bridge's hot path. Parsing a page into Python dicts (orjson) and then walking them to
write Avro costs more than everything after it; ``Transcoder.page`` reads the JSON bytes
once and writes the Avro bodies as it goes. The C one returns its own record type, one small
object per record holding the two byte strings (no dicts, not tracked by the collector):
records wait for the broker by the tens of thousands, and per-record objects were what the
bridge spent most on after the transcoder itself.

Two implementations of one function, held to identical output by tests/unit/test_transcode.py:

- ``connectors.dynamodb._transcode`` (C, built by ``pip install`` where a compiler is present);
- ``connectors.dynamodb._transcode_py`` (orjson + the reference encoder in ``connectors.dynamodb.avro``),
  the reference the C code is tested against.

``frame_records(records, key_header, value_header)`` (C only, else None) frames a list of the C
transcoder's records (or of one ItemWriter's) for the producer without copying them again.

``ItemWriter`` does the same for snapshot items (a Scan page's ``Items``, an export file's
``{"Item": ...}`` lines) with the same item encoding, parsing with the GIL released so several
pages or files encode on several cores; ``PyItemWriter`` is its twin, held to identical
bytes by tests/unit/test_item_writer.py.

``Transcoder.page(body, ts_ms, plan, schema)`` writes typed images instead (the C module's
``TypedPlan``, compiled from a typed schema by connectors/dynamodb/typed/plan.py): records whose
images are not plainly in the plan come back as their JSON for the Python writer
(records.PageReader).

``Transcoder`` is the C one; it is None where the extension was not built, or when
``BRIDGE_PURE_PYTHON=1`` is set. The Streams reader then takes the general path (orjson,
``from_stream_records``, ``connectors.dynamodb.avro`` in the serializer), which in pure Python is
faster than the twin (the twin checks every attribute before encoding it, to refuse exactly
what the C code refuses). Both raise ValueError on input they do not take (invalid JSON,
wrong types, non-canonical base64, ...); the reader then takes the general path for that
page, which reports each bad record as a ConversionError (dead-letter topic) as before.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from connectors.dynamodb._transcode_py import ABI, MAX_ATTRIBUTE_DEPTH, RECORD_FIELDS
from connectors.dynamodb._transcode_py import ItemWriter as PyItemWriter
from connectors.dynamodb._transcode_py import Transcoder as PyTranscoder

__all__ = [
    "CItemWriter", "CTranscoder", "IMPLEMENTATION", "ItemWriter", "MAX_ATTRIBUTE_DEPTH", "PyItemWriter",
    "PyTranscoder", "RECORD_FIELDS", "Transcoder", "frame_records", "startup_line",
]

# Why the C transcoder is not in use (None when it is): the start-up line says it, because the
# pure-Python path is ~14x slower end to end and nothing else would tell (an image built
# without a compiler once ran it for weeks unnoticed).
_FALLBACK_REASON: str | None = None

try:
    from connectors.dynamodb import _transcode  # type: ignore[attr-defined]  # the C extension, if compiled
except ImportError as e:  # not compiled here (no compiler at install time)
    CTranscoder = frame_records = CItemWriter = None
    _FALLBACK_REASON = f"the C extension was not built ({e})"
else:
    # A stale build of an older _transcode.c is not used.
    same = (getattr(_transcode, "ABI", 1), _transcode.MAX_ATTRIBUTE_DEPTH, _transcode.RECORD_FIELDS) == (
        ABI, MAX_ATTRIBUTE_DEPTH, RECORD_FIELDS
    )
    CTranscoder = _transcode.Transcoder if same else None
    CItemWriter = getattr(_transcode, "ItemWriter", None) if same else None
    _frame_streams = _transcode.frame
    _frame_items = getattr(_transcode, "frame_items", None)

    def _frame_any(records: list[Any], key_header: bytes, value_header: bytes) -> Any:
        """The C framing of a batch of stream records, or of snapshot items; None for anything else."""
        out = _frame_streams(records, key_header, value_header)
        if out is None and _frame_items is not None:
            out = _frame_items(records, key_header, value_header)
        return out

    frame_records = _frame_any if same else None
    if not same:
        _FALLBACK_REASON = f"the C extension at {_transcode.__file__} is a stale build of an older _transcode.c"

_PURE = os.environ.get("BRIDGE_PURE_PYTHON") == "1"
if _PURE:
    _FALLBACK_REASON = "BRIDGE_PURE_PYTHON=1 is set"
Transcoder = None if _PURE else CTranscoder
# Scan pages and export lines in one pass (the C writer only: in pure Python the general path,
# orjson and connectors.dynamodb.avro in the serializer, is the faster one, as for streams).
ItemWriter = None if _PURE else CItemWriter
IMPLEMENTATION = "c" if Transcoder is not None else "python"


def startup_line() -> tuple[int, str]:
    """(log level, message) saying which transcoder this process uses, for the start-up log.

    INFO for the C one; WARNING for the pure-Python one, with why and how to get the fast
    path back, since the records are the same and only the throughput tells otherwise.
    """
    if Transcoder is not None:
        return logging.INFO, f"transcoder: C ({_transcode.__file__})"
    if _PURE:
        fix = "unset BRIDGE_PURE_PYTHON"
    else:
        fix = ("reinstall with a C compiler and the Python headers present (e.g. apt-get install gcc "
               "python3-dev; pip install --force-reinstall --no-deps .), or use docker/Dockerfile, "
               "which builds it")
    return logging.WARNING, f"transcoder: pure Python, ~14x slower than the C one: {_FALLBACK_REASON}; to fix: {fix}"
