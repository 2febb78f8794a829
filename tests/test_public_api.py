"""The public surface is pinned: a change here is a deliberate API change."""

import rubberduck


def test_exported_members() -> None:
    assert sorted(rubberduck.__all__) == sorted([
        "AllProvidersFailed", "AsyncRequestHandle", "AsyncRuntime", "AuthError", "BackendHealth",
        "Cancelled", "ChatRequest",
        "ChatResponse",
        "Config", "ConfigError", "Context", "CostConfig", "Price", "UsageReport", "UsageTotals",
        "Delta", "EmbedResponse", "ModelList", "ProcessList", "Progress", "ShowResponse",
        "StatusResponse", "Done", "Durations", "EmbedRequest", "Event",
        "GenerateRequest", "GenerateResponse", "HealthConfig", "InternalError", "InvalidRequest",
        "Message",
        "ModelNotFound", "ProtocolError", "ProviderConfig", "ProviderUnavailable",
        "RequestHandle", "RequestTimeout", "Restart", "RouterConfig", "RubberDuckError", "Runtime",
        "ServerBusy", "StreamInterrupted", "SupervisorConfig", "ToolCall", "Usage", "__version__",
        "load_config",
    ])  # fmt: skip
    for name in rubberduck.__all__:
        assert hasattr(rubberduck, name), name


def test_every_error_is_a_rubberduck_error() -> None:
    for name in rubberduck.errors.__all__:
        assert issubclass(getattr(rubberduck.errors, name), rubberduck.RubberDuckError)
