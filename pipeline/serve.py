"""The gate's HTTP API: `POST /v1/classify`, an OpenAI-compatible `POST /v1/moderations` and
`GET /healthz`, around one loaded `pipeline.model.inference.Predictor`.

`create_api(predictor)` builds the FastAPI app (the Space serves the same app on its own port);
`python -m pipeline serve --model-dir DIR --host 127.0.0.1 --port 8000` loads the model once and
serves it with uvicorn. The OpenAPI schema (`/openapi.json`, `/docs`) documents every field.

Input is strict. `input` is one string or a list of 1 to `MAX_COMMANDS` strings of at most
`MAX_COMMAND_CHARS` characters each; anything else (a number, an object, a list holding a
non-string, nested lists, too many or too long commands) is HTTP 422 with a message naming the
bad item, never stringified and classified. A body over `MAX_BODY_BYTES` is HTTP 413. Commands
are cleaned (`clean_command`) before the model reads them, and input with no command in it (no
letters, markup only, a spreadsheet formula) gets a notice and is never allowed.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Annotated, Literal, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, create_model
from pydantic_core import PydanticCustomError

from pipeline import __version__
from pipeline.core.decision import Decision, GateResult, gate
from pipeline.core.schema import ATTRIBUTES, MODEL_OUTPUTS, NO
from pipeline.model.batcher import CoalescingScorer
from pipeline.model.inference import Predictor

log = logging.getLogger(__name__)

# Limits of one request, in the OpenAPI schema and in every refusal.
MAX_COMMANDS = 256
MAX_COMMAND_CHARS = 4_000
# The largest valid request, every character a JSON-escaped surrogate pair (12 bytes), is
# 12.3 MB; a bigger body is refused (413) before it is parsed.
MAX_BODY_BYTES = 16 * 1024 * 1024

# ---------------------------------------------------------------------------------------------
# One command as the model reads it


@dataclass(frozen=True)
class CleanCommand:
    """A command made safe to tokenize: valid Unicode, no control characters, bounded length."""

    text: str
    notices: tuple[str, ...] = ()
    cut: bool = False


_SURROGATES = re.compile("[\ud800-\udfff]")


def clean_command(raw: object, max_chars: int = MAX_COMMAND_CHARS) -> CleanCommand:
    """NFC-normalize, drop control characters and lone surrogates, collapse whitespace and
    keep at most `max_chars` characters. Letters of any script, emoji and bidi marks stay."""
    text = "" if raw is None else str(raw)
    text = _SURROGATES.sub("\ufffd", text)
    text = unicodedata.normalize("NFC", text)
    notices: list[str] = []
    controls = sum(1 for ch in text if unicodedata.category(ch) == "Cc" and not ch.isspace())
    if controls:
        notices.append(f"Removed {controls} control character(s) from the command.")
    text = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text)
    text = " ".join(text.split())
    cut = len(text) > max_chars
    if cut:
        text = text[:max_chars]
    return CleanCommand(text, tuple(notices), cut)


# A spreadsheet formula: `=` first, or `+ - @` first with a function call or a DDE link
# (`cmd|`) in it; OWASP's CSV-injection payloads all have one of these shapes.
_FORMULA = re.compile(r"=|[+\-@](?=.*(?:[A-Za-z_][\w.]*\(|[A-Za-z]\w*\|))")
_MARKUP = re.compile(r"<(script|style)\b.*?(?:</\1\s*>|$)|<[^>]*>|&#?\w+;", re.I | re.S)


def _has_letter(text: str) -> bool:
    return any(unicodedata.category(ch).startswith("L") for ch in text)


def not_a_command(text: str) -> str | None:
    """Why a cleaned `text` holds no command, or None when it may hold one: no letters at all
    (empty, a bare number, emoji or punctuation only), a spreadsheet formula, markup only."""
    if _FORMULA.match(text):
        return "a spreadsheet formula"
    if not _has_letter(text):
        return "no words"
    if not _has_letter(_MARKUP.sub(" ", text)):
        return "markup only"
    return None


@dataclass(frozen=True)
class GatedCommand:
    """One command read by the gate: the cleaned text, the gate's result and what to tell the
    caller about how it was read."""

    text: str
    result: GateResult
    notices: tuple[str, ...]


def gate_commands(
    predictor: Predictor, commands: Sequence[str], lock: AbstractContextManager | CoalescingScorer
) -> list[GatedCommand]:
    """Clean, score (under `lock`, or through a `CoalescingScorer` with the commands of other
    callers waiting at the same time) and gate every command, in order. A long command is read
    in windows; one not read in full, or with no command in it, is at least `confirm`."""
    cleaned = [clean_command(c) for c in commands]
    texts = [c.text for c in cleaned]
    if isinstance(lock, CoalescingScorer):
        scores = lock.score(texts)
    else:
        with lock:
            scores = predictor.score(texts)
    out = []
    for command, probs, windows, full in zip(cleaned, scores.probs, scores.windows, scores.read_in_full):
        full = bool(full) and not command.cut  # NFC can lengthen a text past the limit
        result = gate(probs, predictor.thresholds, windows=int(windows), read_in_full=full)
        notices = list(command.notices)
        if not full:
            notices.append(
                f"Longer than the gate reads in full ({predictor.config.max_windows} parts): the rest "
                "was not read, so the command is not allowed."
            )
        elif windows > 1:
            notices.append(
                f"A long command: read in {int(windows)} overlapping parts and sentence by sentence; "
                "the most cautious reading of each output counts."
            )
        why = not_a_command(command.text)
        if why is not None:
            notices.append(f"No command in the input ({why}): the gate does not allow it.")
            reason = f"not a command ({why}): ask the user what they want done"
            if result.decision is Decision.ALLOW:
                result = replace(result, decision=Decision.CONFIRM, reasons=[reason])
            else:
                result = replace(result, reasons=[*result.reasons, reason])
        out.append(GatedCommand(command.text, result, tuple(notices)))
    return out


# ---------------------------------------------------------------------------------------------
# Request and response models (the OpenAPI schema)


def json_type(value: object) -> str:
    """How a JSON value is named in an error: a number, a list, an object, null."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else type(value).__name__


def _check_input(value: object) -> object:
    """`value` unchanged when it is one command or a list of commands within the limits; else
    one error that names the bad item (pydantic's own union errors name neither)."""
    if isinstance(value, str):
        items = {"input": value}
    elif isinstance(value, list):
        if not value:
            raise PydanticCustomError("input_limit", "input: an empty list; send at least one command")
        if len(value) > MAX_COMMANDS:
            raise PydanticCustomError(
                "input_limit",
                f"input: {len(value):,} commands; the limit is {MAX_COMMANDS} per request",
            )
        items = {f"input[{i}]": item for i, item in enumerate(value)}
    else:
        raise PydanticCustomError(
            "input_type", f"input: expected a string or a list of strings, got {json_type(value)}"
        )
    for where, item in items.items():
        if not isinstance(item, str):
            raise PydanticCustomError(
                "input_type", f"{where}: expected a string, got {json_type(item)}"
            )
        if len(item) > MAX_COMMAND_CHARS:
            raise PydanticCustomError(
                "input_limit",
                f"{where}: {len(item):,} characters; the limit is {MAX_COMMAND_CHARS:,} per command",
            )
    return value


Command = Annotated[StrictStr, Field(max_length=MAX_COMMAND_CHARS)]
Commands = Annotated[
    Command | Annotated[list[Command], Field(min_length=1, max_length=MAX_COMMANDS)],
    BeforeValidator(_check_input),
    Field(
        description=f"One command, or a list of 1 to {MAX_COMMANDS} commands, each at most "
        f"{MAX_COMMAND_CHARS:,} characters. Only strings: anything else is refused (422).",
        examples=["delete every file in my Downloads folder"],
    ),
]
# The error types whose message already names the field.
_INPUT_ERRORS = ("input_type", "input_limit")


class ClassifyRequest(BaseModel):
    """Commands to classify."""

    model_config = ConfigDict(extra="forbid")

    input: Commands


class ModerationRequest(BaseModel):
    """OpenAI's moderation request: text input only; other fields are ignored."""

    input: Commands
    model: str | None = Field(
        None, description="Accepted for compatibility; the served LM-Action model answers."
    )


def _title(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


Labels = create_model(
    "Labels",
    __doc__="The six attribute values, each from its output's tuned threshold.",
    **{a.name: (Literal[a.values], Field(description=a.meaning)) for a in ATTRIBUTES},
)
Probabilities = create_model(
    "Probabilities",
    __doc__="Per attribute, the probability of each of its values (they sum to one).",
    **{
        a.name: (
            create_model(
                f"{_title(a.name)}Probabilities",
                __doc__=f"P({a.name} = value): {a.meaning}.",
                **{v: (float, Field(ge=0.0, le=1.0)) for v in a.values},
            ),
            ...,
        )
        for a in ATTRIBUTES
    },
)


class CommandResult(BaseModel):
    """The gate's reading of one command."""

    text: str = Field(
        description="The command as read: NFC-normalized, control characters removed, "
        "whitespace collapsed."
    )
    decision: Decision = Field(
        description="allow; confirm (ask the user first); cannot_do (explain, do nothing); block."
    )
    reasons: list[str] = Field(description="Why, in words, most important first.")
    labels: Labels
    probabilities: Probabilities
    uncertain_outputs: list[Literal[MODEL_OUTPUTS]] = Field(
        description="Model outputs within the uncertainty margin of their threshold: review."
    )
    windows: int = Field(ge=1, description="Overlapping parts the model read (1 for a short command).")
    read_in_full: bool = Field(
        description="False when part of a long command was not read; it is then never allow."
    )
    notices: list[str] = Field(
        description="How the command was read: characters removed, read in parts, not a command."
    )


class ClassifyResponse(BaseModel):
    """One result per command, in the order given."""

    model: str = Field(description="The model that answered.")
    results: list[CommandResult]


# OpenAI-style category -> (attribute, the values that count as it). Flags follow the labels
# (the tuned thresholds); scores are the probabilities of the same values.
MODERATION_CATEGORIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "illegal": ("legal", (NO,)),
    "unethical": ("ethical", (NO,)),
    "outside_boundaries": ("within_boundaries", (NO,)),
    "infeasible": ("feasible", (NO,)),
    "irreversible": ("reversible", (NO,)),
    "risk_medium_or_high": ("risk", ("medium", "high")),
    "risk_high": ("risk", ("high",)),
}


def _category_doc(name: str) -> str:
    attribute, values = MODERATION_CATEGORIES[name]
    return f"{attribute} is {' or '.join(values)}"


ModerationCategories = create_model(
    "ModerationCategories",
    __doc__="Whether each category applies, from the gate's labels.",
    **{n: (bool, Field(description=_category_doc(n))) for n in MODERATION_CATEGORIES},
)
ModerationCategoryScores = create_model(
    "ModerationCategoryScores",
    __doc__="The probability of each category.",
    **{n: (float, Field(ge=0.0, le=1.0, description=f"P({_category_doc(n)})")) for n in MODERATION_CATEGORIES},
)
ModerationInputTypes = create_model(
    "ModerationInputTypes",
    __doc__="The input types each category was scored on (text only).",
    **{n: (list[Literal["text"]], ...) for n in MODERATION_CATEGORIES},
)


class ModerationResult(BaseModel):
    """One input's moderation, in OpenAI's shape."""

    flagged: bool = Field(description="True when the gate's decision is block.")
    categories: ModerationCategories
    category_scores: ModerationCategoryScores
    category_applied_input_types: ModerationInputTypes


class ModerationResponse(BaseModel):
    """OpenAI's moderation response."""

    id: str
    model: str
    results: list[ModerationResult]


class ErrorBody(BaseModel):
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """A refused request: `error` in OpenAI's shape, `detail` in FastAPI's."""

    error: ErrorBody
    detail: list[ErrorDetail]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    model: str
    backend: str
    max_commands: int = MAX_COMMANDS
    max_command_chars: int = MAX_COMMAND_CHARS


def classify_result(command: GatedCommand) -> CommandResult:
    result = command.result
    return CommandResult(
        text=command.text,
        decision=result.decision,
        reasons=result.reasons,
        labels=result.labels,
        probabilities=result.probabilities,
        uncertain_outputs=result.uncertain_outputs,
        windows=result.windows,
        read_in_full=result.read_in_full,
        notices=list(command.notices),
    )


def moderation_result(command: GatedCommand) -> ModerationResult:
    result = command.result
    categories = {n: result.labels[a] in v for n, (a, v) in MODERATION_CATEGORIES.items()}
    scores = {
        n: min(1.0, sum(result.probabilities[a][value] for value in v))
        for n, (a, v) in MODERATION_CATEGORIES.items()
    }
    return ModerationResult(
        flagged=result.decision is Decision.BLOCK,
        categories=categories,
        category_scores=scores,
        category_applied_input_types={n: ["text"] for n in MODERATION_CATEGORIES},
    )


# ---------------------------------------------------------------------------------------------
# The app


def _describe(error: dict) -> tuple[str, str]:
    """One validation error as (message, the field it is about)."""
    loc = [str(p) for p in error["loc"]]
    if error["type"] == "json_invalid":  # loc is ("body", character offset)
        reason = (error.get("ctx") or {}).get("error", "")
        return f"body: not valid JSON at character {loc[-1]} ({reason})", "body"
    field = ".".join(loc[1:] if loc[:1] == ["body"] else loc) or "body"
    if error["type"] in _INPUT_ERRORS:  # the message names the item already
        return error["msg"], field
    return f"{field}: {error['msg']}", field


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with one readable message (OpenAI's `error.message`) and FastAPI's `detail`; the
    refused input is not echoed back."""
    errors = exc.errors()
    described = [_describe(e) for e in errors]
    body = ErrorResponse(
        error=ErrorBody(
            message="; ".join(m for m, _ in described) or "invalid request",
            param=described[0][1] if described else None,
            code=errors[0]["type"] if errors else None,
        ),
        detail=[{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors],
    )
    return JSONResponse(status_code=422, content=body.model_dump())


REFUSALS = {
    413: {"description": f"The request body is larger than {MAX_BODY_BYTES:,} bytes."},
    422: {"model": ErrorResponse, "description": "The input is not one string or a list of strings within the limits."},
}


def create_api(
    predictor: Predictor,
    model_name: str | None = None,
    lock: AbstractContextManager | CoalescingScorer | None = None,
    openapi_url: str = "/openapi.json",
) -> FastAPI:
    """The gate's HTTP API around a loaded `predictor`. `model_name` is what responses name
    (default: the model folder's name); `lock` serializes model calls (pass the one other users
    of the same predictor hold: any context manager that holds a lock while it is entered, or
    their `CoalescingScorer`); concurrent requests' commands are scored together
    (`pipeline.model.batcher`); the schema is served at `openapi_url` and read by `/docs`."""
    model = model_name or predictor.model_dir.name
    if not isinstance(lock, CoalescingScorer):
        lock = CoalescingScorer(predictor, lock or threading.Lock())
    api = FastAPI(
        title="LM-Action gate",
        version=__version__,
        description=(
            "Classifies the commands given to an AI agent before it acts: allow, confirm, "
            "cannot_do or block, with the six attributes behind the decision. It never executes "
            f"them. Up to {MAX_COMMANDS} commands of {MAX_COMMAND_CHARS:,} characters per request."
        ),
        max_body_size=MAX_BODY_BYTES,
        openapi_url=openapi_url,
    )
    api.add_exception_handler(RequestValidationError, _invalid_request)

    @api.post("/v1/classify", response_model=ClassifyResponse, responses=REFUSALS)
    def classify(request: ClassifyRequest) -> ClassifyResponse:
        """Classify one command or many: per command the decision, reasons, labels,
        probabilities, uncertain outputs, how it was read and notices."""
        commands = [request.input] if isinstance(request.input, str) else request.input
        gated = gate_commands(predictor, commands, lock)
        return ClassifyResponse(model=model, results=[classify_result(g) for g in gated])

    @api.post("/v1/moderations", response_model=ModerationResponse, responses=REFUSALS)
    def moderations(request: ModerationRequest) -> ModerationResponse:
        """OpenAI's Moderations API: `flagged` when the gate blocks the command; categories and
        scores are the gate's outputs."""
        commands = [request.input] if isinstance(request.input, str) else request.input
        gated = gate_commands(predictor, commands, lock)
        return ModerationResponse(
            id=f"modr-{uuid.uuid4().hex}", model=model, results=[moderation_result(g) for g in gated]
        )

    @api.get("/healthz", response_model=Health)
    def healthz() -> Health:
        """The model is loaded and answering."""
        return Health(model=model, backend=predictor.backend_detail)

    return api
