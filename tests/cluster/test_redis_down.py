"""Redis down: requests carry on with local state, one rate-limited WARNING on
rubberduck.cluster, and the metric rubberduck.cluster.redis_errors counts it."""

from __future__ import annotations

import logging
import time

import pytest

from rubberduck import Runtime
from rubberduck.telemetry.logs import LIMITER
from tests.cluster.conftest import RedisServer
from tests.fake_ollama import FakeOllama
from tests.telemetry.conftest import Sdk, sdk  # noqa: F401 - the fixture


def test_redis_killed_fails_no_request_and_is_logged_and_counted(
    redis_server: RedisServer,
    sdk: Sdk,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    LIMITER.reset()
    config = {
        "provider": {"ollama": {"max_in_flight": 1}},
        "cluster": {"redis_url": redis_server.url, "retry_after": 0.05},
    }
    with FakeOllama() as fake:
        config["provider"]["ollama"]["base_url"] = fake.url  # type: ignore[index]
        with Runtime.from_config(config) as rt, caplog.at_level(logging.WARNING):
            rt.chat("llama3.2", [{"role": "user", "content": "hi"}])
            redis_server.kill()
            for _ in range(5):
                time.sleep(0.06)  # past retry_after: each request tries Redis again
                assert rt.chat("llama3.2", [{"role": "user", "content": "hi"}]).provider == "ollama"
    warnings = [r for r in caplog.records if r.name == "rubberduck.cluster"]
    # Many calls failed (retry_after is short); one WARNING says so (rate-limited).
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert "carrying on with local limits" in warnings[0].getMessage()
    errors = sdk.points("rubberduck.cluster.redis_errors")
    assert (
        sum(p.value for p in errors if p.attributes["rubberduck.operation"] == "take a slot") >= 2
    )
