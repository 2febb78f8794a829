"""An ``ollama serve`` process of a test's own, for faults a test must cause itself.

:class:`OllamaServer` starts the binary ``scripts/with-ollama`` built
(``OLLAMA_BIN``) on a free 127.0.0.1 port, over the models directory that holds
``smollm2:135m`` (``OLLAMA_MODELS``), with any other settings the test needs
(``OLLAMA_MAX_QUEUE=1``, ...). It can kill, stop (``SIGSTOP``), resume and restart
the server on the same port. Signals go to the server's process group, by its id,
so the runner process ``ollama serve`` starts for a model goes with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from tests.fake_ollama import free_port

__all__ = ["OllamaServer"]

#: urllib without the environment's proxies: the server is on loopback.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class OllamaServer:
    """``ollama serve`` on ``127.0.0.1:port`` in a process group of its own.

    Args:
        binary: The ``ollama`` executable.
        models: ``OLLAMA_MODELS`` directory (shared read-only with other servers:
            ``OLLAMA_NOPRUNE`` keeps this one from pruning blobs others use).
        workdir: A directory for its log and ``HOME`` (its key pair).
        env: Extra environment (``{"OLLAMA_MAX_QUEUE": "1"}``).
        port: TCP port; default a free one.
    """

    def __init__(
        self,
        binary: str,
        models: str,
        workdir: Path,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"serve-{self.port}.log"
        home = workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "HOME": str(home),
            "OLLAMA_HOST": f"127.0.0.1:{self.port}",
            "OLLAMA_MODELS": models,
            "OLLAMA_NUM_PARALLEL": "1",
            "OLLAMA_NO_CLOUD": "1",
            "OLLAMA_NOPRUNE": "1",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> OllamaServer:
        """Start the server and wait until ``GET /api/version`` answers.

        Raises:
            RuntimeError: it exited or did not answer within ``timeout`` seconds
                (the message ends with its log).
        """
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "serve"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if self.process.poll() is not None:
                break
            if self.answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"ollama serve did not start on {self.url}:\n{self.log()[-3000:]}")

    def answers(self) -> bool:
        """Whether ``GET /api/version`` answers now (within a second)."""
        try:
            with _direct.open(f"{self.url}/api/version", timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def log(self) -> str:
        """Everything the server (and its runners) logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)

    def runner_pids(self) -> list[int]:
        """The ``ollama runner`` processes the server started (its children)."""
        if self.process is None:
            return []
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == self.process.pid:
                found.append(int(entry))
        return found

    def signal_runners(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the runners only (``SIGKILL``: the server lives on and
        reports the loss; ``SIGSTOP``: the model hangs mid-answer)."""
        for pid in self.runner_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def kill_runners(self) -> None:
        """``SIGKILL`` the runners only."""
        self.signal_runners(signal.SIGKILL)

    def kill(self) -> None:
        """``SIGKILL`` the server and its runners: connections drop at once."""
        self._signal(signal.SIGKILL)
        self._reap()

    def pause(self) -> None:
        """``SIGSTOP``: the port still accepts connections, nothing answers."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """``SIGCONT`` after :meth:`pause`."""
        self._signal(signal.SIGCONT)

    def stop(self, grace: float = 10.0) -> None:
        """``SIGTERM`` (after ``SIGCONT``), then ``SIGKILL`` if it is still there
        after ``grace`` seconds. Idempotent."""
        self.resume()
        self._signal(signal.SIGTERM)
        self._reap(grace)

    def restart(self) -> OllamaServer:
        """Start again on the same port (after :meth:`kill` or :meth:`stop`)."""
        self.stop()
        return self.start()

    def _reap(self, grace: float = 10.0) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        # Runners left in the group (the server's children) go too.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self) -> OllamaServer:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
