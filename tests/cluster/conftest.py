"""A real ``redis-server`` on a free 127.0.0.1 port, per test (no persistence),
stopped by its PID. Skipped when redis-server is not installed, unless
``RUBBERDUCK_REQUIRE_REDIS=1`` (``.ci/run``) makes that a failure."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.fake_ollama import free_port


@dataclass
class RedisServer:
    """A running redis-server: its URL, port and process."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def start_redis(port: int | None = None) -> RedisServer:
    """Start redis-server and wait until it accepts connections."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(binary):
        if os.environ.get("RUBBERDUCK_REQUIRE_REDIS") == "1":
            pytest.fail("redis-server is not installed (RUBBERDUCK_REQUIRE_REDIS=1)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = port or free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    give_up = time.monotonic() + 10
    while time.monotonic() < give_up:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return RedisServer(port, process)
        except OSError:
            time.sleep(0.02)
    process.kill()
    pytest.fail("redis-server did not start within 10 s")


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def shared_redis() -> Iterator[RedisServer]:
    """One redis-server for every test that asks (property tests: hypothesis
    runs a body many times); a test flushes what it needs empty."""
    server = start_redis()
    try:
        yield server
    finally:
        server.kill()
