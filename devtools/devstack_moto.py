"""moto's server for the local stack, refusing stream positions outside a shard as DynamoDB does.

moto hands out a shard iterator for any sequence number: one past the shard's last record
reads nothing, and keeps reading nothing as new records arrive below it. DynamoDB Streams
answers such a GetShardIterator with a ValidationException, and the bridge relies on that
answer to refuse a stored position past the end of its shard (a hand-edited or imported
offset) instead of reading nothing for ever. So ``dev up`` and the tests run moto with that
one check added; everything else is moto unchanged. Run as ``python -m devtools.devstack_moto``
with moto_server's arguments.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["install", "main"]


def install() -> None:
    """Make moto's GetShardIterator refuse AT/AFTER_SEQUENCE_NUMBER outside the shard's records."""
    from moto.dynamodb.exceptions import MockValidationException
    from moto.dynamodbstreams.models import DynamoDBStreamsBackend

    original = DynamoDBStreamsBackend.get_shard_iterator
    if getattr(original, "_checks_sequence_numbers", False):
        return

    def get_shard_iterator(self: Any, arn: str, shard_id: str, shard_iterator_type: str,
                           sequence_number: Any = None) -> Any:
        if shard_iterator_type in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER") and sequence_number is not None:
            shard = self._get_table_from_arn(arn).stream_shard
            if shard is not None:
                first = shard.starting_sequence_number
                last = first + len(shard.items) - 1
                if not first <= int(sequence_number) <= last:
                    raise MockValidationException(
                        f"Invalid SequenceNumber {sequence_number} for {shard_iterator_type} in shard {shard_id}: "
                        f"outside [{first}, {last}]"
                    )
        return original(self, arn, shard_id, shard_iterator_type, sequence_number)

    get_shard_iterator._checks_sequence_numbers = True  # type: ignore[attr-defined]
    DynamoDBStreamsBackend.get_shard_iterator = get_shard_iterator  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    install()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
