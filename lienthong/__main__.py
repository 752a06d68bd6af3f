"""``python -m lienthong run | serve PART | up | migrate [PART] | demo | contracts [--check]``."""

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
    migrate = sub.add_parser("migrate", help="run migrations of one or every part")
    migrate.add_argument("part", nargs="?")
    contracts = sub.add_parser("contracts", help="write contracts/ from the code")
    contracts.add_argument("--check", action="store_true", help="fail if contracts/ differs")
    demo = sub.add_parser("demo", help="walk the main flow through a running suite's gateway, as the roles would")
    demo.add_argument("--gateway", default=os.environ.get("LIENTHONG_PUBLIC_BASE_URL", "http://127.0.0.1:8000"))
    demo.add_argument("--password", default=os.environ.get("LIENTHONG_DEMO_PASSWORD", "demo"))
    demo.add_argument("--pin", default=os.environ.get("LIENTHONG_DEMO_PIN", "123456"), help="the demo signing PIN")
    demo.add_argument("--out", default=os.path.join(os.environ.get("LIENTHONG_VAR_DIR", "var"), "demo"))
    demo.add_argument("--write-samples", metavar="DIR", help="only write the PDFs the README's curl walk sends")
    args = parser.parse_args(argv)

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
