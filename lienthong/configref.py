"""The configuration reference (``deploy/config-reference.md``) written from the settings classes.

``python -m lienthong.configref`` rewrites it; ``--check`` fails when it is out of date, so the
reference cannot drift from what the parts actually read.
"""

from __future__ import annotations

import argparse
import ast
import enum
import importlib
import inspect
import json
import sys
import textwrap
import typing
from dataclasses import dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from lienthong.parts import FACTORIES
from shared.settings import DEFAULT_PORTS, PARTS, Settings

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "deploy" / "config-reference.md"
PREFIX = "LIENTHONG_"

# Fields set by ``load_settings`` itself: an environment variable cannot change them
# (``service``) or only in the per-part form (``port``: the part's default is passed explicitly,
# which beats ``LIENTHONG_PORT``).
NOT_FROM_ENVIRONMENT = {"service"}
PER_PART_ONLY = {"port"}

# Used only while a field of ``shared.settings.Settings`` has no ``description=`` of its own.
_BASE_DESCRIPTIONS = {
    "service": "the part's name (logs, events' source, `{service}` in database_url)",
    "environment": "production refuses demo mode and development secrets",
    "demo_password": "password of the demo users (embedded mode)",
    "host": "address to listen on; 0.0.0.0 in a container",
    "port": "port to listen on",
    "public_base_url": "the gateway's address as citizens and integrators reach it (links, receipts)",
    "var_dir": "folder for files: blobs, keys, SQLite databases in embedded mode",
    "database_pool_size": "database connections of the part, shared out among its worker processes (kept open; "
    "the most it uses)",
    "consumer_prefetch": "unacknowledged messages a consumer holds",
    "consumer_batch": "events a consumer handles in one transaction",
    "relay_batch": "outbox rows the relay publishes per round",
    "relay_poll_seconds": "pause of the relay when the outbox is empty",
    "outbox_retention_hours": "how long sent outbox rows are kept",
    "jwks_url": "where the parts fetch the keys that verify access tokens",
    "token_issuer": "expected `iss` of access tokens",
    "token_audience": "expected `aud` of access tokens",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "log_json": "one JSON object per log line (false: human-readable lines)",
}


@dataclass(frozen=True)
class SettingDoc:
    """One setting as an operator sees it."""

    name: str
    env: tuple[str, ...]
    type: str
    default: str
    description: str


def settings_classes() -> dict[str, type[Settings]]:
    """Each part's settings class, read from its ``config`` module now (never a copy)."""
    classes: dict[str, type[Settings]] = {}
    for part in PARTS:
        module = importlib.import_module(FACTORIES[part].rsplit(".", 1)[0] + ".config")
        cls = typing.get_type_hints(module.get_settings).get("return")
        if cls is None:  # unannotated: the one Settings subclass the module defines
            own = [c for c in vars(module).values()
                   if isinstance(c, type) and issubclass(c, Settings) and c.__module__ == module.__name__]
            cls = own[0] if len(own) == 1 else None
        if not (isinstance(cls, type) and issubclass(cls, Settings)):
            raise TypeError(f"{module.__name__}.get_settings does not return a Settings subclass")
        classes[part] = cls
    return classes


def env_names(part: str, name: str) -> tuple[str, ...]:
    """The variables that set field ``name`` of ``part``, strongest first."""
    if name in NOT_FROM_ENVIRONMENT:
        return ()
    specific = f"{PREFIX}{part.upper()}_{name.upper()}"
    if name in PER_PART_ONLY:
        return (specific,)
    return (specific, f"{PREFIX}{name.upper()}")


def accepted_variables(classes: dict[str, type[Settings]] | None = None) -> dict[str, set[str]]:
    """Every variable some part reads → the parts that read it."""
    readers: dict[str, set[str]] = {}
    for part, cls in (classes or settings_classes()).items():
        for name in cls.model_fields:
            for var in env_names(part, name):
                readers.setdefault(var, set()).add(part)
    return readers


def type_label(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, UnionType):
        present = [a for a in args if a is not NoneType]
        label = " or ".join(type_label(a) for a in present)
        return f"{label}, optional" if len(present) < len(args) else label
    if origin in (list, tuple, set, frozenset):
        inner = type_label(args[0]) if args else "any"
        if origin is tuple and args and args[-1] is not Ellipsis:
            inner = ", ".join(type_label(a) for a in args)
            return f"JSON array [{inner}]"
        return f"JSON array of {inner}"
    if origin is dict:
        return f"JSON object {type_label(args[0])} → {type_label(args[1])}" if args else "JSON object"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return f"JSON object ({', '.join(annotation.model_fields)})"
        if issubclass(annotation, enum.Enum):
            return "one of " + ", ".join(f"`{m.value}`" for m in annotation)
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "Path": "path",
                "Decimal": "decimal", "date": "date (YYYY-MM-DD)"}.get(annotation.__name__, annotation.__name__)
    return str(annotation).replace("typing.", "")


def default_label(part: str, name: str, field: FieldInfo) -> str:
    if name == "port" and part in DEFAULT_PORTS:
        return str(DEFAULT_PORTS[part])
    if name == "service":
        return part
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if value is None:
        return "unset"
    dumped = TypeAdapter(field.annotation).dump_python(value, mode="json")
    if isinstance(dumped, str):
        return dumped
    return json.dumps(dumped, ensure_ascii=False, separators=(", ", ": "))


def _comments_above_fields(cls: type) -> dict[str, str]:
    """``# …`` lines written just above a field in the class body: the why an author left there."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, BaseModel)) or klass is BaseModel:
            continue
        try:
            lines, _ = inspect.getsourcelines(klass)
        except (OSError, TypeError):
            continue
        source = textwrap.dedent("".join(lines))
        body = source.splitlines()
        tree = ast.parse(source)
        for node in tree.body[0].body:  # type: ignore[attr-defined]
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                comment: list[str] = []
                row = node.lineno - 2
                while row >= 0 and body[row].strip().startswith("#") and not body[row].strip().startswith("# ---"):
                    comment.insert(0, body[row].strip().lstrip("#").strip())
                    row -= 1
                if comment:
                    found[node.target.id] = " ".join(comment)
    return found


def describe(part: str, cls: type[Settings], *, own_only: bool) -> list[SettingDoc]:
    comments = _comments_above_fields(cls)
    docs: list[SettingDoc] = []
    for name, field in cls.model_fields.items():
        if own_only and name in Settings.model_fields:
            continue
        description = field.description or comments.get(name) or _BASE_DESCRIPTIONS.get(name, "")
        docs.append(SettingDoc(name=name, env=env_names(part, name), type=type_label(field.annotation),
                               default=default_label(part, name, field), description=description))
    return docs


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    # a backtick inside a value would end the code span early
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _table(rows: list[SettingDoc], *, part: str | None) -> list[str]:
    out = ["| setting | environment | type | default | description |", "| --- | --- | --- | --- | --- |"]
    for row in rows:
        if part is None:
            env = ("`LIENTHONG_<PART>_PORT` only" if row.name in PER_PART_ONLY
                   else "not settable (the part's name)" if row.name in NOT_FROM_ENVIRONMENT
                   else f"`{PREFIX}{row.name.upper()}`, `LIENTHONG_<PART>_{row.name.upper()}`")
            default = ", ".join(f"{p} {n}" for p, n in DEFAULT_PORTS.items()) if row.name == "port" else row.default
            if row.name == "service":
                default = "—"
        else:
            env = ", ".join(f"`{v}`" for v in row.env)
            default = row.default
        shown = default if default == "—" else _code(default)
        out.append(f"| `{row.name}` | {env} | {_cell(row.type)} | {_cell(shown)} | {_cell(row.description)} |")
    return out


def render(classes: dict[str, type[Settings]] | None = None) -> str:
    classes = classes or settings_classes()
    base = describe("<part>", Settings, own_only=False)
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m lienthong.configref` from the settings classes; do not edit. -->",
        "",
        "Every part reads its settings from the environment when it starts:",
        "",
        "- `LIENTHONG_<PART>_<SETTING>` (for one part, e.g. `LIENTHONG_INTAKE_DATABASE_URL`) beats",
        "  `LIENTHONG_<SETTING>` (for every part that has the setting), which beats the default.",
        "  Parts: " + ", ".join(f"`{p}`" for p in PARTS) + ".",
        "- Lists, mappings and rules are JSON: `LIENTHONG_GATEWAY_CORS_ORIGINS='[\"https://example.gov.vn\"]'`.",
        "- `database_url` may contain `{service}` (the part's name) and `{var_dir}`, so one variable serves",
        "  every part: `postgresql+asyncpg://lienthong:PASSWORD@postgres/lienthong_{service}`.",
        "- `LIENTHONG_ENVIRONMENT=production` refuses to start with demo mode or a development secret",
        "  still at its default; each part adds its own checks (see its settings below).",
        "- `port` is per part only: each part has its own default port, and `LIENTHONG_PORT` is ignored.",
        "",
        "## Settings of every part",
        "",
        *_table(base, part=None),
        "",
    ]
    for part, cls in classes.items():
        own = describe(part, cls, own_only=True)
        lines += [f"## {part}", ""]
        doc = inspect.getdoc(sys.modules[cls.__module__]) or ""
        lines += [doc.split("\n\n")[0].replace("\n", " "), ""] if doc else []
        if own:
            lines += _table(own, part=part)
        else:
            lines.append("No settings of its own beyond those of every part.")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lienthong.configref", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the file differs from the settings classes")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run python -m lienthong.configref", file=sys.stderr)
            return 1
        print(f"{args.output}: up to date")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
