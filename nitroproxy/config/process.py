"""The sections about the process itself: its listener (``server``, with ``tls``, the client
timeouts and limits, and the bundled mock provider) and its ``storage``."""

from __future__ import annotations

from nitroproxy.config.reader import Reader
from nitroproxy.config.schema import (
    ClientTimeouts,
    MockProviderSettings,
    ServerLimits,
    ServerSettings,
    StorageSettings,
    TLSSettings,
)


def server(r: Reader) -> ServerSettings:
    r.only(
        "host port max_body_bytes shutdown_grace keepalive_interval trust_forwarded_for "
        "backlog mock_provider tls timeouts limits"
    )
    d = ServerSettings()
    mock = r.child("mock_provider")
    tls = r.child("tls")
    timeouts, limits = r.child("timeouts"), r.child("limits")
    timeouts.only("header body keepalive")
    limits.only("connections body_bytes_in_flight")
    return ServerSettings(
        host=r.text("host", d.host),
        port=r.port("port", d.port),
        max_body_bytes=r.integer("max_body_bytes", d.max_body_bytes, minimum=1024),
        shutdown_grace=r.duration("shutdown_grace", d.shutdown_grace),
        keepalive_interval=r.duration("keepalive_interval", d.keepalive_interval),
        trust_forwarded_for=r.flag("trust_forwarded_for", d.trust_forwarded_for),
        backlog=r.integer("backlog", d.backlog, minimum=1, maximum=65535),
        mock_provider=_mock(mock) if mock.present else None,
        tls=_tls(tls) if tls.present else None,
        timeouts=ClientTimeouts(
            header=timeouts.duration("header", d.timeouts.header),
            body=timeouts.duration("body", d.timeouts.body),
            keepalive=timeouts.duration("keepalive", d.timeouts.keepalive),
        ),
        limits=ServerLimits(
            connections=limits.integer("connections", d.limits.connections, minimum=1),
            body_bytes_in_flight=limits.integer(
                "body_bytes_in_flight", d.limits.body_bytes_in_flight, minimum=1024
            ),
        ),
    )


def _tls(r: Reader) -> TLSSettings:
    r.only("cert key client_ca")
    return TLSSettings(
        cert=r.text("cert", None, required=True),
        key=r.text("key", None, required=True),
        client_ca=r.text("client_ca", None) or None,
    )


def _mock(r: Reader) -> MockProviderSettings:
    r.only("host port tokens delay_ms")
    d = MockProviderSettings()
    return MockProviderSettings(
        host=r.text("host", d.host),
        port=r.port("port", d.port),
        tokens=r.integer("tokens", d.tokens, minimum=0),
        delay_ms=r.number("delay_ms", d.delay_ms, minimum=0.0),
    )


def storage(r: Reader) -> StorageSettings:
    r.only(
        "enabled path backend url batch_size flush_interval max_queue high_water busy_timeout "
        "journal_dir journal_after on_failure journal_before_answer"
    )
    d = StorageSettings()
    path = r.text("path", d.path)
    backend = r.choice("backend", ["sqlite", "postgres"], d.backend)
    url = r.text("url", d.url)
    if backend == "postgres" and not url.startswith(("postgresql://", "postgres://")):
        r.fail("url", "storage.backend postgres needs a postgresql:// URL")
    max_queue = r.integer("max_queue", d.max_queue, minimum=1)
    return StorageSettings(
        enabled=r.flag("enabled", d.enabled),
        path=path,
        backend=backend,
        url=url,
        batch_size=r.integer("batch_size", d.batch_size, minimum=1),
        flush_interval=r.duration("flush_interval", d.flush_interval),
        max_queue=max_queue,
        # Unset: 80 % of the memory bound, so readiness fails before the bound is reached.
        high_water=r.integer("high_water", max(1, max_queue * 4 // 5), minimum=1),
        busy_timeout=r.duration("busy_timeout", d.busy_timeout),
        journal_dir=r.text("journal_dir", d.journal_dir),
        journal_after=r.duration("journal_after", d.journal_after),
        on_failure=r.choice("on_failure", ["refuse", "serve"], d.on_failure),
        journal_before_answer=r.flag("journal_before_answer", d.journal_before_answer),
    )
