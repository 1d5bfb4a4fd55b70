"""GetRecords response body → Avro key and value per record, in one pass.

The bridge's hot path. Parsing a page into Python dicts (orjson) and then walking them to
write Avro costs more than everything after it; ``Transcoder.page`` reads the JSON bytes
once and writes the Avro bodies as it goes. The C one returns its own record type, one small
object per record holding the two byte strings (no dicts, not tracked by the collector):
records wait for the broker by the tens of thousands, and per-record objects were what the
bridge spent most on after the transcoder itself.

Two implementations of one function, held to identical output by tests/unit/test_transcode.py:

- ``connectors.dynamodb._transcode`` (C, built by ``pip install`` where a compiler is present);
- ``connectors.dynamodb._transcode_py`` (orjson + the reference encoder in ``bridge.serde.avro``),
  the reference the C code is tested against.

``frame_records(records, key_header, value_header)`` (C only, else None) frames a list of the C
transcoder's records for the producer without copying them again.

``Transcoder`` is the C one; it is None where the extension was not built, or when
``BRIDGE_PURE_PYTHON=1`` is set. The Streams reader then takes the general path (orjson,
``from_stream_records``, ``bridge.serde.avro`` in the serializer), which in pure Python is
faster than the twin (the twin checks every attribute before encoding it, to refuse exactly
what the C code refuses). Both raise ValueError on input they do not take (invalid JSON,
wrong types, non-canonical base64, ...); the reader then takes the general path for that
page, which reports each bad record as a ConversionError (dead-letter topic) as before.
"""

from __future__ import annotations

import os

from connectors.dynamodb._transcode_py import ABI, MAX_ATTRIBUTE_DEPTH, RECORD_FIELDS
from connectors.dynamodb._transcode_py import Transcoder as PyTranscoder

__all__ = [
    "CTranscoder", "IMPLEMENTATION", "MAX_ATTRIBUTE_DEPTH", "PyTranscoder", "RECORD_FIELDS", "Transcoder",
    "frame_records",
]

try:
    from connectors.dynamodb import _transcode
except ImportError:  # not compiled here (no compiler at install time)
    CTranscoder = frame_records = None
else:
    # A stale build of an older _transcode.c is not used.
    same = (getattr(_transcode, "ABI", 1), _transcode.MAX_ATTRIBUTE_DEPTH, _transcode.RECORD_FIELDS) == (
        ABI, MAX_ATTRIBUTE_DEPTH, RECORD_FIELDS
    )
    CTranscoder = _transcode.Transcoder if same else None
    frame_records = _transcode.frame if same else None

Transcoder = None if os.environ.get("BRIDGE_PURE_PYTHON") == "1" else CTranscoder
IMPLEMENTATION = "c" if Transcoder is not None else "python"
