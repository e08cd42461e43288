"""An async chat-completions client for any OpenAI-compatible endpoint (OpenAI, Gemini and other
hosted APIs, vLLM, Ollama, llama.cpp, TGI) through the `openai` package.

Per provider: bounded concurrency, token buckets for requests and tokens per minute, the `openai`
client's own retries (429, 5xx, timeouts, connection errors; Retry-After honoured) and a 429 pause
shared by every request to the provider.
API keys are read from environment variables when a client is built and live only inside the
`openai` client: they are never logged, stored or reported.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

from pipeline.core.config import ConfigError, from_dict, load_preset, setting
from pipeline.core.schema import DOMAINS, LANGUAGES

log = logging.getLogger(__name__)

# A key-less local server still needs some bearer value for the `openai` client.
NO_KEY = "no-key"
# Statuses that mean the provider will refuse every request: stop using it for this run.
FATAL_STATUSES = frozenset({401, 403, 404})
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class ProviderConfig:
    """One model at one OpenAI-compatible endpoint (a table of the models file)."""

    model: str = field(metadata={"help": "the model name the endpoint serves"})
    name: str = setting("", "unique label in jobs and reports; empty: `model`")
    base_url: str = setting(
        "",
        "the endpoint, e.g. https://api.openai.com/v1, https://generativelanguage.googleapis.com/v1beta/openai, "
        "http://127.0.0.1:8000/v1 (vLLM), http://127.0.0.1:11434/v1 (Ollama)",
    )
    base_url_env: str = setting("", "environment variable holding the base URL; when set it wins over `base_url`")
    api_key_env: str = setting("", "environment variable holding the API key; empty for local servers without auth")
    requests_per_minute: float = setting(60.0, "request rate limit; 0: none")
    tokens_per_minute: float = setting(0.0, "token rate limit, prompt and completion; 0: none")
    concurrency: int = setting(4, "requests in flight at once")
    temperature: float = setting(0.9, "sampling temperature")
    weight: float = setting(1.0, "share of generation jobs given to this provider, relative to the others")
    max_tokens: int = setting(2048, "completion tokens asked for at most")
    timeout_s: float = setting(120.0, "seconds one HTTP attempt may take")
    max_retries: int = setting(
        5,
        "retries of one request by the `openai` client (408, 409, 429, 5xx, timeouts, connection errors) "
        "before the job attempt fails",
    )
    max_retry_after_s: float = setting(300.0, "longest pause a 429's Retry-After imposes on every request to this provider")
    json_mode: bool = setting(True, 'ask for `response_format={"type": "json_object"}` (most servers support it)')
    brief: str = setting("", "generators only: the writer's brief (a persona and a style) added to every prompt")
    domains: tuple[str, ...] = setting(
        (), "generators only: the domains it writes (empty: all); cells outside every slice go to all generators"
    )
    languages: tuple[str, ...] = setting((), "generators only: the languages it writes (empty: all)")

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("a provider needs a `model`")
        if not self.name:
            object.__setattr__(self, "name", self.model)
        if self.concurrency < 1:
            raise ConfigError(f"provider {self.name}: concurrency must be at least 1")
        if self.weight < 0 or self.requests_per_minute < 0 or self.tokens_per_minute < 0:
            raise ConfigError(f"provider {self.name}: weight and rate limits must not be negative")
        object.__setattr__(self, "domains", tuple(self.domains))
        object.__setattr__(self, "languages", tuple(self.languages))
        unknown = sorted(set(self.domains) - set(DOMAINS)) + sorted(set(self.languages) - set(LANGUAGES))
        if unknown:
            raise ConfigError(f"provider {self.name}: unknown domain(s) or language(s) {', '.join(unknown)}")
        for env in (self.api_key_env, self.base_url_env):
            if env.startswith(("sk-", "AIza")) or len(env) > 64:
                raise ConfigError(
                    f"provider {self.name}: `api_key_env`/`base_url_env` name an environment "
                    "variable, not a secret value"
                )


    def writes(self, domain: str, lang: str) -> bool:
        """Whether a cell of `domain` and `lang` is in this generator's slice."""
        return (not self.domains or domain in self.domains) and (not self.languages or lang in self.languages)


@dataclass(frozen=True)
class ModelsFile:
    """The models file: generator models and, optionally, labeler models."""

    generators: list[ProviderConfig] = field(default_factory=list)
    labelers: list[ProviderConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        names = [p.name for p in self.generators + self.labelers]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"provider names must be unique; repeated: {', '.join(repeated)}")


def load_models_file(path: str | os.PathLike) -> ModelsFile:
    """Read and validate a TOML/YAML models file with `[[generators]]` and `[[labelers]]`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"models file not found: {path}")
    return from_dict(ModelsFile, load_preset(path), str(path))


@dataclass(frozen=True)
class Endpoint:
    """A provider with its base URL and key resolved from the environment."""

    provider: ProviderConfig
    base_url: str
    api_key: str = field(repr=False)

    @property
    def public_url(self) -> str:
        return public_url(self.base_url)


class ProviderUnavailable(Exception):
    """A provider cannot be used: an environment variable it names is not set."""


def public_url(url: str) -> str:
    """`url` without user info, query or fragment: safe to log and store."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def resolve_endpoint(
    provider: ProviderConfig, environ: Mapping[str, str] | None = None
) -> Endpoint:
    """The provider's endpoint from the environment; `ProviderUnavailable` names what is missing."""
    environ = os.environ if environ is None else environ
    base_url = provider.base_url
    if provider.base_url_env:
        base_url = environ.get(provider.base_url_env, "") or base_url
    if not base_url:
        where = f"${provider.base_url_env}" if provider.base_url_env else "`base_url`"
        raise ProviderUnavailable(f"{provider.name}: no base URL ({where} is not set)")
    api_key = NO_KEY
    if provider.api_key_env:
        api_key = environ.get(provider.api_key_env, "")
        if not api_key:
            raise ProviderUnavailable(f"{provider.name}: ${provider.api_key_env} is not set")
    return Endpoint(provider, base_url.rstrip("/"), api_key)


def available_endpoints(
    providers: Sequence[ProviderConfig], environ: Mapping[str, str] | None = None
) -> tuple[list[Endpoint], list[str]]:
    """The usable endpoints and, for the others, why they cannot be used."""
    usable: list[Endpoint] = []
    missing: list[str] = []
    for provider in providers:
        try:
            usable.append(resolve_endpoint(provider, environ))
        except ProviderUnavailable as exc:
            missing.append(str(exc))
    return usable, missing


# ---------------------------------------------------------------------------------------------
# Rate limiting


class TokenBucket:
    """A token bucket refilled at `per_minute / 60` per second, holding up to `capacity`.

    `take(n)` waits until `n` tokens are there; `give_back(n)` corrects an estimate afterwards
    (negative `n` charges more). A request larger than the bucket waits for a full bucket.
    """

    def __init__(
        self,
        per_minute: float,
        capacity: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ):
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.rate = per_minute / 60.0
        # Ten seconds of quota by default: short bursts pass, a minute's quota never at once.
        self.capacity = capacity if capacity is not None else max(1.0, per_minute / 6.0)
        self.tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def take(self, amount: float = 1.0) -> float:
        """Wait for `amount` tokens and take them; the seconds waited."""
        amount = min(float(amount), self.capacity)
        waited = 0.0
        async with self._lock:
            while True:
                self._refill()
                if self.tokens >= amount:
                    self.tokens -= amount
                    return waited
                delay = (amount - self.tokens) / self.rate
                waited += delay
                await self._sleep(delay)

    def give_back(self, amount: float) -> None:
        self._refill()
        self.tokens = min(self.capacity, self.tokens + amount)


# ---------------------------------------------------------------------------------------------
# Client


@dataclass(frozen=True)
class Completion:
    """One successful chat completion and its provenance."""

    text: str
    raw: str
    model: str
    provider: str
    endpoint: str
    temperature: float
    prompt_tokens: int
    completion_tokens: int
    started_at: float
    finished_at: float
    # Retries the `openai` client made before this answer.
    retries: int


class LLMError(Exception):
    """A request that failed for good (after retries, or at once when not retryable)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        raw: str = "",
        retries: int = 0,
        fatal: bool = False,
        started_at: float = 0.0,
        finished_at: float = 0.0,
    ):
        super().__init__(message)
        self.status = status
        self.raw = raw
        self.retries = retries
        self.fatal = fatal
        self.started_at = started_at
        self.finished_at = finished_at


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds asked by `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# Key-like strings that providers echo in error messages ("Incorrect API key provided: sk-...").
KEY_PATTERN = re.compile(r"\b(?:sk-[A-Za-z0-9_\-*]{6,}|AIza[0-9A-Za-z_\-]{10,})")
REDACTED = "[redacted]"


def scrub(text: str, secret: str = "", patterns: bool = True) -> str:
    """`text` without `secret` and, with `patterns`, without anything that looks like a key."""
    if secret and secret != NO_KEY and len(secret) >= 4:
        text = text.replace(secret, REDACTED)
    return KEY_PATTERN.sub(REDACTED, text) if patterns else text


def _error_body(exc: openai.APIError) -> str:
    body = exc.body
    if body is None:
        return ""
    return body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, default=str)


def chat_request_body(provider: ProviderConfig, messages: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """The chat-completions request a provider gets for `messages` (live calls and batch lines)."""
    body: dict[str, Any] = {
        "model": provider.model,
        "messages": [dict(m) for m in messages],
        "temperature": provider.temperature,
        "max_tokens": provider.max_tokens,
    }
    if provider.json_mode:
        body["response_format"] = {"type": "json_object"}
    return body


def estimate_tokens(messages: Sequence[Mapping[str, str]], max_tokens: int) -> int:
    """Tokens a request may use at most, charged to the token bucket before it is sent."""
    chars = sum(len(m.get("content", "")) for m in messages)
    return math.ceil(chars / CHARS_PER_TOKEN) + max_tokens


def _retries_taken(request: Any) -> int:
    """Retries the `openai` client had made when it sent `request` (it numbers every attempt)."""
    if request is None:
        return 0
    return int(request.headers.get("x-stainless-retry-count", 0))


class ChatClient:
    """Chat completions from one provider with rate limits, bounded concurrency and retries.

    Retries are the `openai` client's own: `max_retries` of them on 408, 409, 429, 5xx, timeouts
    and connection errors, honouring Retry-After up to two minutes. What it lacks is added to
    every attempt it makes through its HTTP client's event hooks: the rate limits, and a pause
    shared by all requests to the provider once one gets a 429 with Retry-After (capped at
    `max_retry_after_s`). A call holds one of the provider's `concurrency` slots from its first
    attempt to its last. A 401, 403 or 404 disables the client for the rest of the run.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ):
        self.endpoint = endpoint
        self.provider = endpoint.provider
        self._sleep = sleep
        import openai  # the client only: training and the configs need no `openai`

        self._client = openai.AsyncOpenAI(
            api_key=endpoint.api_key,
            base_url=endpoint.base_url,
            timeout=self.provider.timeout_s,
            max_retries=self.provider.max_retries,
            http_client=openai.DefaultAsyncHttpxClient(
                event_hooks={"request": [self._before_attempt], "response": [self._after_attempt]}
            ),
        )
        self._semaphore = asyncio.Semaphore(self.provider.concurrency)
        self._requests = (
            TokenBucket(self.provider.requests_per_minute, sleep=sleep)
            if self.provider.requests_per_minute
            else None
        )
        self._tokens = (
            TokenBucket(self.provider.tokens_per_minute, sleep=sleep)
            if self.provider.tokens_per_minute
            else None
        )
        self._paused_until = 0.0
        self.disabled_reason: str | None = None

    async def aclose(self) -> None:
        await self._client.close()

    def _scrub(self, text: str) -> str:
        return scrub(text, self.endpoint.api_key)

    async def _before_attempt(self, request: Any) -> None:
        pause = self._paused_until - time.monotonic()
        if pause > 0:
            await self._sleep(pause)
        if self._requests is not None:
            await self._requests.take(1)
        if self._tokens is not None:
            body = json.loads(request.content or b"{}")
            await self._tokens.take(estimate_tokens(body.get("messages", ()), self.provider.max_tokens))

    async def _after_attempt(self, response: Any) -> None:
        if response.status_code != 429:
            return
        asked = retry_after_seconds(response.headers)
        if asked is not None:
            until = time.monotonic() + min(asked, self.provider.max_retry_after_s)
            self._paused_until = max(self._paused_until, until)

    async def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Completion:
        """One chat completion; raises `LLMError` when it fails for good."""
        provider = self.provider
        if self.disabled_reason:
            raise LLMError(self.disabled_reason, fatal=True)
        kwargs = chat_request_body(provider, messages)
        if extra_headers:
            kwargs["extra_headers"] = dict(extra_headers)
        import openai

        started = time.time()
        try:
            async with self._semaphore:
                response = await self._client.chat.completions.with_raw_response.create(**kwargs)
        except openai.APIStatusError as exc:
            status = exc.status_code
            message = self._scrub(f"HTTP {status}: {exc.message}")
            fatal = status in FATAL_STATUSES
            if fatal:
                self.disabled_reason = f"{provider.name} refused requests ({message})"
            raise LLMError(
                message,
                status=status,
                raw=self._scrub(_error_body(exc)),
                retries=_retries_taken(exc.request),
                fatal=fatal,
                started_at=started,
                finished_at=time.time(),
            ) from exc
        except openai.APITimeoutError as exc:
            raise LLMError(
                f"timed out after {provider.timeout_s:g}s",
                retries=_retries_taken(exc.request),
                started_at=started,
                finished_at=time.time(),
            ) from exc
        except openai.APIConnectionError as exc:
            raise LLMError(
                self._scrub(f"connection error: {exc.message}"),
                retries=_retries_taken(exc.request),
                started_at=started,
                finished_at=time.time(),
            ) from exc
        estimate = estimate_tokens(messages, provider.max_tokens)
        return self._completion(response.parse(), estimate, started, response.retries_taken)

    def _completion(self, response: Any, estimate: int, started: float, retries: int) -> Completion:
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        if self._tokens is not None and usage is not None:
            self._tokens.give_back(estimate - prompt_tokens - completion_tokens)
        choices = getattr(response, "choices", None) or []
        text = (choices[0].message.content or "") if choices else ""
        return Completion(
            text=text,
            raw=scrub(response.model_dump_json(), self.endpoint.api_key, patterns=False),
            model=getattr(response, "model", "") or self.provider.model,
            provider=self.provider.name,
            endpoint=self.endpoint.public_url,
            temperature=self.provider.temperature,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            started_at=started,
            finished_at=time.time(),
            retries=retries,
        )
