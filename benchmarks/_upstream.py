"""The benchmarks' fast upstream: ``canned_ollama.c``, built at run time with the
machine's ``gcc`` and started on a free loopback port.

It answers from memory (see the C file), one thread per connection, so that the
clients' own costs are what a benchmark measures; :func:`ceiling` reports what it
serves to a bare socket client, to show it is not the bottleneck.
"""

from __future__ import annotations

import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SOURCE = Path(__file__).with_name("canned_ollama.c")


def build(workdir: Path) -> Path:
    """Compile the server into ``workdir``; returns the binary's path.

    Raises:
        RuntimeError: no ``gcc`` on this machine.
    """
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("the benchmarks' upstream needs gcc (apt-get install gcc)")
    binary = workdir / "canned_ollama"
    subprocess.run([gcc, "-O2", "-pthread", "-o", str(binary), str(SOURCE)], check=True)
    return binary


@contextmanager
def canned_ollama(chunks: int = 200) -> Iterator[str]:
    """Run the server (streamed answers of ``chunks`` lines); yields its base URL."""
    with tempfile.TemporaryDirectory(prefix="rubberduck-bench-") as tmp:
        proc = subprocess.Popen([str(build(Path(tmp))), str(chunks)], stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline())
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.kill()
            proc.wait()


def ceiling(url: str, calls: int = 2000) -> float:
    """Median µs of one non-streamed ``/api/chat`` over a bare keep-alive socket
    (no HTTP library): the upstream's own cost plus loopback."""
    host, port = url.rsplit("//", 1)[1].split(":")
    body = b'{"model":"llama3.2","messages":[],"stream":false}'
    request = (
        b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    samples = []
    with socket.create_connection((host, int(port))) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(calls):
            started = time.perf_counter()
            sock.sendall(request)
            answer = b""
            while not answer.endswith(b"}"):
                answer += sock.recv(65536)
            samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6
