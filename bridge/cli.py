"""``ddb-kafka-bridge``: run the bridge, the local stack, the demo."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import signal
import sys

from bridge.config import load_config
from bridge.errors import BridgeError, ConfigError

__all__ = ["main"]


def _run(args: argparse.Namespace) -> int:
    from bridge.app import run_bridge
    from bridge.gctune import tune_for_throughput

    cfg = load_config(args.config)
    logging.getLogger().setLevel(args.log_level or cfg.log_level)
    tune_for_throughput()
    # `kill -USR1 <pid>` prints every thread's stack to stderr: for a bridge that seems stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    on_start = None
    if args.until_caught_up:
        from bridge.ops.wiring import until_caught_up_hook

        on_start = until_caught_up_hook
    asyncio.run(run_bridge(cfg, on_start=on_start))
    return 0


def _validate(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    print(f"{args.config}: ok")
    if args.connect:
        from connectors.dynamodb.connect_check import check_connect

        report = check_connect(cfg)
        print("\n".join(report.lines()))
        return 1 if report.problems else 0
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ddb-kafka-bridge", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the bridge")
    run.add_argument("-c", "--config", required=True, help="bridge YAML config")
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument("--until-caught-up", action="store_true",
                     help="exit 0 once every shard is read to its current end (and snapshots done) and committed")
    run.set_defaults(func=_run)
    val = sub.add_parser("validate", help="check a config file and exit")
    val.add_argument("-c", "--config", required=True)
    val.add_argument("--connect", action="store_true",
                     help="also reach Kafka, the registry and DynamoDB, probe permissions and print what would run")
    val.set_defaults(func=_validate)
    from bridge.ops.cli import add_ops_subcommands

    add_ops_subcommands(sub)
    try:
        from bridge.devstack import add_dev_subcommands
    except ImportError:  # the local stack needs the dev extras
        pass
    else:
        add_dev_subcommands(sub)
    try:
        from bridge.demo import add_demo_subcommand
    except ImportError:
        pass
    else:
        add_demo_subcommand(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "httpx2", "httpcore"):  # request lines from the HTTP clients
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"ddb-kafka-bridge: config error: {e}", file=sys.stderr)
        return 2
    except BridgeError as e:
        print(f"ddb-kafka-bridge: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
