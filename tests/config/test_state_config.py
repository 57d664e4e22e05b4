"""The ``state`` section: defaults, a Redis URL with a password kept out of reprs, and
one-line errors that name the path."""

from __future__ import annotations

import pytest

from nitroproxy import config
from nitroproxy.config import ConfigError


def test_memory_is_the_default_and_budgets_fail_closed() -> None:
    state = config.parse({}).state
    assert state.backend == "memory"
    assert (state.fail.requests, state.fail.tokens, state.fail.concurrency) == ("open",) * 3
    assert state.fail.budget == "closed"


def test_a_redis_url_with_a_password_parses_and_stays_out_of_repr() -> None:
    settings = config.parse(
        {
            "state": {
                "backend": "redis",
                "url": "rediss://:s3cret-pass@redis.internal:6380/2",
                "timeout": "50ms",
                "fail": {"requests": "closed"},
            }
        }
    )
    assert settings.state.url == "rediss://:s3cret-pass@redis.internal:6380/2"
    assert settings.state.timeout == pytest.approx(0.05)
    assert settings.state.fail.requests == "closed"
    assert "s3cret-pass" not in repr(settings)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"backend": "etcd"}, "state.backend: must be one of memory, redis, got 'etcd'"),
        ({"url": "http://x"}, "state.url: must start with redis://, rediss:// or unix://"),
        ({"prefix": "a b"}, "state.prefix: must be a non-empty name without spaces"),
        ({"timeout": "10s"}, "state.timeout: must be between 1ms and 5s"),
        ({"fail": {"budget": "ajar"}}, "state.fail.budget: must be one of open, closed"),
        ({"fail": {"rpm": "open"}}, "state.fail.rpm: unknown setting"),
    ],
)
def test_errors_name_the_path(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.parse({"state": section})
    assert str(err.value).startswith(message)
