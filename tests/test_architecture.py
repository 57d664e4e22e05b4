"""The import rules that keep the shape: ``core`` ← ``upstream``, ``store``, ``cache``,
``telemetry`` ← ``proxy`` ← ``web`` ← ``cli``. Read from the source with ``ast``, so a
violation fails here with the file and line, before it becomes a habit."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nitroproxy"

# What "I/O" means for core: the network, the disk, databases, clocks and chance. tiktoken,
# orjson and hashlib compute; they may stay.
CORE_FORBIDDEN = (
    "aiohttp",
    "aiosqlite",
    "asyncio",
    "asyncpg",
    "fcntl",
    "glob",
    "http",
    "importlib.resources",
    "io",
    "logging",
    "multiprocessing",
    "os",
    "pathlib",
    "random",
    "redis",
    "secrets",
    "select",
    "selectors",
    "shutil",
    "signal",
    "socket",
    "sqlite3",
    "ssl",
    "structlog",
    "subprocess",
    "tempfile",
    "threading",
    "time",
    "urllib",
    "uuid",
)

# Which of our packages each package must never import (the arrows point one way).
LAYERS = {
    "core": ("cache", "cli", "config", "data", "proxy", "reports", "security", "store",
             "telemetry", "upstream", "web", "mock"),
    "upstream": ("cli", "proxy", "web", "store", "cache", "reports"),
    "store": ("cli", "proxy", "web", "upstream"),
    "cache": ("cli", "proxy", "web", "upstream"),
    "telemetry": ("cli", "proxy", "web", "upstream", "store", "cache"),
    "security": ("cli", "proxy", "web", "upstream", "store", "cache"),
    "config": ("cli", "proxy", "web", "upstream", "store", "cache", "reports", "telemetry"),
    "proxy": ("cli", "web", "state"),
    "state": ("cli", "web"),
    "web": ("cli", "upstream"),
}  # fmt: skip


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        yield ".".join(("nitroproxy", *rel.parts)).removesuffix(".__init__"), path


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module a file imports, ``from a import b`` counting as ``a`` and ``a.b``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "nitroproxy" else None


MODULES = list(_modules())


def test_the_walk_sees_the_package() -> None:
    names = {name for name, _ in MODULES}
    assert {"nitroproxy.core.pipeline", "nitroproxy.proxy.gateway", "nitroproxy.web.relay"} <= names


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_import_rules(module: str, path: Path) -> None:
    package = _package_of(module)
    problems = []
    for line, imported in _imports(path):
        where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {imported}"
        if package == "core" and any(_within(imported, bad) for bad in CORE_FORBIDDEN):
            problems.append(f"{where}: core does no I/O")
        if _within(imported, "aiohttp.web") and package not in ("web", "mock"):
            problems.append(f"{where}: only web/ and mock/ serve HTTP")
        target = _package_of(imported)
        if target is not None and target in LAYERS.get(package or "", ()):
            problems.append(f"{where}: {package} must not depend on {target}")
    assert not problems, "\n".join(problems)


def test_every_root_module_is_a_package() -> None:
    loose = sorted(
        p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")
    )
    assert not loose, f"modules loose at the package root: {loose}"
