"""An Ollama-protocol server that records how many requests it holds at once
(in all, and per model):
``/api/chat`` streams a slow answer (``lines`` chunks, ``pause`` seconds
apart); ``/api/version``, ``/api/tags`` and ``/api/ps`` answer as Ollama does
(tests/fixtures/ollama). ``gate``: cleared, every chat waits before its answer."""

from __future__ import annotations

import json
import threading
import time

from tests.fake_ollama import JSON_TYPE, fixture
from tests.fault_server import FaultHandler, FaultServer

__all__ = ["CountingOllama"]

_GET = {"/api/version": "version.json", "/api/tags": "tags.json", "/api/ps": "ps.json"}


class CountingOllama(FaultServer):
    """Args:
    lines: Chunks per streamed answer.
    pause: Seconds between chunks.
    """

    def __init__(self, lines: int = 5, pause: float = 0.02) -> None:
        self.lines, self.pause = lines, pause
        self.held = 0
        self.max_held = 0
        #: Model -> the most requests for it held at once.
        self.max_held_by_model: dict[str, int] = {}
        self._held_by_model: dict[str, int] = {}
        self.served = 0
        self.gate = threading.Event()
        self.gate.set()
        self._lock = threading.Lock()
        fake = self

        class Handler(FaultHandler):
            def do_GET(self) -> None:
                name = _GET.get(self.path)
                if name is None:
                    return self.send_body(404, b'{"error":"not found"}', JSON_TYPE)
                self.send_body(200, fixture(name), JSON_TYPE)

            def do_POST(self) -> None:
                body = json.loads(self.read_body() or b"{}")
                model = body.get("model", "llama3.2")
                fake._count(model, +1)
                held = [model]

                def answered() -> None:  # before the last write: see FakeOllama._answered
                    if held:
                        fake._count(held.pop(), -1)

                try:
                    fake.gate.wait()
                    if not body.get("stream", True):
                        time.sleep(fake.lines * fake.pause)
                        answer = {
                            **_last(model, fake.lines),
                            "message": {"role": "assistant", "content": "w"},
                        }
                        answered()
                        self.send_body(200, json.dumps(answer).encode(), JSON_TYPE)
                        with fake._lock:
                            fake.served += 1
                        return
                    self.start_chunks(200, "application/x-ndjson")
                    for i in range(fake.lines):
                        line = {
                            "model": model,
                            "message": {"role": "assistant", "content": f"w{i} "},
                            "done": False,
                        }
                        self.chunk(json.dumps(line).encode() + b"\n")
                        time.sleep(fake.pause)
                    answered()
                    self.chunk(json.dumps(_last(model, fake.lines)).encode() + b"\n")
                    self.chunk(b"")
                    with fake._lock:
                        fake.served += 1
                except OSError:
                    self.close_connection = True
                finally:
                    answered()

        self._serve(Handler)

    def _count(self, model: str, step: int) -> None:
        with self._lock:
            self.held += step
            self.max_held = max(self.max_held, self.held)
            now = self._held_by_model[model] = self._held_by_model.get(model, 0) + step
            self.max_held_by_model[model] = max(self.max_held_by_model.get(model, 0), now)


def _last(model: str, lines: int) -> dict[str, object]:
    return {
        "model": model,
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 3,
        "eval_count": lines,
    }
