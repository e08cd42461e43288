"""What workers hand to the job database and get back: claims, responses, rows, answers and
rejections."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Claim:
    """A job taken by one worker; `token` fences its completion."""

    job_id: int
    kind: str
    provider: str
    spec: dict[str, Any]
    attempt: int
    max_attempts: int
    token: str
    worker: str


@dataclass(frozen=True)
class ResponseRecord:
    """Provenance of one LLM call (after the client's own retries)."""

    provider: str
    model: str
    endpoint: str
    prompt_version: str
    temperature: float
    started_at: float
    finished_at: float
    outcome: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    error: str = ""
    raw: str = ""


@dataclass(frozen=True)
class Rejection:
    """One rejected output (a whole response when `item` is None) and why."""

    reason: str
    detail: str = ""
    text: str = ""
    item: int | None = None
    row_id: str | None = None


@dataclass(frozen=True)
class GeneratedRow:
    """An accepted generated command with its labels."""

    id: str
    text: str
    lang: str
    domain: str
    labels: dict[str, str]
    source: str


@dataclass(frozen=True)
class LabelAnswer:
    """One labeler's labels for one row."""

    row_id: str
    labels: dict[str, str]


@dataclass
class FinishResult:
    """What `finish` stored: False in `finished` when the claim was lost to another worker."""

    finished: bool
    rows: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
