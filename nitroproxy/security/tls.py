"""TLS contexts: the listener's, and one per upstream provider.

Upstream certificates are always verified. A provider's ``ca_bundle`` *replaces* the system
trust store for that provider only (the curl ``--cacert`` / requests ``verify=path``
meaning): a private upstream is then trusted through its own CA and nothing else, so a
public CA cannot vouch for it. To trust both, concatenate the public roots into the bundle.
``insecure_skip_verify`` turns verification off for that one provider, never silently: it is
logged as a warning at start and listed by ``insecure_warnings`` (shown on /admin/status).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterable, Iterator, Mapping

from nitroproxy.config import ConfigError, ProviderSettings, Settings, TLSSettings
from nitroproxy.telemetry import logs

__all__ = [
    "client_contexts",
    "insecure_warnings",
    "server_context",
    "server_context_for",
    "upstream_trust",
]

_MINIMUM = ssl.TLSVersion.TLSv1_2


def server_context(tls: TLSSettings) -> ssl.SSLContext:
    """The listener's context; with ``client_ca`` every client must present a certificate
    signed by it, or the handshake fails. Unreadable files raise ``ConfigError``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = _MINIMUM
    with _naming("server.tls.cert / server.tls.key"):
        ctx.load_cert_chain(tls.cert, tls.key)
    if tls.client_ca is not None:
        with _naming("server.tls.client_ca"):
            ctx.load_verify_locations(cafile=tls.client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def server_context_for(settings: Settings) -> ssl.SSLContext | None:
    """The listener's context, or None when ``server.tls`` is absent (plain HTTP)."""
    tls = settings.server.tls
    return None if tls is None else server_context(tls)


def upstream_trust(provider: ProviderSettings) -> str:
    """How this provider's certificate is checked, in words (for reports and status)."""
    if not provider.base_url.startswith("https://"):
        return "none: plain HTTP, not encrypted"
    if provider.insecure_skip_verify:
        return "DISABLED (insecure_skip_verify): encrypted but the server is not authenticated"
    if provider.ca_bundle is not None:
        return "verified against the provider's ca_bundle only"
    return "verified against the system trust store"


def insecure_warnings(providers: Mapping[str, ProviderSettings]) -> list[str]:
    return [
        f"provider '{name}': upstream TLS certificate verification is disabled "
        "(insecure_skip_verify)"
        for name, p in sorted(providers.items())
        if p.insecure_skip_verify
    ]


def client_contexts(providers: Iterable[ProviderSettings]) -> dict[str, ssl.SSLContext]:
    """Contexts for the providers with a ``ca_bundle`` or ``insecure_skip_verify``; the
    others are absent and get aiohttp's default context (``ssl=True``), which verifies
    against the system store. Reads CA files, so call it off the event loop. Logs one
    warning per provider that skips verification."""
    out: dict[str, ssl.SSLContext] = {}
    log = logs.get_logger("nitroproxy.tls")
    for p in providers:
        if p.insecure_skip_verify:
            log.warning(
                "upstream TLS certificate verification is disabled for this provider",
                provider=p.name,
                setting=f"providers.{p.name}.insecure_skip_verify",
            )
            out[p.name] = _unverified()
        elif p.ca_bundle is not None:
            with _naming(f"providers.{p.name}.ca_bundle"):
                out[p.name] = _verifying(p.ca_bundle)
    return out


@contextlib.contextmanager
def _naming(path: str) -> Iterator[None]:
    """A certificate file that cannot be read is a config error, named by its YAML path."""
    try:
        yield
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{path}: cannot load: {exc.strerror or exc}") from None


def _verifying(ca_bundle: str) -> ssl.SSLContext:
    # With cafile, create_default_context loads that bundle and skips the system store.
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_bundle)
    ctx.minimum_version = _MINIMUM
    return ctx


def _unverified() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = _MINIMUM
    ctx.check_hostname = False  # must come before CERT_NONE
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
