"""Settings: frozen dataclasses for the YAML tree, parsed and validated once at start-up.

Every error names its YAML path (``models.gpt-4o.deployments[1].provider: ...``) so a bad
file is reported as one line, never as a ``KeyError`` inside a request later.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from nitroproxy import data
from nitroproxy.config import process
from nitroproxy.config.errors import ConfigError
from nitroproxy.config.providers import read_providers, read_upstream
from nitroproxy.config.reader import Reader
from nitroproxy.config.scale import parse_state as _state
from nitroproxy.config.schema import (
    AuthSettings,
    CacheSettings,
    Deployment,
    KeySettings,
    LimitSettings,
    LoggingSettings,
    MetricsSettings,
    MockProviderSettings,
    ModelSettings,
    PrivacySettings,
    ProviderSettings,
    RetentionSettings,
    RoutingSettings,
    ServerSettings,
    Settings,
    StatsSettings,
    StorageSettings,
    Timeouts,
    TLSSettings,
    TokenSettings,
    TracingSettings,
    UISettings,
    UpstreamSettings,
)
from nitroproxy.core import pricing
from nitroproxy.core.end_users import EndUserMode
from nitroproxy.core.limits import INTEGER_LIMITS, LIMIT_FIELDS
from nitroproxy.core.retention import ANALYTICS_MAX_S
from nitroproxy.core.selection import Strategy
from nitroproxy.core.types import Price

__all__ = [
    "AuthSettings",
    "CacheSettings",
    "ConfigError",
    "Deployment",
    "KeySettings",
    "LimitSettings",
    "LoggingSettings",
    "MetricsSettings",
    "MockProviderSettings",
    "ModelSettings",
    "PrivacySettings",
    "ProviderSettings",
    "RetentionSettings",
    "RoutingSettings",
    "ServerSettings",
    "Settings",
    "StatsSettings",
    "StorageSettings",
    "TLSSettings",
    "Timeouts",
    "TokenSettings",
    "UpstreamSettings",
    "interpolate",
    "load",
    "parse",
]


_ADMIN_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}``; a missing variable with no default is an
    error, because a silently empty API key fails much later and far less clearly."""

    def expand(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise ConfigError(f"environment variable ${{{name}}} is not set")
            return default
        return value

    return _ENV_RE.sub(expand, text)


class _UniqueKeys(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: YAML keeps the last one
    silently, so a second ``stats:`` section would throw the first away unseen."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} appears twice in the same mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    lines = [
        line if line.lstrip().startswith("#") else interpolate(line, env or os.environ)
        for line in text.splitlines()
    ]
    try:
        data = yaml.load("\n".join(lines), _UniqueKeys)  # a SafeLoader: no object tags
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"{path}: invalid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    return parse(data if data is not None else {})


def parse(data: Any) -> Settings:
    root = Reader(data, "")
    root.require_mapping()
    root.only(
        "server upstream providers models routing storage retention privacy logging "
        "metrics tokens auth tiers keys cache stats end_users tracing ui state"
    )
    providers = read_providers(root.child("providers"))
    tiers = {name: _limits(r) for name, r in root.child("tiers").items()}
    return Settings(
        server=process.server(root.child("server")),
        upstream=read_upstream(root.child("upstream")),
        providers=providers,
        models=_models(root.child("models"), providers),
        routing=_routing(root.child("routing")),
        storage=process.storage(root.child("storage")),
        retention=_retention(root.child("retention")),
        privacy=_privacy(root.child("privacy")),
        logging=_logging(root.child("logging")),
        metrics=_metrics(root.child("metrics")),
        tokens=_tokens(root.child("tokens")),
        auth=_auth(root.child("auth")),
        tiers=tiers,
        keys=_keys(root.child("keys"), tiers),
        cache=_cache(root.child("cache")),
        stats=_stats(root.child("stats")),
        end_users=_limits(root.child("end_users")),
        tracing=_tracing(root.child("tracing")),
        ui=_ui(root.child("ui")),
        state=_state(root.child("state")),
    )


def _cache(r: Reader) -> CacheSettings:
    r.only("enabled ttl max_entries max_bytes scope")
    d = CacheSettings()
    return CacheSettings(
        enabled=r.flag("enabled", d.enabled),
        ttl=r.duration("ttl", d.ttl),
        max_entries=r.integer("max_entries", d.max_entries, minimum=1),
        max_bytes=r.integer("max_bytes", d.max_bytes, minimum=1024),
        scope=r.choice("scope", ["key", "user"], d.scope),
    )


def _stats(r: Reader) -> StatsSettings:
    r.only("enabled min_bucket min_users")
    return StatsSettings(
        enabled=r.flag("enabled", True),
        min_bucket=r.integer("min_bucket", 10, minimum=1),
        # Fewer than ten people behind a number would let one of them be singled out.
        min_users=r.integer("min_users", 10, minimum=10),
    )


def _models(r: Reader, providers: Mapping[str, ProviderSettings]) -> dict[str, ModelSettings]:
    out: dict[str, ModelSettings] = {}
    # A deployment name is one upstream (provider + model): public models may share it, and
    # then share its health and measurements; it may not mean two different upstreams.
    everywhere: dict[str, tuple[str, str]] = {}
    for name, m in r.items():
        seen: set[str] = set()
        if name.endswith((":floor", ":nitro")):
            m.fail(
                None,
                "a model name may not end with :floor or :nitro (routing suffixes)",
            )
        m.require_mapping()
        m.only("strategy deployments default_max_tokens")
        deployments = []
        dl = m.child("deployments")
        for d in dl.seq(required=True):
            dep = _deployment(d, name, providers)
            if dep.name in seen:
                d.fail("name", f"duplicate deployment name {dep.name!r} in this model")
            target = (dep.provider, dep.upstream_model)
            if everywhere.setdefault(dep.name, target) != target:
                d.fail(
                    "name",
                    f"deployment name {dep.name!r} already names another upstream",
                )
            seen.add(dep.name)
            deployments.append(dep)
        if not deployments:
            dl.fail(None, "at least one deployment is required")
        out[name] = ModelSettings(
            name=name,
            strategy=Strategy(m.choice("strategy", [s.value for s in Strategy], "fallback")),
            deployments=tuple(deployments),
            default_max_tokens=m.integer("default_max_tokens", 4096, minimum=1),
        )
    return out


def _deployment(d: Reader, model: str, providers: Mapping[str, ProviderSettings]) -> Deployment:
    d.require_mapping()
    d.only("name provider model price weight seed")
    provider = d.text("provider", None, required=True)
    if provider not in providers:
        known = ", ".join(sorted(providers)) or "none configured"
        d.fail("provider", f"unknown provider {provider!r} (known: {known})")
    upstream = d.text("model", model)
    price = d.child("price")
    default_price = pricing.price_for(upstream, _default_prices()) or Price()
    price.only("input output cached_input cache_write cache_write_1h")
    seed = d.child("seed")
    seed.only("ttft tokens_per_s")
    return Deployment(
        name=d.text("name", f"{provider}/{upstream}"),
        provider=provider,
        upstream_model=upstream,
        price=Price(
            input=price.number("input", 0.0, minimum=0.0),
            output=price.number("output", 0.0, minimum=0.0),
            cached_input=price.optional_float("cached_input"),
            cache_write=price.optional_float("cache_write"),
            cache_write_1h=price.optional_float("cache_write_1h"),
        )
        if price.present
        else default_price,
        weight=d.number("weight", 1.0, minimum=0.0),
        seed_ttft=seed.optional_float("ttft"),
        seed_tokens_per_s=seed.optional_float("tokens_per_s"),
    )


@functools.cache
def _default_prices() -> dict[str, Price]:
    return data.load_default_prices()


def _routing(r: Reader) -> RoutingSettings:
    r.only(
        "max_attempts deadline failure_threshold base_cooldown max_cooldown ewma_alpha "
        "min_samples seed"
    )
    d = RoutingSettings()
    seed = r.integer("seed", -1, minimum=-1)
    return RoutingSettings(
        max_attempts=r.integer("max_attempts", d.max_attempts, minimum=1),
        deadline=r.duration("deadline", d.deadline),
        failure_threshold=r.integer("failure_threshold", d.failure_threshold, minimum=1),
        base_cooldown=r.duration("base_cooldown", d.base_cooldown),
        max_cooldown=r.duration("max_cooldown", d.max_cooldown),
        ewma_alpha=r.number("ewma_alpha", d.ewma_alpha, minimum=0.001, maximum=1.0),
        min_samples=r.integer("min_samples", d.min_samples, minimum=0),
        seed=None if seed < 0 else seed,
    )


def _retention(r: Reader) -> RetentionSettings:
    r.only("requests analytics billing audit closed_accounts interval batch_size")
    d = RetentionSettings()
    out = RetentionSettings(
        requests=r.duration("requests", d.requests),
        billing=r.duration("billing", d.billing),
        interval=r.duration("interval", d.interval),
        batch_size=r.integer("batch_size", d.batch_size, minimum=1),
        analytics=r.duration("analytics", d.analytics),
        audit=r.duration("audit", d.audit),
        closed_accounts=r.duration("closed_accounts", d.closed_accounts),
    )
    # The same rules as core.retention.RetentionPolicy, reported with their YAML path.
    for name in ("requests", "analytics", "billing", "audit", "closed_accounts"):
        if getattr(out, name) <= 0:
            r.fail(name, "must be longer than 0")
    if out.analytics > ANALYTICS_MAX_S:
        r.fail("analytics", "may not exceed 730d: usage analytics are kept at most two years")
    for longer in ("analytics", "billing"):
        if out.requests > getattr(out, longer):
            r.fail("requests", f"may not exceed retention.{longer} (raw records hold both)")
    return out


def _privacy(r: Reader) -> PrivacySettings:
    r.only("client_ip store_user_agent end_user")
    return PrivacySettings(
        client_ip=r.choice("client_ip", ["none", "truncated", "full"], "truncated"),
        store_user_agent=r.flag("store_user_agent", True),
        end_user=EndUserMode(
            r.choice("end_user", [m.value for m in EndUserMode], EndUserMode.PSEUDONYMOUS.value)
        ),
    )


def _logging(r: Reader) -> LoggingSettings:
    r.only("level format access_log")
    levels = ["debug", "info", "warning", "error", "critical"]
    return LoggingSettings(
        level=r.choice("level", levels, os.environ.get("NITROPROXY_LOG_LEVEL", "info").lower()),
        format=r.choice("format", ["auto", "json", "console"], "auto"),
        access_log=r.flag("access_log", True),
    )


def _metrics(r: Reader) -> MetricsSettings:
    r.only("enabled key_labels port host token")
    port = r.integer("port", 0, minimum=0, maximum=65535)
    return MetricsSettings(
        enabled=r.flag("enabled", True),
        key_labels=r.flag("key_labels", False),
        port=port or None,
        host=r.text("host", None) or None,
        token=r.text("token", None) or None,
    )


def _tracing(r: Reader) -> TracingSettings:
    r.only("enabled endpoint headers service_name sample_ratio timeout")
    d = TracingSettings()
    endpoint = r.text("endpoint", None) or None
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        r.fail("endpoint", "expected an http:// or https:// URL (OTLP over HTTP)")
    return TracingSettings(
        enabled=r.flag("enabled", d.enabled),
        endpoint=endpoint,
        headers={k: str(v.value) for k, v in r.child("headers").items()},
        service_name=r.text("service_name", d.service_name),
        sample_ratio=r.number("sample_ratio", d.sample_ratio, minimum=0.0, maximum=1.0),
        timeout=r.duration("timeout", d.timeout),
    )


def _ui(r: Reader) -> UISettings:
    r.only("enabled session_ttl session_idle")
    d = UISettings()
    return UISettings(
        enabled=r.flag("enabled", d.enabled),
        session_ttl=r.duration("session_ttl", d.session_ttl),
        session_idle=r.duration("session_idle", d.session_idle),
    )


def _tokens(r: Reader) -> TokenSettings:
    r.only("count offload_chars")
    return TokenSettings(
        count=r.flag("count", True),
        offload_chars=r.integer("offload_chars", 20_000, minimum=0),
    )


def _auth(r: Reader) -> AuthSettings:
    r.only("required admin_key admin_keys")
    admin_key = r.text("admin_key", None) or None
    named: dict[str, str] = {}
    for name, k in r.child("admin_keys").items():
        if not _ADMIN_NAME.match(name):
            k.fail(None, "an admin name is 1-64 letters, digits, '.', '_', '@' or '-'")
        if name == "admin" and admin_key is not None:
            k.fail(None, "the name 'admin' belongs to auth.admin_key")
        secret = k.value
        if not isinstance(secret, str) or len(secret) < 16:
            k.fail(None, "expected the admin's key, at least 16 characters")
        if secret in named.values() or secret == admin_key:
            k.fail(None, "two admins may not share a key (each key names one actor)")
        named[name] = secret
    return AuthSettings(
        required=r.flag("required", True),
        admin_key=admin_key,
        admin_keys=named,
    )


def _limits(r: Reader) -> LimitSettings:
    r.require_mapping()
    r.only(" ".join(LIMIT_FIELDS))
    values: dict[str, Any] = {
        name: r.optional_int(name) if name in INTEGER_LIMITS else r.optional_float(name)
        for name in LIMIT_FIELDS
    }
    return LimitSettings(**values)


def _keys(r: Reader, tiers: Mapping[str, LimitSettings]) -> tuple[KeySettings, ...]:
    out = []
    names: set[str] = set()
    for k in r.seq():
        k.require_mapping()
        k.only(" ".join(("name", "key", "user", "tier", "models", "cache", *LIMIT_FIELDS)))
        name = k.text("name", None, required=True)
        if name in names:
            k.fail("name", f"duplicate key name {name!r}")
        names.add(name)
        secret = k.text("key", None, required=True)
        if len(secret) < 8:
            k.fail("key", "must be at least 8 characters")
        tier = k.text("tier", None) or None
        if tier is not None and tier not in tiers:
            k.fail(
                "tier",
                f"unknown tier {tier!r} (known: {', '.join(sorted(tiers)) or 'none'})",
            )
        out.append(
            KeySettings(
                name=name,
                key=secret,
                user=k.text("user", None) or None,
                tier=tier,
                models=tuple(k.texts("models")),
                cache=k.flag("cache", False),
                limits=_limits(k.subset(list(LIMIT_FIELDS))),
            )
        )
    return tuple(out)
