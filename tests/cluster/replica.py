"""One replica for the cluster tests: ``python -m tests.cluster.replica CONFIG
THREADS REQUESTS [MODELS]`` builds a Runtime from the JSON config, prints
``ready``, sends REQUESTS chats from each of THREADS threads (thread i for
model i modulo the comma-separated MODELS, default ``llama3.2``) and prints a
JSON summary (``ok``, ``errors``) as its last line. WARNINGs go to stderr."""

from __future__ import annotations

import json
import logging
import sys
import threading

from rubberduck import Runtime


def main() -> None:
    config, threads, per_thread = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    models = (sys.argv[4] if len(sys.argv) > 4 else "llama3.2").split(",")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    ok, errors, lock = [0], [], threading.Lock()
    with Runtime.from_config(config) as rt:
        rt.wait_for_probes(10)
        print("ready", flush=True)

        def client(model: str) -> None:
            for i in range(per_thread):
                try:
                    # Streamed (a worker runs it) and not (the caller's thread does).
                    if i % 2:
                        rt.chat(model, [{"role": "user", "content": "hi"}])
                    else:
                        for _event in rt.chat(
                            model, [{"role": "user", "content": "hi"}], stream=True
                        ):
                            pass
                    with lock:
                        ok[0] += 1
                except Exception as exc:  # noqa: BLE001 - reported to the test
                    with lock:
                        errors.append(repr(exc))

        workers = [
            threading.Thread(target=client, args=(models[i % len(models)],)) for i in range(threads)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    print(json.dumps({"ok": ok[0], "errors": errors}), flush=True)


if __name__ == "__main__":
    main()
