"""pykka's internals are used in one module, rubberduck/actors/_pykka.py, behind
a version check; each one it relies on is still there in the installed pykka."""

from __future__ import annotations

import gc
import re
import weakref
from pathlib import Path
from typing import Any

import pykka
import pykka.messages
import pytest

from rubberduck.actors import _pykka
from tests.conftest import wait_until

PACKAGE = Path(_pykka.__file__).resolve().parents[1]
INTERNAL = re.compile(r"_actor_weakref|_actor_loop|_ActorStop|pykka\._|from pykka\._|_envelope")


@pytest.mark.parametrize("version", ["4.1", "4.1.0", "4.5.0", "4.99.1"])
def test_the_supported_pykka_versions_pass(version: str) -> None:
    _pykka.check_version(version)


@pytest.mark.parametrize("version", ["4.0.2", "3.1.1", "5.0.0", "junk", ""])
def test_another_pykka_is_refused_with_the_pin_to_install(version: str) -> None:
    with pytest.raises(ImportError, match=r"pykka>=4\.1,<5"):
        _pykka.check_version(version)


def test_the_installed_pykka_still_has_every_seam() -> None:
    class Probe(pykka.ThreadingActor):
        pass

    ref = Probe.start()
    try:
        assert isinstance(_pykka.actor_of(ref), Probe)
    finally:
        ref.stop()
    assert callable(pykka.ThreadingActor._actor_loop_teardown)
    assert pykka.messages._ActorStop is not None
    assert _pykka.envelope("x").message == "x"


def test_no_other_module_touches_pykka_internals() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "_pykka.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if INTERNAL.search(line)
    ]
    assert offenders == []


class Holder(_pykka.ThreadingActor):
    """Handles any message, then lets go of it."""

    def receive(self, message: Any) -> Any:
        self.forget_last_message()
        return None


class Payload:
    pass


def test_an_idle_actor_holds_nothing_of_the_last_message() -> None:
    ref = Holder.start()
    try:
        payload = Payload()
        gone = weakref.ref(payload)
        ref.tell(payload)
        del payload
        assert wait_until(lambda: gc.collect() >= 0 and gone() is None)
    finally:
        ref.stop()
