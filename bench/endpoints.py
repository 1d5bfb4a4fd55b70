"""The broker and registry a bench runs against: the ones given, or a local stack of its own."""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Iterator

__all__ = ["add_endpoint_arguments", "endpoints"]


def add_endpoint_arguments(ap: argparse.ArgumentParser) -> None:
    """``--bootstrap``/``--registry`` (an existing stack) or ``--broker`` (the local one to start)."""
    ap.add_argument("--bootstrap")
    ap.add_argument("--registry")
    ap.add_argument("--broker", choices=("tansu", "kafka"), default="kafka")


@contextlib.contextmanager
def endpoints(args: argparse.Namespace, prefix: str) -> Iterator[tuple[str, str]]:
    """(bootstrap, registry URL): ``--bootstrap``/``--registry`` if both are given, else a
    local stack (``--broker``) started for the run and stopped after it."""
    if args.bootstrap and args.registry:
        yield args.bootstrap, args.registry
        return
    from devtools.devstack import LocalStack

    stack = LocalStack(tempfile.mkdtemp(prefix=prefix), broker=args.broker)
    ep = stack.start()
    try:
        yield ep.kafka_bootstrap, ep.registry_url
    finally:
        stack.stop()
