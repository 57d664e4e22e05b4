"""The text ``nitroproxy init`` writes: a commented starter configuration and its env file.

Pure string building, so a test can parse every combination. The configuration holds no
secret: the admin key, the data key and provider keys are ``${VARS}`` read from the env file
beside it (or the environment).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PROVIDERS = ("mock", "openai", "anthropic")


@dataclass(frozen=True, slots=True)
class Starter:
    host: str = "127.0.0.1"
    port: int = 8080
    mock_port: int = 8081
    providers: tuple[str, ...] = ("mock",)

    @property
    def first_model(self) -> str:
        return _MODELS[self.providers[0]][0][0]


# provider -> (public name, upstream model) pairs; prices come from the bundled table unless
# given (the mock's are made up, so that usage reports show non-zero costs).
_MODELS: dict[str, tuple[tuple[str, str], ...]] = {
    "mock": (("demo", "mock-gpt"), ("demo-claude", "mock-claude")),
    "openai": (("gpt-4o-mini", "gpt-4o-mini"), ("gpt-4o", "gpt-4o")),
    "anthropic": (("claude-sonnet", "claude-sonnet-4-5"), ("claude-haiku", "claude-haiku-4-5")),
}
SECRETS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
_COMMENT_AT = 38


def _c(text: str, comment: str) -> str:
    """A line with its comment aligned, as a person would write the file."""
    return f"{text.ljust(_COMMENT_AT)}# {comment}"


def _provider_block(name: str, s: Starter) -> list[str]:
    if name == "mock":
        return [
            _c("  mock:", "the bundled mock, started by `serve` itself"),
            "    kind: openai",
            f"    base_url: http://127.0.0.1:{s.mock_port}/v1",
            _c("    api_key: mock-upstream-key", "the mock accepts any key"),
            _c("  mock-anthropic:", "the same mock, spoken to in Anthropic's API"),
            "    kind: anthropic",
            f"    base_url: http://127.0.0.1:{s.mock_port}/v1",
            "    api_key: mock-upstream-key",
        ]
    url = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com/v1"}
    return [
        f"  {name}:",
        f"    kind: {name}",
        f"    base_url: {url[name]}",
        _c(f"    api_key: ${{{SECRETS[name]}}}", "set it in nitroproxy.env"),
    ]


def _model_lines(name: str) -> list[str]:
    lines = []
    for public, upstream in _MODELS[name]:
        provider = "mock-anthropic" if upstream == "mock-claude" else name
        price = "\n        price: {input: 2.5, output: 10}" if name == "mock" else ""
        lines.append(
            f"  {public}:\n    deployments:\n      - provider: {provider}\n"
            f"        model: {upstream}{price}"
        )
    return lines


def config_text(s: Starter) -> str:
    unknown = [p for p in s.providers if p not in PROVIDERS]
    if unknown or not s.providers:
        raise ValueError(f"unknown provider {unknown[0] if unknown else ''!r}")
    lines = [
        "# NitroProxy starter configuration, written by `nitroproxy init`.",
        "# Secrets are not here: they are ${VARIABLES} from nitroproxy.env beside this file",
        "# (mode 0600), which every nitroproxy command reads; the environment wins over it.",
        "# Check this file: nitroproxy check-config. Every section, with its defaults, is shown",
        "# in the example that ships with NitroProxy: nitroproxy init --example",
        "",
        "server:",
        _c(f"  host: {s.host}", "0.0.0.0 listens on every interface"),
        f"  port: {s.port}",
    ]
    if "mock" in s.providers:
        lines += [
            _c("  mock_provider:", "the bundled mock upstream, in this process"),
            f"    port: {s.mock_port}",
        ]
    lines += ["", "providers:"]
    for name in s.providers:
        lines += _provider_block(name, s)
    lines += ["", _c("models:", "the names clients ask for")]
    for name in s.providers:
        lines += _model_lines(name)
    lines += [
        "",
        "auth:",
        _c("  required: true", "clients need a key: nitroproxy keys create"),
        _c("  admin_key: ${NITROPROXY_ADMIN_KEY}", "guards /admin/...; from nitroproxy.env"),
        "",
        "# Usage records, keys and users go to nitroproxy.db in $NITROPROXY_DATA_DIR, else",
        "# $XDG_DATA_HOME/nitroproxy (~/.local/share/nitroproxy). To keep them elsewhere:",
        "# storage:",
        "#   path: /var/lib/nitroproxy/nitroproxy.db",
    ]
    return "\n".join(lines) + "\n"


def env_comment(providers: Sequence[str]) -> str:
    lines = [
        "Secrets for NitroProxy, written by `nitroproxy init`. Keep this file mode 0600.",
        "NITROPROXY_ADMIN_KEY opens /admin/...; NITROPROXY_DATA_KEY encrypts names and emails",
        "at rest: without it they cannot be read again, so keep a copy somewhere safe.",
    ]
    needed = [SECRETS[p] for p in providers if p in SECRETS]
    if needed:
        lines.append(f"Add your provider keys below: {', '.join(needed)}=...")
    return "\n".join(lines)
