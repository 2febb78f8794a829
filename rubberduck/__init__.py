"""RubberDuck: a supervised, actor-based runtime for talking to local LLM servers.

Ollama first; an embedded llama.cpp model as the fallback when Ollama is down.
"""

import logging

from rubberduck._version import __version__
from rubberduck.async_runtime import AsyncRuntime
from rubberduck.config import (
    Config,
    CostConfig,
    HealthConfig,
    ProviderConfig,
    RouterConfig,
    SupervisorConfig,
    load_config,
)
from rubberduck.context import Context
from rubberduck.cost import Price, UsageReport, UsageTotals
from rubberduck.errors import (
    AllProvidersFailed,
    AuthError,
    Cancelled,
    ConfigError,
    InternalError,
    InvalidRequest,
    ModelNotFound,
    ProtocolError,
    ProviderUnavailable,
    RequestTimeout,
    RubberDuckError,
    ServerBusy,
    StreamInterrupted,
)
from rubberduck.handle import AsyncRequestHandle, RequestHandle
from rubberduck.messages import (
    BackendHealth,
    ChatRequest,
    ChatResponse,
    Delta,
    Done,
    Durations,
    EmbedRequest,
    EmbedResponse,
    Event,
    GenerateRequest,
    GenerateResponse,
    Message,
    Restart,
    ToolCall,
    Usage,
)
from rubberduck.ollama_types import (
    ModelList,
    ProcessList,
    Progress,
    ShowResponse,
    StatusResponse,
)
from rubberduck.runtime import Runtime

__all__ = [
    "AllProvidersFailed",
    "AsyncRequestHandle",
    "AsyncRuntime",
    "AuthError",
    "BackendHealth",
    "Cancelled",
    "ChatRequest",
    "ChatResponse",
    "Config",
    "ConfigError",
    "Context",
    "CostConfig",
    "Delta",
    "Done",
    "Durations",
    "EmbedRequest",
    "EmbedResponse",
    "Event",
    "GenerateRequest",
    "GenerateResponse",
    "HealthConfig",
    "InternalError",
    "InvalidRequest",
    "Message",
    "ModelList",
    "ModelNotFound",
    "Price",
    "ProcessList",
    "Progress",
    "ProtocolError",
    "ProviderConfig",
    "ProviderUnavailable",
    "RequestHandle",
    "RequestTimeout",
    "Restart",
    "RouterConfig",
    "RubberDuckError",
    "Runtime",
    "ServerBusy",
    "ShowResponse",
    "StatusResponse",
    "StreamInterrupted",
    "SupervisorConfig",
    "ToolCall",
    "Usage",
    "UsageReport",
    "UsageTotals",
    "__version__",
    "load_config",
]

# A library logs, the application decides where it goes: nothing is printed
# unless the application configures logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())
