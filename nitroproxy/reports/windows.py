"""The retention windows in words, from the running settings: what ``/privacy`` promises per
table and in its ``retention`` summary, and what the retention sweeper enforces."""

from __future__ import annotations

from collections.abc import Collection

from nitroproxy.config import Settings

__all__ = ["duration", "kept_for", "windows"]


def duration(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n > 1 else ''}"
    return f"{seconds:g} seconds"


def windows(settings: Settings) -> dict[str, str]:
    """Every retention window, in words: what ``/privacy`` promises and the sweeper keeps."""
    r = settings.retention
    grace = duration(r.closed_accounts)
    out = {
        "request records": f"{duration(r.requests)}, then rolled up into usage analytics "
        "and billing lines",
        "usage analytics": f"{duration(r.analytics)} (per user and day; none for people who "
        "object to analytics)",
        "billing lines": f"{duration(r.billing)}, for tax; under a pseudonym once the user "
        "is erased",
        "accounts": f"while active; a closed account is erased {grace} after closure",
        "API keys": f"while usable; deleted {grace} after revocation or expiry",
        "audit log": duration(r.audit),
        "privacy choices": "while the account or key exists",
    }
    if settings.cache.enabled:
        out["response cache"] = duration(settings.cache.ttl)
    out["enforced by"] = f"the retention sweeper, every {duration(r.interval)}"
    return out


def kept_for(settings: Settings, table: str, category: str, columns: Collection[str]) -> str:
    """How long rows of ``table`` are kept, in words."""
    r = settings.retention
    grace = duration(r.closed_accounts)
    kept = {
        "usage": f"{duration(r.requests)}, then rolled up into usage_daily (unless the "
        "person objects to analytics) and billing_lines",
        "usage_daily": duration(r.analytics),
        "billing_lines": f"{duration(r.billing)} (tax); pseudonymous after erasure",
        "users": f"while active; erased {grace} after closure (the erased id stays, with "
        "no personal data, so it is never reused)",
        "api_keys": f"while usable; deleted {grace} after revocation or expiry, and with "
        "their user's erasure",
        "preferences": "while the person's account or key exists",
        "audit": duration(r.audit),
        "admin_keys": "until revoked; a revoked key's name and digest stay, so a name is "
        "never reused",
        "meta": "while the database exists (internal state)",
    }
    if table in kept and category != "response cache":
        return kept[table]
    if category == "response cache" and "expires" in columns:
        return f"{duration(settings.cache.ttl)}, less when evicted (max_entries, max_bytes)"
    return "until deleted (no retention window applies)"
