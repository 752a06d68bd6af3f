"""``python -m lienthong run | serve PART | up | migrate [PART] | demo | backup | verify | restore |
dlq list|replay PART | integrator-definitions NAME [--vhost V] | contracts [--check]``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lienthong")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="embedded mode: the whole suite in one process, demo data")
    serve = sub.add_parser("serve", help="one part in this process (distributed mode)")
    serve.add_argument("part")
    sub.add_parser("up", help="distributed mode: every part in its own process")
    for name, text in (
        ("backup", "back up every part's database and files (backup --to DIR [--keep N])"),
        ("verify", "check a backup folder against its SHA-256 sums (verify FOLDER)"),
        ("restore", "restore a backup into empty databases (restore FOLDER [--parts a,b])"),
    ):
        sub.add_parser(name, help=text, add_help=False)
    migrate = sub.add_parser("migrate", help="run migrations of one or every part")
    migrate.add_argument("part", nargs="?")
    dlq = sub.add_parser("dlq", help="a part's dead letters on RabbitMQ: list them, or replay them")
    dlq.add_argument("action", choices=("list", "replay"))
    dlq.add_argument("part")
    dlq.add_argument("--queue", help="one of the part's consumer queues (default: all of them)")
    dlq.add_argument("--id", action="append", dest="ids", help="replay only this event id (repeatable)")
    dlq.add_argument("--limit", type=int, default=50, help="letters listed per queue")
    definitions = sub.add_parser(
        "integrator-definitions", help="RabbitMQ definitions of one integrator's AMQP account, for a virtual host"
    )
    definitions.add_argument("name", help="the integrator's name: its user is integrator-NAME")
    definitions.add_argument("--vhost", default="/", help="the virtual host lienthong uses (default /)")
    contracts = sub.add_parser("contracts", help="write contracts/ from the code")
    contracts.add_argument("--check", action="store_true", help="fail if contracts/ differs")
    demo = sub.add_parser("demo", help="walk the main flow through a running suite's gateway, as the roles would")
    demo.add_argument("--gateway", default=os.environ.get("LIENTHONG_PUBLIC_BASE_URL", "http://127.0.0.1:8000"))
    demo.add_argument("--password", default=os.environ.get("LIENTHONG_DEMO_PASSWORD", "demo"))
    demo.add_argument("--pin", default=os.environ.get("LIENTHONG_DEMO_PIN", "123456"), help="the demo signing PIN")
    demo.add_argument("--out", default=os.path.join(os.environ.get("LIENTHONG_VAR_DIR", "var"), "demo"))
    demo.add_argument("--write-samples", metavar="DIR", help="only write the PDFs the README's curl walk sends")
    args, rest = parser.parse_known_args(argv)
    if args.command in ("backup", "verify", "restore"):
        from lienthong import backup

        return backup.main([args.command, *rest])
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")

    if args.command == "run":
        from lienthong import embedded

        asyncio.run(embedded.run())
        return 0
    if args.command == "serve":
        from lienthong import distributed

        return distributed.serve(args.part)
    if args.command == "up":
        from lienthong import distributed

        return distributed.up()
    if args.command == "migrate":
        from lienthong import distributed

        return distributed.migrate(args.part)
    if args.command == "dlq":
        from lienthong import dlq as dead_letters

        return dead_letters.main(args.action, args.part, queue=args.queue, ids=args.ids, limit=args.limit)
    if args.command == "integrator-definitions":
        import json
        import re

        from lienthong import contracts

        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,40}", args.name):
            print("a name of lowercase letters, digits and dashes", file=sys.stderr)
            return 2
        print(json.dumps(contracts.integrator_definitions(args.name, args.vhost), indent=2, ensure_ascii=False))
        return 0
    if args.command == "demo":
        from lienthong import demo as walk

        return walk.main(args)
    if args.command == "contracts":
        from lienthong import contracts

        return contracts.main(check=args.check)
    return 2


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUTF8", "1")
    sys.exit(main())
