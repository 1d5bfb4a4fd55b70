"""``ddb-kafka-bridge``: run the bridge, operate it, and (with the dev tools) the local stack and the demo."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import signal
import sys
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from bridge.errors import BridgeError, ConfigError, StartupError
from bridge.redact import install_log_redaction, install_output_redaction, redact

if TYPE_CHECKING:
    from bridge.worker import Worker

__all__ = ["main"]

log = logging.getLogger("bridge_app.cli")


class _Phase:
    """Whether the bridge got past its start: an unexpected error before is exit 2, after exit 1."""

    running = False


def _run(args: argparse.Namespace) -> int:
    from bridge.gctune import tune_for_throughput
    from bridge_app.app import load_config, run_bridge

    cfg = load_config(args.config)
    logging.getLogger().setLevel(args.log_level or cfg.log_level)
    tune_for_throughput()
    # `kill -USR1 <pid>` prints every thread's stack to stderr: for a bridge that seems stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    until_caught_up = None
    if args.until_caught_up:
        from bridge_app.wiring import until_caught_up_hook

        until_caught_up = until_caught_up_hook

    def started(worker: Worker) -> None:
        _Phase.running = True
        if until_caught_up is not None:
            until_caught_up(worker)

    asyncio.run(run_bridge(cfg, on_start=started))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from bridge.http_service import check_listeners, listening_ports
    from bridge_app.app import check_connect, load_config

    cfg = load_config(args.config)
    check_listeners(listening_ports(cfg))  # a port in use (by a running bridge too) fails the start
    print(f"{args.config}: ok")
    if args.connect:
        report = check_connect(cfg)
        print("\n".join(report.lines()))
        return 1 if report.problems else 0
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line, like every other error of the CLI."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ddb-kafka-bridge", description=__doc__)
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
    from bridge_app.ops_cli import add_ops_subcommands

    add_ops_subcommands(sub)
    _add_dev_subcommands(sub)
    return p


COMMANDS_GROUP = "ddb_kafka_bridge.commands"
"""Entry points that add subcommands: ``fn(subparsers)``. The dev tools (devtools/) declare
``dev`` and ``demo`` here, so the bridge never imports them."""
DEV_COMMANDS = ("dev", "demo")
DEV_TOOLS_HINT = "in a checkout, make install (pip install -e ./devtools -e '.[dev]')"


def _add_dev_subcommands(sub: Any) -> None:
    """``dev up|down|status`` and ``demo`` come from the dev tools, installed beside the dev extra.

    Without them the commands still parse, and fail with one line saying what to install.
    """
    missing = "devtools"
    for entry in entry_points(group=COMMANDS_GROUP):
        try:
            add = entry.load()
        except ImportError as e:  # the dev tools without their dependencies (moto, tansu, ...)
            missing = e.name or str(e)
            continue
        add(sub)

    def unavailable(args: argparse.Namespace) -> int:
        raise StartupError(f"'{args.command}' needs the dev tools (module {missing!r} is not installed); "
                           f"install them with the dev extra: {DEV_TOOLS_HINT}")

    for name in DEV_COMMANDS:
        if name not in sub.choices:
            stub = sub.add_parser(name, help=f"{name} (needs the dev tools: not installed)", add_help=False)
            stub.add_argument("rest", nargs=argparse.REMAINDER)
            stub.set_defaults(func=unavailable)


def _say(prefix: str, error: BaseException | str) -> None:
    """The last line on stderr: one line, secrets masked."""
    print(f"ddb-kafka-bridge: {prefix}: {' '.join(redact(str(error)).split())}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    # Every line any command prints (results, errors, log lines) is masked here, at one place.
    restore = install_output_redaction()
    try:
        return _main(argv)
    finally:
        restore()


def _main(argv: list[str] | None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    install_log_redaction()
    # request lines from the HTTP clients, "Found credentials in environment variables" from botocore
    for noisy in ("httpx", "httpx2", "httpcore", "botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    _Phase.running = False
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        _say("config error", e)
        return 2
    except StartupError as e:
        _say("error", e)
        return 2
    except BridgeError as e:
        _say("error", e)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - a bug must still end in one line, not a traceback
        log.debug("unexpected error", exc_info=True)
        _say("error", f"unexpected {type(e).__name__}: {e} (a bug in the bridge; run with --log-level DEBUG "
                      "for the traceback and report it)")
        return 1 if _Phase.running else 2


if __name__ == "__main__":
    sys.exit(main())
