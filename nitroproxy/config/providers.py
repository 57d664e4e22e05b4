"""The ``upstream`` and ``providers`` sections: how the proxy reaches each provider, what it
sends it, and which of a client's headers it may pass on."""

from __future__ import annotations

import urllib.parse

from nitroproxy.config.reader import Reader
from nitroproxy.config.schema import ProviderSettings, Timeouts, UpstreamSettings
from nitroproxy.core.types import ApiFormat


def read_upstream(r: Reader) -> UpstreamSettings:
    r.only("max_connections max_connections_per_host keepalive_timeout client")
    d = UpstreamSettings()
    return UpstreamSettings(
        max_connections=r.integer("max_connections", d.max_connections, minimum=1),
        max_connections_per_host=r.integer("max_connections_per_host", 0, minimum=0),
        keepalive_timeout=r.duration("keepalive_timeout", d.keepalive_timeout),
        client=r.choice("client", ["lean", "aiohttp"], d.client),
    )


def _timeouts(r: Reader) -> Timeouts:
    r.only("connect first_byte idle total")
    d = Timeouts()
    return Timeouts(
        connect=r.duration("connect", d.connect),
        first_byte=r.duration("first_byte", d.first_byte),
        idle=r.duration("idle", d.idle),
        total=r.duration("total", d.total),
    )


def read_providers(r: Reader) -> dict[str, ProviderSettings]:
    out: dict[str, ProviderSettings] = {}
    for name, p in r.items():
        p.require_mapping()
        p.only(
            "kind base_url api_key headers timeouts stream_usage anthropic_version "
            "auth_header ca_bundle insecure_skip_verify responses forward_headers"
        )
        kind = p.choice("kind", [f.value for f in ApiFormat], required=True)
        url = p.text("base_url", None, required=True).rstrip("/")
        if not url.startswith(("http://", "https://")):
            p.fail("base_url", f"must start with http:// or https://, got {url!r}")
        # OpenAI itself has the Responses API; an OpenAI-compatible server is asked to say so.
        responses = p.flag("responses", kind == "openai" and _is_openai(url))
        if responses and kind != "openai":
            p.fail("responses", "only an openai-kind provider can serve the Responses API")
        out[name] = ProviderSettings(
            name=name,
            kind=ApiFormat(kind),
            base_url=url,
            api_key=p.text("api_key", None) or None,
            headers={k: str(v.value) for k, v in p.child("headers").items()},
            timeouts=_timeouts(p.child("timeouts")),
            stream_usage=p.flag("stream_usage", True),
            anthropic_version=p.text("anthropic_version", "2023-06-01"),
            auth_header=p.text("auth_header", "authorization").lower(),
            ca_bundle=p.text("ca_bundle", None) or None,
            insecure_skip_verify=p.flag("insecure_skip_verify", False),
            responses=responses,
            forward_headers=_forward_headers(p, kind),
        )
    return out


def _is_openai(url: str) -> bool:
    return urllib.parse.urlsplit(url).hostname == "api.openai.com"


# What a client may send on to an upstream of its own format: the API version it speaks and
# the betas it uses (Claude Code needs several). Nothing else: never credentials, never ids.
_FORWARDABLE = {"anthropic": ("anthropic-beta", "anthropic-version"), "openai": ()}


def _forward_headers(p: Reader, kind: str) -> tuple[str, ...]:
    if p.child("forward_headers").present:
        names = tuple(name.lower() for name in p.texts("forward_headers"))
    else:
        names = _FORWARDABLE[kind]
    unknown = sorted(set(names) - set(_FORWARDABLE[kind]))
    if unknown:
        allowed = ", ".join(_FORWARDABLE[kind]) or "none"
        p.fail("forward_headers", f"cannot forward {', '.join(unknown)} (allowed: {allowed})")
    return names
