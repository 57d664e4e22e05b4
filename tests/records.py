"""A usage record for tests: every field filled, any of them overridden."""

from typing import Any

from nitroproxy.core.types import UsageRecord

MAR10 = 1_710_028_800.0  # 2024-03-10 00:00:00 UTC


def make_record(n: int = 0, **overrides: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "id": f"rec-{n}",
        "request_id": f"req-{n}",
        "ts": MAR10 + n,
        "key_id": "key-a",
        "user_id": "user-a",
        "model": "gpt-4o",
        "provider": "openai",
        "deployment": "oai-east",
        "upstream_model": "gpt-4o-2024-08-06",
        "endpoint": "chat.completions",
        "stream": False,
        "status": 200,
        "outcome": "ok",
        "error_class": None,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cached_tokens": 2,
        "cache_write_tokens": 1,
        "reasoning_tokens": 3,
        "usage_source": "provider",
        "cost_nanos": 1_000,
        "latency_ms": 120.5,
        "ttft_ms": None,
        "output_tps": None,
        "attempts": 1,
        "client_ip": None,
        "user_agent": None,
    }
    values.update(overrides)
    return UsageRecord(**values)
