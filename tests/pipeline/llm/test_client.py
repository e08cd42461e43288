"""The LLM client against the tests' OpenAI-compatible server: retries, Retry-After, timeouts,
bounded concurrency, token buckets and secret handling."""

from __future__ import annotations

import asyncio
import json
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import pytest

from pipeline.core.config import ConfigError
from pipeline.llm.client import (
    ChatClient,
    LLMError,
    ProviderConfig,
    ProviderUnavailable,
    TokenBucket,
    load_models_file,
    public_url,
    resolve_endpoint,
    retry_after_seconds,
)
from pipeline.testing.llm_server import LLMServer
from tests.generate_fixtures import ALLOW

KEY_ENV = "LM_ACTION_TEST_KEY"
SECRET = "sk-test-do-not-log-4242"
LABELS = ALLOW
REQUEST = {"n": 2, "lang": "en", "domain": "files", "labels": LABELS}
MESSAGES = [{"role": "user", "content": f"Request: {json.dumps(REQUEST)}"}]


@pytest.fixture
def server():
    with LLMServer(api_key=SECRET, timeout_sleep_s=1.5) as s:
        yield s


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


def provider(server: LLMServer, **overrides) -> ProviderConfig:
    values = dict(
        model="gen-a",
        base_url=server.base_url,
        api_key_env=KEY_ENV,
        requests_per_minute=0,
        timeout_s=10.0,
        max_retries=3,
    )
    values.update(overrides)
    return ProviderConfig(**values)


class RecordingSleep:
    """asyncio.sleep that remembers every delay it was asked for."""

    def __init__(self):
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(delay)


async def _complete(config: ProviderConfig, sleep=None, times: int = 1):
    client = ChatClient(resolve_endpoint(config), sleep=sleep or asyncio.sleep)
    try:
        results = await asyncio.gather(*(client.complete(MESSAGES) for _ in range(times)))
        return results[0] if times == 1 else results
    finally:
        await client.aclose()


def test_completion_returns_text_usage_and_provenance(server):
    result = asyncio.run(_complete(provider(server)))
    commands = json.loads(result.text)["commands"]
    assert [c["labels"] for c in commands] == [LABELS, LABELS]
    assert result.prompt_tokens > 0 and result.completion_tokens > 0
    assert result.provider == "gen-a" and result.model == "gen-a"
    assert result.endpoint == server.base_url
    assert json.loads(result.raw)["choices"][0]["message"]["content"] == result.text
    assert result.retries == 0
    assert server.requests[0].authorization == f"Bearer {SECRET}"


def test_rate_limit_waits_for_retry_after_then_succeeds(server):
    server.script("429:1")
    result = asyncio.run(_complete(provider(server)))
    assert [r.status for r in server.requests] == [429, 200]
    assert result.retries == 1
    # The wait honours Retry-After (1 s), longer than the client's first backoff (at most 0.5 s).
    assert server.requests[1].started - server.requests[0].finished >= 0.9


def test_server_errors_are_retried_and_the_retries_recorded(server):
    server.script("500", "500", "500")
    result = asyncio.run(_complete(provider(server)))
    assert [r.status for r in server.requests] == [500, 500, 500, 200]
    assert result.retries == 3


def test_timeouts_are_retried(server):
    server.script("timeout")
    result = asyncio.run(_complete(provider(server, timeout_s=0.5)))
    assert result.retries == 1
    assert json.loads(result.text)["commands"]


def test_gives_up_after_max_retries(server):
    server.script("500", "500", "500")
    with pytest.raises(LLMError) as caught:
        asyncio.run(_complete(provider(server, max_retries=2)))
    assert caught.value.status == 500
    assert caught.value.retries == 2
    assert len(server.requests) == 3
    assert "server error" in caught.value.raw


def test_a_429_pauses_every_request_to_the_provider(server):
    server.script("429:1")

    async def two_requests():
        client = ChatClient(resolve_endpoint(provider(server, concurrency=2)))
        try:
            first = asyncio.create_task(client.complete(MESSAGES))
            while not server.requests:
                await asyncio.sleep(0.01)
            # The second request starts after the first one's 429, with a free concurrency slot.
            return await asyncio.gather(first, client.complete(MESSAGES))
        finally:
            await client.aclose()

    asyncio.run(two_requests())
    rate_limited, *later = server.requests
    assert rate_limited.status == 429 and [r.status for r in later] == [200, 200]
    assert all(r.started - rate_limited.finished >= 0.9 for r in later)


def test_a_retry_after_beyond_the_clients_wait_fails_the_call_and_pauses_up_to_the_cap(server):
    # The `openai` client gives up on a Retry-After over two minutes; the provider's pause is
    # capped at `max_retry_after_s`, so the next call waits that long and goes through.
    server.script("429:600")

    async def twice():
        client = ChatClient(resolve_endpoint(provider(server, max_retry_after_s=1.0)))
        try:
            with pytest.raises(LLMError) as caught:
                await client.complete(MESSAGES)
            return caught.value, await client.complete(MESSAGES)
        finally:
            await client.aclose()

    error, completion = asyncio.run(twice())
    assert error.status == 429 and not error.fatal and error.retries == 0
    assert completion.retries == 0
    refused, answered = server.requests
    assert 0.9 <= answered.started - refused.finished <= 5.0


def test_authentication_error_is_not_retried_and_stops_the_provider(server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-wrong-key-123456")

    async def twice():
        client = ChatClient(resolve_endpoint(provider(server)))
        errors = []
        for _ in range(2):
            try:
                await client.complete(MESSAGES)
            except LLMError as exc:
                errors.append(exc)
        await client.aclose()
        return client, errors

    client, errors = asyncio.run(twice())
    assert [e.status for e in errors] == [401, None]
    assert all(e.fatal for e in errors)
    assert client.disabled_reason and "401" in client.disabled_reason
    assert len(server.requests) == 1
    # The server echoed the key in its error: it is scrubbed before it can be logged or stored.
    assert "Incorrect API key provided: [redacted]" in str(errors[0])
    assert "sk-wrong-key-123456" not in str(errors[0]) + errors[0].raw + client.disabled_reason


def test_concurrency_is_bounded_per_provider(server):
    server.latency_s = 0.1
    asyncio.run(_complete(provider(server, concurrency=3), times=9))
    assert len(server.requests) == 9
    assert 2 <= server.max_in_flight <= 3


def test_requests_per_minute_limit_makes_requests_wait(server):
    # 60 requests/minute with a 10-token bucket: requests 11 and 12 each wait about a second.
    sleep = RecordingSleep()
    asyncio.run(_complete(provider(server, requests_per_minute=60), sleep, times=12))
    assert len(server.requests) == 12
    # No request failed, so every sleep is the limiter's; without a limit there would be none.
    assert sleep.delays and sum(sleep.delays) >= 0.5


def test_tokens_per_minute_limit_charges_each_request_its_estimate(server):
    # 600k tokens/minute: a 100k bucket refilled at 10k/s; three requests of about 35k each
    # (max_tokens plus the prompt) overdraw it, so the third waits about half a second.
    sleep = RecordingSleep()
    config = provider(server, tokens_per_minute=600_000, max_tokens=35_000, concurrency=3)
    asyncio.run(_complete(config, sleep, times=3))
    assert [r.status for r in server.requests] == [200, 200, 200]
    assert 0.4 <= sum(sleep.delays) <= 1.0


def test_token_bucket_paces_takes_at_its_rate():
    now = [0.0]

    async def fake_sleep(delay: float) -> None:
        now[0] += delay

    async def take_five() -> list[float]:
        bucket = TokenBucket(per_minute=60, capacity=1, clock=lambda: now[0], sleep=fake_sleep)
        return [await bucket.take() for _ in range(5)]

    waits = asyncio.run(take_five())
    assert waits[0] == 0.0
    assert waits[1:] == pytest.approx([1.0] * 4)
    assert now[0] == pytest.approx(4.0)


def test_token_bucket_give_back_corrects_an_estimate():
    now = [0.0]

    async def fake_sleep(delay: float) -> None:
        now[0] += delay

    async def run() -> float:
        bucket = TokenBucket(per_minute=600, capacity=100, clock=lambda: now[0], sleep=fake_sleep)
        await bucket.take(100)  # estimated 100 tokens, used 40
        bucket.give_back(60)
        return await bucket.take(60)

    assert asyncio.run(run()) == 0.0


def test_retry_after_header_forms():
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    later = datetime.now(timezone.utc) + timedelta(seconds=30)
    assert 25 <= retry_after_seconds({"retry-after": format_datetime(later, usegmt=True)}) <= 30
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_endpoint_reads_environment_and_never_shows_the_key(monkeypatch):
    config = ProviderConfig(
        model="m", base_url="https://user:pw@api.example.com/v1?key=abc", api_key_env=KEY_ENV
    )
    endpoint = resolve_endpoint(config)
    assert endpoint.api_key == SECRET
    assert SECRET not in repr(endpoint)
    assert endpoint.public_url == "https://api.example.com/v1"
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ProviderUnavailable, match=f"\\${KEY_ENV} is not set"):
        resolve_endpoint(config)


def test_base_url_from_environment_wins(monkeypatch):
    config = ProviderConfig(
        model="m", base_url="http://fallback/v1", base_url_env="LM_ACTION_TEST_URL"
    )
    monkeypatch.delenv("LM_ACTION_TEST_URL", raising=False)
    assert resolve_endpoint(config).base_url == "http://fallback/v1"
    monkeypatch.setenv("LM_ACTION_TEST_URL", "http://127.0.0.1:8000/v1/")
    assert resolve_endpoint(config).base_url == "http://127.0.0.1:8000/v1"
    assert public_url("http://h:8000/v1?x=1#f") == "http://h:8000/v1"


def test_provider_config_refuses_a_key_where_an_env_name_belongs():
    with pytest.raises(ConfigError, match="environment variable"):
        ProviderConfig(model="m", base_url="http://h/v1", api_key_env="sk-live-abcdef")


def test_models_file_in_yaml_or_toml_is_validated(tmp_path):
    yaml_file = tmp_path / "models.yaml"
    yaml_file.write_text(
        "generators:\n"
        "  - model: qwen2.5:7b\n    base_url_env: OLLAMA_BASE_URL\n    concurrency: 2\n"
        "labelers:\n"
        "  - model: gpt-4o\n    name: judge\n    api_key_env: OPENAI_API_KEY\n    temperature: 0\n",
        encoding="utf-8",
    )
    models = load_models_file(yaml_file)
    assert [(p.name, p.concurrency) for p in models.generators] == [("qwen2.5:7b", 2)]
    assert [(p.name, p.model, p.temperature) for p in models.labelers] == [("judge", "gpt-4o", 0.0)]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[generators]]\nmodel = "m"\napi_key = "sk-live-123"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown field.*api_key"):
        load_models_file(bad)
