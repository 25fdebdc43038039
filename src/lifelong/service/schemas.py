"""Request bodies of the service, as pydantic models (they make the OpenAPI schema and the 422 messages).

>>> SessionCreate(user="alice").user
'alice'
>>> from pydantic import TypeAdapter
>>> TypeAdapter(Feedback).validate_python({"type": "rating", "session_id": "s-1", "score": 1}).score
1.0
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Text = Annotated[str, Field(max_length=200_000)]


class SessionCreate(BaseModel):
    """Open a session for one user of the tenant."""

    model_config = ConfigDict(extra="forbid")
    user: str = Field("default", min_length=1, max_length=256, description="The end user the session belongs to.")
    meta: dict[str, Any] = Field(default_factory=dict, description="Free-form JSON kept with the session.")


class ChatRequest(BaseModel):
    """One user turn in a session."""

    model_config = ConfigDict(extra="forbid")
    message: Text = Field(..., min_length=1, description="What the user says.")
    model: str | None = Field(None, description="A backend name; the default one if left out.")
    max_tokens: int = Field(256, ge=1, le=32_768)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    seed: int | None = None


class _FeedbackBase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session_id: str = Field(..., min_length=1, description="The session the feedback is about.")
    trace_id: str | None = Field(None, description="The answer (trace) the feedback is about.")
    comment: str = Field("", max_length=10_000)


class RatingFeedback(_FeedbackBase):
    """A score for an answer: -1 (bad) to 1 (good)."""

    type: Literal["rating"]
    score: float = Field(..., ge=-1.0, le=1.0)


class CorrectionFeedback(_FeedbackBase):
    """A fact or instruction the system got wrong, stated correctly; it becomes a session memory item."""

    type: Literal["correction"]
    text: Text = Field(..., min_length=1, description="The correct statement.")


class EditFeedback(_FeedbackBase):
    """A human edit of an answer (``trace_id`` names the answer); it becomes a session memory item."""

    type: Literal["edit"]
    text: Text = Field(..., min_length=1, description="The edited answer.")


Feedback = Annotated[RatingFeedback | CorrectionFeedback | EditFeedback, Field(discriminator="type")]


class MemoryOps(BaseModel):
    """A batch of memory operations (ADD, UPDATE, MERGE, SUPERSEDE, DELETE, TAG), applied atomically."""

    model_config = ConfigDict(extra="forbid")
    operations: list[dict[str, Any]] = Field(..., min_length=1, max_length=1000,
                                             description='Each like {"op": "ADD", "content": "...", "id": "..."}.')
    scope: Literal["session", "user", "global"] = "user"
    message: str = Field("", max_length=1000)


class RollbackRequest(BaseModel):
    """Move one of the tenant's refs back."""

    model_config = ConfigDict(extra="forbid")
    ref: str = Field("memory", min_length=1, description="A ref of this tenant, e.g. 'memory'.")
    to: str | None = Field(None, description="Version id or prefix; default: where the ref was before its last move.")
    reason: str = Field("rollback through the API", max_length=1000)


class ChatMessage(BaseModel):
    """An OpenAI chat message (content as text or a list of parts; unknown fields are kept)."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    """OpenAI's ``stream_options``."""

    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The OpenAI chat completions request. Two extensions: ``session_id`` (or the ``X-Session-Id``
    header) ties the call to a lifelong session, so its memory and feedback apply; ``user`` (OpenAI's own
    field) names the end user when there is no session. Fields lifelong does not use are accepted and
    ignored, so existing clients work unchanged."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(..., min_length=1)
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1, le=32_768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32_768)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1)
    user: str | None = Field(None, max_length=256)
    session_id: str | None = None
