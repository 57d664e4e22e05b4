"""The sections for running several processes: ``state`` (where limits, budgets and
health are shared). Kept apart from ``loader`` so that module stays one screenful per
section."""

from __future__ import annotations

from nitroproxy.config.reader import Reader
from nitroproxy.config.schema import FailPolicy, StateSettings

__all__ = ["parse_state"]


def parse_state(r: Reader) -> StateSettings:
    r.only(
        "backend url prefix ca_bundle timeout retry_interval lease resync_interval "
        "health_interval fail"
    )
    d = StateSettings()
    url = r.text("url", d.url)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        r.fail("url", "must start with redis://, rediss:// or unix://")
    prefix = r.text("prefix", d.prefix)
    if not prefix or any(c.isspace() for c in prefix):
        r.fail("prefix", "must be a non-empty name without spaces")
    fail = r.child("fail")
    fail.only("requests tokens concurrency budget")
    policies = ["open", "closed"]
    f = FailPolicy()
    timeout = r.duration("timeout", d.timeout)
    if not 0 < timeout <= 5:
        r.fail("timeout", "must be between 1ms and 5s: requests wait on Redis this long at most")
    return StateSettings(
        backend=r.choice("backend", ["memory", "redis"], d.backend),
        url=url,
        prefix=prefix,
        ca_bundle=r.text("ca_bundle", None) or None,
        timeout=timeout,
        retry_interval=r.duration("retry_interval", d.retry_interval),
        lease=r.duration("lease", d.lease),
        resync_interval=r.duration("resync_interval", d.resync_interval),
        health_interval=r.duration("health_interval", d.health_interval),
        fail=FailPolicy(
            requests=fail.choice("requests", policies, f.requests),
            tokens=fail.choice("tokens", policies, f.tokens),
            concurrency=fail.choice("concurrency", policies, f.concurrency),
            budget=fail.choice("budget", policies, f.budget),
        ),
    )
