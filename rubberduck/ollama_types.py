"""Answers of Ollama's model-management endpoints, as typed Structs.

Shapes follow ollama/ollama ``api/types.go`` and ``docs/api.md``. Decoding is
lenient: fields Ollama adds later are ignored, missing ones take their defaults.
Units: sizes are bytes, context lengths are tokens, times are timezone-aware
:class:`~datetime.datetime` (Ollama sends RFC 3339 with nanoseconds).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

__all__ = [
    "EmbeddingsResponse",
    "ListedModel",
    "ModelDetails",
    "ModelList",
    "ProcessList",
    "Progress",
    "RunningModel",
    "ShowResponse",
    "StatusResponse",
]


class EmbeddingsResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of Ollama's legacy ``POST /api/embeddings``, shaped like the
    official client's ``EmbeddingsResponse``.

    Attributes:
        embedding: The vector, not normalized (``[]`` when no prompt was given).
    """

    embedding: list[float]


class ModelDetails(msgspec.Struct, frozen=True, kw_only=True):
    """What a model is (``details`` in ``/api/tags``, ``/api/ps``, ``/api/show``).

    Attributes:
        parent_model: The model it was created from, ``""`` if none.
        format: File format, ``"gguf"`` or ``"safetensors"``.
        family: Architecture family (``"llama"``, ``"nomic-bert"``).
        families: All families, or ``None``.
        parameter_size: Parameter count as Ollama prints it (``"3.2B"``).
        quantization_level: ``"Q4_K_M"``, ``"F16"``, ...
    """

    parent_model: str = ""
    format: str = ""
    family: str = ""
    families: list[str] | None = None
    parameter_size: str = ""
    quantization_level: str = ""


class ListedModel(msgspec.Struct, frozen=True, kw_only=True):
    """One model on disk (``GET /api/tags``, ``models[]``).

    Attributes:
        name: The name to use in requests (``"llama3.2:latest"``).
        model: Same as ``name`` in current Ollama.
        modified_at: When it was last pulled or created.
        size: Bytes on disk.
        digest: The manifest's SHA-256, hex.
        details: Format, family, parameter size, quantization.
        remote_model: For a cloud model, its name on the remote host, else ``""``.
        remote_host: For a cloud model, the host that runs it, else ``""``.
    """

    name: str = ""
    model: str = ""
    modified_at: datetime | None = None
    size: int = 0
    digest: str = ""
    details: ModelDetails = ModelDetails()
    remote_model: str = ""
    remote_host: str = ""


class ModelList(msgspec.Struct, frozen=True, kw_only=True):
    """The models on disk (``GET /api/tags``), most recently modified first.

    Attributes:
        models: One entry per model.
    """

    models: list[ListedModel] = []

    @property
    def names(self) -> list[str]:
        """The models' names, as requests use them."""
        return [m.name or m.model for m in self.models]


class RunningModel(msgspec.Struct, frozen=True, kw_only=True):
    """A model loaded in memory (``GET /api/ps``, ``models[]``).

    Attributes:
        name: Model name (``"llama3.2:latest"``).
        model: Same as ``name``.
        size: Bytes of memory it takes, RAM and VRAM together.
        size_vram: Bytes of it in GPU memory (``size_vram == size``: fully on GPU).
        digest: The manifest's SHA-256, hex.
        details: Format, family, parameter size, quantization.
        expires_at: When it unloads unless used again (``keep_alive``).
        context_length: The context window it was loaded with, tokens (``None``
            from servers older than 0.9).
    """

    name: str = ""
    model: str = ""
    size: int = 0
    size_vram: int = 0
    digest: str = ""
    details: ModelDetails = ModelDetails()
    expires_at: datetime | None = None
    context_length: int | None = None


class ProcessList(msgspec.Struct, frozen=True, kw_only=True):
    """The models loaded now (``GET /api/ps``), longest time to expiry first.

    Attributes:
        models: One entry per loaded model.
    """

    models: list[RunningModel] = []


class ShowResponse(msgspec.Struct, frozen=True, kw_only=True):
    """Everything Ollama knows about one model (``POST /api/show``).

    Attributes:
        modelfile: A Modelfile that recreates the model.
        parameters: Its ``PARAMETER`` settings, one per line (``"num_ctx  4096"``).
        template: The prompt template (Go template syntax).
        system: The system prompt, ``""`` if none.
        license: License text, ``""`` if none.
        details: Format, family, parameter size, quantization.
        model_info: GGUF metadata (``"general.architecture"``,
            ``"llama.context_length"``, ...). Long arrays (the tokenizer's) are
            empty unless ``verbose``.
        projector_info: The vision projector's metadata, for vision models.
        tensors: Tensor names, types and shapes (``verbose`` only in old servers).
        capabilities: What the model can do: ``"completion"``, ``"tools"``,
            ``"vision"``, ``"embedding"``, ``"thinking"``, ``"insert"``.
        messages: Messages the Modelfile puts before every chat.
        modified_at: When the model was last pulled or created.
    """

    modelfile: str = ""
    parameters: str = ""
    template: str = ""
    system: str = ""
    license: str = ""
    details: ModelDetails = ModelDetails()
    model_info: dict[str, Any] = {}
    projector_info: dict[str, Any] | None = None
    tensors: list[dict[str, Any]] | None = None
    capabilities: list[str] = []
    messages: list[dict[str, Any]] = []
    modified_at: datetime | None = None

    @property
    def context_length(self) -> int | None:
        """The longest context the model was trained for, tokens (from
        ``model_info``), or ``None`` if the metadata does not say."""
        arch = self.model_info.get("general.architecture")
        value = self.model_info.get(f"{arch}.context_length") if arch else None
        return value if isinstance(value, int) else None


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    """One progress line of a pull, push or create (Ollama ``ProgressResponse``).

    Attributes:
        status: What the server is doing (``"pulling manifest"``,
            ``"pulling 26bd607a51eb"``, ``"verifying sha256 digest"``); the last
            line says ``"success"``.
        digest: The layer being transferred (``"sha256:..."``), else ``None``.
        total: Size of that layer, bytes, else ``None``.
        completed: Bytes of it done so far, else ``None`` (absent until the
            first bytes arrive).
    """

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None

    @property
    def done(self) -> bool:
        """This is the final ``"success"`` line."""
        return self.status == "success"

    @property
    def fraction(self) -> float | None:
        """``completed / total`` (0–1) for a layer transfer, else ``None``."""
        if self.total:
            return (self.completed or 0) / self.total
        return None


class StatusResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of an endpoint that answers with a bare status (``/api/copy``,
    ``/api/delete``).

    Attributes:
        status: ``"success"`` (failures raise instead).
    """

    status: str = "success"
