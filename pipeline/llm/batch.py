"""OpenAI Batch API files in and out of the job database.

`export_batch` claims the open jobs of one provider for a batch (a long lease held by the worker
`batch:<file>`, so live workers leave them alone) and writes one Batch API request line per job:
`{"custom_id": "<kind>:<job id>", "method": "POST", "url": "/v1/chat/completions", "body": ...}`.
`import_batch` reads the Batch API output lines (`{"custom_id", "response": {"status_code",
"body"}, "error"}`) and hands each one to the same job handler a live call goes through, via a
`BatchReplayClient` that answers `complete()` with the line's completion. Validation, rejections
with reasons, balancing accounting and provenance are therefore identical for both paths.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Sequence

from pipeline.core.io import write_jsonl
from pipeline.llm.client import Completion, LLMError, ProviderConfig, chat_request_body
from pipeline.llm.jobs.db import JobDB
from pipeline.llm.jobs.records import Claim
from pipeline.llm.jobs.tables import DONE, FAILED, PENDING

log = logging.getLogger(__name__)

BATCH_URL = "/v1/chat/completions"
# Job spec key holding the prompt version a batch was exported with: its answers are recorded
# under that version even when the guide changed before they came back.
BATCH_PROMPT_VERSION = "batch_prompt_version"
JOB_HEADER = "X-LM-Action-Job"


class BatchFileError(ValueError):
    """A batch output file (or one of its lines) is not what the Batch API writes."""


def batch_worker(path: Path) -> str:
    """The worker id holding a batch's jobs; its host part never matches a live machine."""
    return f"batch:{Path(path).name}"


def custom_id(kind: str, job_id: int) -> str:
    return f"{kind}:{job_id}"


def parse_custom_id(value: Any, kind: str, where: str) -> int:
    """The job id of `kind:<id>`; `BatchFileError` naming `where` otherwise."""
    if not isinstance(value, str) or ":" not in value:
        raise BatchFileError(f"{where}: custom_id {value!r} is not `{kind}:<job id>`")
    prefix, _, number = value.rpartition(":")
    if prefix != kind or not number.isdigit():
        raise BatchFileError(f"{where}: custom_id {value!r} is not `{kind}:<job id>`")
    return int(number)


def request_line(kind: str, job_id: int, provider: ProviderConfig, messages: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """One Batch API request line with the body a live call would send."""
    return {"custom_id": custom_id(kind, job_id), "method": "POST", "url": BATCH_URL, "body": chat_request_body(provider, messages)}


@dataclass
class ExportedBatch:
    path: Path
    jobs: int


def export_batch(
    db: JobDB,
    kind: str,
    provider: ProviderConfig,
    messages_for: Callable[[Claim], Sequence[Mapping[str, str]]],
    path: Path,
    lease_s: float,
    limit: int | None = None,
    version: str = "",
) -> ExportedBatch:
    """Claim up to `limit` claimable jobs of `provider` and write their request lines to `path`;
    `version` (the prompt version) is kept in each job's spec for its answers' provenance.

    The file is written atomically; if writing fails, the claimed jobs are given back.
    """
    path = Path(path)
    worker = batch_worker(path)
    claims: list[Claim] = []
    while limit is None or len(claims) < limit:
        claim = db.claim(kind, [provider.name], worker, lease_s)
        if claim is None:
            break
        claims.append(claim)
    try:
        write_jsonl(path, (request_line(kind, c.job_id, provider, messages_for(c)) for c in claims))
        if version:
            db.update_specs({c.job_id: {**c.spec, BATCH_PROMPT_VERSION: version} for c in claims})
    except BaseException:
        for claim in claims:
            db.release(claim)
        raise
    return ExportedBatch(path, len(claims))


@dataclass(frozen=True)
class BatchAnswer:
    """One output line: the completion, or the error the Batch API reported."""

    line: int
    job_id: int
    completion: Completion | None = None
    error: LLMError | None = None


def read_batch_output(path: Path, kind: str, provider: ProviderConfig) -> list[BatchAnswer]:
    """Every line of a Batch API output file, checked; `BatchFileError` lists every bad line."""
    path = Path(path)
    if not path.is_file():
        raise BatchFileError(f"{path}: no such batch output file")
    endpoint = f"batch:{path.name}"
    answers: list[BatchAnswer] = []
    problems: list[str] = []
    seen: dict[int, int] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(raw)
            if not isinstance(item, dict):
                raise BatchFileError(f"{where}: a line must be a JSON object")
            job_id = parse_custom_id(item.get("custom_id"), kind, where)
            if job_id in seen:
                raise BatchFileError(f"{where}: custom_id {item['custom_id']!r} repeats line {seen[job_id]}")
            seen[job_id] = number
            answers.append(_answer(item, number, job_id, provider, endpoint, where))
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not JSON ({exc.msg})")
        except BatchFileError as exc:
            problems.append(str(exc))
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise BatchFileError(f"{len(problems)} bad line(s) in {path}; nothing was imported:\n  {shown}{more}")
    return answers


def _answer(item: dict, number: int, job_id: int, provider: ProviderConfig, endpoint: str, where: str) -> BatchAnswer:
    response = item.get("response")
    error = item.get("error")
    raw = json.dumps(item, ensure_ascii=False)
    if error:
        message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
        return BatchAnswer(number, job_id, error=LLMError(f"batch error: {message}", raw=raw))
    if not isinstance(response, dict) or not isinstance(response.get("body"), dict):
        raise BatchFileError(f"{where}: no `response.body` object and no `error`")
    status = response.get("status_code")
    body = response["body"]
    if status != 200:
        detail = body.get("error", {}).get("message", "") if isinstance(body.get("error"), dict) else ""
        return BatchAnswer(number, job_id, error=LLMError(f"HTTP {status}: {detail}".strip(), status=status, raw=raw))
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BatchFileError(f"{where}: `response.body.choices` is empty or not a list")
    message = choices[0].get("message") or {}
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str):
        raise BatchFileError(f"{where}: `choices[0].message.content` is not a string")
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    created = float(body.get("created") or time.time())
    return BatchAnswer(
        number,
        job_id,
        completion=Completion(
            text=text,
            raw=json.dumps(body, ensure_ascii=False),
            model=str(body.get("model") or provider.model),
            provider=provider.name,
            endpoint=endpoint,
            temperature=provider.temperature,
            prompt_tokens=int(usage.get("prompt_tokens", 0) or 0),
            completion_tokens=int(usage.get("completion_tokens", 0) or 0),
            started_at=created,
            finished_at=created,
            retries=0,
        ),
    )


@dataclass
class _ReplayEndpoint:
    public_url: str


class BatchReplayClient:
    """Stands in for `ChatClient` in a job handler: `complete()` returns the batch's answer
    for the job named in the request headers, or raises its error."""

    def __init__(self, provider: ProviderConfig, path: Path, answers: Sequence[BatchAnswer]):
        self.provider = provider
        self.endpoint = _ReplayEndpoint(f"batch:{Path(path).name}")
        self.disabled_reason: str | None = None
        self._answers = {a.job_id: a for a in answers}

    async def complete(self, messages: Sequence[Mapping[str, str]], *, extra_headers: Mapping[str, str] | None = None) -> Completion:
        job_id = int((extra_headers or {})[JOB_HEADER])
        answer = self._answers[job_id]
        if answer.error is not None:
            raise answer.error
        assert answer.completion is not None
        return answer.completion

    async def aclose(self) -> None:
        return None


@dataclass
class ImportedBatch:
    """What one import did, per outcome."""

    lines: int = 0
    done: int = 0
    retry: int = 0
    failed: int = 0
    # Jobs the batch no longer holds (imported before, or taken over after the lease ran out).
    stale: list[int] = field(default_factory=list)
    # Jobs that belong to another provider than the one named on the command line.
    other_provider: list[int] = field(default_factory=list)


def import_batch(
    db: JobDB,
    kind: str,
    provider: ProviderConfig,
    path: Path,
    handle_for: Callable[[BatchReplayClient], Callable[[Claim], Awaitable[str | None]]],
    show_progress: bool = True,
) -> ImportedBatch:
    """Pass every answer of a batch output file through the stage's job handler."""
    from tqdm.auto import tqdm

    answers = read_batch_output(path, kind, provider)
    client = BatchReplayClient(provider, path, answers)
    handle = handle_for(client)
    result = ImportedBatch(lines=len(answers))
    for answer in tqdm(answers, desc=f"import {kind}", unit="answer", disable=not show_progress):
        claim = db.held_claim(answer.job_id)
        if claim is None or claim.kind != kind:
            result.stale.append(answer.job_id)
        elif claim.provider != provider.name:
            result.other_provider.append(answer.job_id)
        else:
            state = asyncio.run(handle(claim))
            if state == DONE:
                result.done += 1
            elif state == FAILED:
                result.failed += 1
            elif state == PENDING:
                result.retry += 1
            else:
                result.stale.append(answer.job_id)
    return result
