"""The repository stands on its own: a fresh clone, alone in an empty directory,
has every file its tests and benchmarks read."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests import fake_ollama

ROOT = Path(__file__).resolve().parents[1]


def test_ollama_transcripts_live_inside_the_repository() -> None:
    assert fake_ollama.FIXTURES.is_relative_to(ROOT)
    named = set(re.findall(r"[\w]+\.(?:json|ndjson)", Path(fake_ollama.__file__).read_text()))
    named |= {"chat_stream.ndjson", "error_model_not_found.json", "error_server_busy.json"}
    missing = sorted(n for n in named if not (fake_ollama.FIXTURES / n).is_file())
    assert not missing, f"transcripts missing from {fake_ollama.FIXTURES}: {missing}"


def test_nothing_in_the_project_reads_files_beside_the_checkout() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "rubberduck", "tests", "benchmarks", "scripts", ".ci"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if tracked.returncode != 0:  # not a git checkout (an sdist): walk the tree instead
        files = [p for d in ("rubberduck", "tests", "benchmarks") for p in (ROOT / d).rglob("*")]
    else:
        files = [ROOT / line for line in tracked.stdout.splitlines()]
    outside = re.compile(r"\.\./shared|parents\[2\]")
    offenders = [
        str(p.relative_to(ROOT))
        for p in files
        if p.is_file() and p.suffix in {".py", ""} and outside.search(p.read_text(errors="replace"))
    ]
    offenders = [o for o in offenders if o != "tests/test_repository.py"]
    assert not offenders, f"these read outside the repository: {offenders}"
