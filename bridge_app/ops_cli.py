"""Operator commands: ``verify``, ``tail``, ``status``, ``offsets show|reset|export|import``,
``validate --connect``.

Each works with no bridge running: everything they need is in Kafka (topics, the offsets
and status topics), the registry and DynamoDB. ``bridge_app/cli.py`` adds them with one call.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from bridge.config import BridgeConfig, SourceTopic
from bridge.errors import BridgeError, ConfigError

__all__ = ["add_ops_subcommands"]


def load_config(path: str) -> Any:
    """The config file as the running connector reads it (``bridge_app/app.py`` picks the model)."""
    from bridge_app.app import load_config as load

    return load(path)


def _tables(cfg: BridgeConfig, names: list[str] | None) -> list[SourceTopic]:
    known = {s.name: s for s in cfg.source_topics()}
    if not names:
        return list(known.values())
    missing = [n for n in names if n not in known]
    if missing:
        raise ConfigError(f"--table: {missing[0]!r} is not in the config's tables ({', '.join(known)})")
    return [known[n] for n in names]


# ---- verify ---------------------------------------------------------------------------


def _verify(args: argparse.Namespace) -> int:
    from bridge_app.app import verify_source

    cfg = load_config(args.config)
    clean = True
    reports = []
    try:
        for t in _tables(cfg, args.table):
            report = verify_source(
                cfg, t.name, settle_s=args.settle_s, consistent=not args.eventually_consistent,
                skip_undecodable=args.skip_undecodable,
                progress=(lambda m: print(f"verify: {m}", file=sys.stderr)) if not args.json else None,
            )
            reports.append(report)
            clean = clean and report.clean
    except ConfigError:
        raise
    except BridgeError as e:
        print(f"ddb-kafka-bridge: verify could not run: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([r.to_json(args.examples) for r in reports], indent=2))
    else:
        for r in reports:
            print("\n".join(r.lines(args.examples)))
    return 0 if clean else 1


# ---- tail -----------------------------------------------------------------------------


def _tail(args: argparse.Namespace) -> int:
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition

    from bridge.kafka import client_config, position
    from bridge.ops.decode import DECODE_ERRORS, TopicDecoder, Undecodable, to_jsonable
    from bridge_app.app import tail_view

    cfg = load_config(args.config)
    topic = args.topic or _tables(cfg, [args.table] if args.table else None)[0].topic
    decoder = TopicDecoder.for_config(cfg)
    undecodable = Undecodable(topic, args.skip_undecodable)
    consumer = Consumer(client_config(cfg.kafka) | {
        "group.id": "ddb-kafka-bridge-tail", "enable.auto.commit": False, "enable.partition.eof": True,
        "isolation.level": "read_committed", "fetch.wait.max.ms": 100,
    })
    printed = 0
    try:
        meta = consumer.list_topics(topic, timeout=15).topics.get(topic)
        if meta is None or meta.error is not None:
            raise ConfigError(f"topic {topic!r} does not exist; check --topic or the config's tables")
        start = OFFSET_END if args.from_end else OFFSET_BEGINNING
        parts = sorted(meta.partitions)
        consumer.assign([TopicPartition(topic, p, start) for p in parts])
        at_end: set[int] = set()
        while True:
            if not args.follow and len(at_end) == len(parts):
                break
            if args.max_records is not None and printed >= args.max_records:
                break
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(position(msg)[0])
                        continue
                    raise BridgeError(f"reading {topic!r}: {err.str()}")
                at_end.discard(msg.partition())
                try:
                    line: dict[str, Any] = {
                        "topic": topic, "partition": msg.partition(), "offset": msg.offset(),
                        "key": to_jsonable(decoder.decode(msg.key())),
                    }
                    value = decoder.decode(msg.value())
                    if value is None:
                        line["tombstone"] = True
                    else:
                        line |= to_jsonable(tail_view(value))
                except DECODE_ERRORS as e:
                    undecodable.met(*position(msg), e)
                    continue
                print(json.dumps(line, sort_keys=True), flush=True)
                printed += 1
                if args.max_records is not None and printed >= args.max_records:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
        decoder.close()
        if undecodable.summary():
            print(f"tail: {undecodable.summary()}", file=sys.stderr)
    return 0


# ---- offsets --------------------------------------------------------------------------


def _offsets_show(args: argparse.Namespace) -> int:
    from bridge.ops.offsets_tool import export_lines, read_offsets, select
    from bridge.task import partition_id

    cfg = load_config(args.config)
    entries = select(read_offsets(cfg), args.table, args.partition)
    if args.json:
        for line in export_lines(entries):
            print(line)
        return 0
    if not entries:
        print(f"no stored offsets for {cfg.name!r} in {cfg.offsets_topic!r}")
    for p, o in entries:
        where = partition_id(p) or (f"segment {p['segment']}/{p['total_segments']}" if "segment" in p else
                                   json.dumps({k: v for k, v in p.items() if k != "table"}, sort_keys=True))
        print(f"{p.get('table')}  {where}  {json.dumps(o, sort_keys=True)}")
    return 0


def _offsets_export(args: argparse.Namespace) -> int:
    from bridge.ops.offsets_tool import export_lines, read_offsets, select

    cfg = load_config(args.config)
    lines = export_lines(select(read_offsets(cfg), args.table, None))
    text = "".join(f"{ln}\n" for ln in lines)
    if args.output and args.output != "-":
        with open(args.output, "w") as f:
            f.write(text)
        print(f"exported {len(lines)} offsets of {cfg.name!r} to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _offsets_import(args: argparse.Namespace) -> int:
    from bridge.ops.liveness import refuse_if_running
    from bridge.ops.offsets_tool import import_lines, write_offsets
    from bridge_app.app import offset_problem

    cfg = load_config(args.config)
    try:
        if args.input == "-":
            entries = import_lines(sys.stdin.buffer, lambda p, o: offset_problem(cfg, p, o))
        else:
            with open(args.input, "rb") as f:
                entries = import_lines(f, lambda p, o: offset_problem(cfg, p, o))
    except OSError as e:
        raise ConfigError(f"offsets import: cannot read {args.input}: {e.strerror}") from None
    refuse_if_running(cfg, "offsets import")
    n = write_offsets(cfg, entries)
    print(f"imported {n} offsets into {cfg.offsets_topic!r} for {cfg.name!r}")
    return 0


def _offsets_reset(args: argparse.Namespace) -> int:
    from bridge.ops.liveness import refuse_if_running
    from bridge.ops.offsets_tool import read_offsets, select, write_offsets

    cfg = load_config(args.config)
    if args.key is not None or args.key_hex is not None:
        from bridge_app.offsets_cli import reset_key

        refuse_if_running(cfg, "offsets reset")
        return reset_key(args, cfg)
    if not (args.all or args.table or args.partition):
        raise ConfigError(
            "offsets reset: name what to reset: --all, --table NAME, --partition ID_OR_JSON, --key or --key-hex"
        )
    refuse_if_running(cfg, "offsets reset")
    entries = select(read_offsets(cfg), args.table, args.partition)
    if not entries:
        print(f"nothing to reset: no stored offsets match in {cfg.offsets_topic!r}")
        return 0
    n = write_offsets(cfg, [(p, None) for p, _ in entries])
    print(f"reset {n} offsets of {cfg.name!r} (tombstones in {cfg.offsets_topic!r}); the next start reads those "
          f"sources from their start_position")
    return 0


# ---- status ---------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    from bridge.ops.status_view import cluster_status, status_lines

    cfg = load_config(args.config)
    view = cluster_status(cfg)
    if args.json:
        print(json.dumps(view, indent=2, sort_keys=True))
    else:
        print("\n".join(status_lines(view)))
    return 0


def _count(text: str) -> int:
    """A positive whole number (``tail -n``): argparse reports the ValueError as one line."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is not a positive number of records; give 1 or more")
    return n


def _seconds(text: str) -> float:
    """A finite, non-negative number of seconds (``nan``, ``inf`` and negatives refused)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite, non-negative number of seconds")
    if v > 86400:
        raise argparse.ArgumentTypeError(f"{text} s is more than a day; give at most 86400")
    return v


def add_ops_subcommands(sub: Any) -> None:
    """Add the operator commands: verify, tail, status and offsets show|reset|export|import."""
    v = sub.add_parser("verify", help="compare a table with its compacted topic; exit 0 clean, 1 not, 2 error")
    v.add_argument("-c", "--config", required=True)
    v.add_argument("--table", action="append", help="only this table (repeatable); default: every table")
    v.add_argument("--settle-s", type=_seconds, default=0.0,
                   help="live table: re-check differing keys for up to this long while the stream catches up")
    v.add_argument("--examples", type=int, default=5, help="examples printed per kind of difference")
    v.add_argument("--eventually-consistent", action="store_true", help="scan without ConsistentRead (half the RCU)")
    v.add_argument("--json", action="store_true")
    v.add_argument("--skip-undecodable", action="store_true",
                   help="skip (and count) records that do not decode as the bridge's, instead of stopping on the first")
    v.set_defaults(func=_verify)

    t = sub.add_parser("tail", help="decode a topic through the registry and print JSON lines")
    t.add_argument("-c", "--config", required=True)
    which = t.add_mutually_exclusive_group()
    which.add_argument("--table", help="the table whose topic to read (default: the first table)")
    which.add_argument("--topic", help="any topic the bridge wrote")
    t.add_argument("-f", "--follow", action="store_true", help="keep waiting for new records")
    t.add_argument("--from-end", action="store_true", help="start at the end instead of the beginning")
    t.add_argument("-n", "--max-records", type=_count, help="stop after this many records")
    t.add_argument("--skip-undecodable", action="store_true",
                   help="skip (and count) records that do not decode as the bridge's, instead of stopping on the first")
    t.set_defaults(func=_tail)

    s = sub.add_parser("status", help="positions, lag and task states from the offsets and status topics")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_status)

    offsets_parser = sub.add_parser("offsets", help="show, reset, export or import stored offsets")
    osub = offsets_parser.add_subparsers(dest="offsets_command", required=True)
    show = osub.add_parser("show", help="print stored offsets")
    show.add_argument("-c", "--config", required=True)
    show.add_argument("--table")
    show.add_argument("--partition", help="a partition's id (its one value besides the table) or the partition as JSON")
    show.add_argument("--json", action="store_true", help="JSON lines, as export writes")
    show.set_defaults(func=_offsets_show)
    exp = osub.add_parser("export", help="write stored offsets as JSON lines (to a file or stdout)")
    exp.add_argument("-c", "--config", required=True)
    exp.add_argument("--table")
    exp.add_argument("-o", "--output", default="-")
    exp.set_defaults(func=_offsets_export)
    imp = osub.add_parser("import", help="write offsets from export's JSON lines (stop the bridge first)")
    imp.add_argument("-c", "--config", required=True)
    imp.add_argument("-i", "--input", default="-")
    imp.set_defaults(func=_offsets_import)
    reset = osub.add_parser("reset", help="delete stored offsets (stop the bridge first)")
    reset.add_argument("-c", "--config", required=True)
    what = reset.add_mutually_exclusive_group()
    what.add_argument("--all", action="store_true", help="every offset of this connector")
    what.add_argument("--table")
    what.add_argument("--partition", help="a partition's id (its one value besides the table) or the partition as JSON")
    what.add_argument("--key", help="one offsets-topic record's key as text, as a start-up error prints it")
    what.add_argument("--key-hex", help="the same in hexadecimal, for keys that are not text")
    reset.set_defaults(func=_offsets_reset)


