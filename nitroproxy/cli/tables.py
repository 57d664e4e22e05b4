"""How the CLI shows records to a person: aligned tables and ``key  value`` lines.

Times are stored as Unix seconds; people read them as ISO 8601 UTC. Dollar amounts keep
enough digits to be non-zero (``core.money``). ``--json`` output is left as stored, for
programs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from nitroproxy.core.money import usd

TIME_FIELDS = frozenset({"created", "updated", "expires_at", "revoked_at", "erased_at", "ts"})


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cell(name: str, value: Any) -> str:
    if value is None:
        return "all" if name == "models" else "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name in TIME_FIELDS and isinstance(value, int | float):
        return iso(value)
    if name.endswith("_usd") and isinstance(value, int | float):
        return f"${usd(value)}"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    cells = [[cell(c, r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines) if cells else lines[0] + "\n(none)"


def fields(item: Mapping[str, Any]) -> str:
    width = max(len(k) for k in item)
    return "\n".join(f"{k.ljust(width)}  {cell(k, v)}" for k, v in item.items())
