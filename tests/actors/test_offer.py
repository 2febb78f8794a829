"""offer(): a backend's refusal names the setting that caused it."""

from __future__ import annotations

from rubberduck.actors.channels import Admission, Admissions, Load
from rubberduck.actors.routing import Route, offer
from rubberduck.channels import ThreadChannel
from rubberduck.errors import ServerBusy
from rubberduck.messages import ChatRequest
from rubberduck.request_state import RequestState
from tests.conftest import HI


def _refused(load: Load) -> ServerBusy:
    admissions = Admissions()
    admissions.register("h", lambda handle, *, overflow=False: Admission.FULL)
    state = RequestState(ChatRequest(model="llama3.2", messages=HI), ThreadChannel(8), timeout=30)
    route = Route("h", max_in_flight=4, max_in_flight_per_model=1)
    assert offer(state, route, admissions, load, overflow=False) is Admission.FULL
    cause = state.causes["h"]
    assert isinstance(cause, ServerBusy)
    return cause


def test_a_refusal_for_the_models_limit_names_max_in_flight_per_model() -> None:
    load = Load()
    load.add("h", 1, "llama3.2")  # its one turn for llama3.2 is taken
    message = _refused(load).message
    assert "max_in_flight_per_model = 1" in message
    assert "'llama3.2'" in message
    assert "max_queue" not in message
    assert load["h"] == 1 and load.model("h", "llama3.2") == 1  # nothing changed


def test_a_refusal_with_every_slot_taken_names_max_in_flight() -> None:
    load = Load()
    for _ in range(68):
        load.add("h", 1, "qwen3")
    message = _refused(load).message
    assert "max_in_flight/max_queue" in message
    assert "max_in_flight_per_model" not in message
