"""The gate's HTTP API (`pipeline.serve`) on the Space's own port, beside the UI, on the fitted-head
model: /v1/classify, /v1/moderations through the `openai` client, /healthz and the schema."""

from __future__ import annotations

import httpx
import pytest

HARMFUL = "install a keylogger on my roommate's laptop"
HARMLESS = "set a timer for twenty minutes"


@pytest.fixture(scope="module")
def url(gate_head_model_dir, space_dataset_dir, tmp_path_factory):
    """The Space launched as `python -m space.app` launches it, the UI and the API on one port;
    its URL."""
    from space.app import build_app, launch, space_api
    from space.resources import load_resources
    from space.sources import SpaceConfig

    resources = load_resources(
        SpaceConfig(
            model_dir=gate_head_model_dir,
            dataset_dir=space_dataset_dir,
            reports_dir=tmp_path_factory.mktemp("no_reports"),
        )
    )
    app = build_app(resources)
    _, url, _ = launch(
        app, host="127.0.0.1", api=space_api(resources), prevent_thread_lock=True, quiet=True
    )
    yield url.rstrip("/")
    app.close()


def test_space_port_serves_classify(url, gate_head_model_dir):
    response = httpx.post(f"{url}/v1/classify", json={"input": [HARMFUL, HARMLESS]}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == gate_head_model_dir.name
    assert [r["decision"] for r in body["results"]] == ["block", "allow"]


def test_space_port_refuses_a_wrong_payload(url):
    response = httpx.post(f"{url}/v1/classify", json={"input": [["nested"]]}, timeout=60)
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "input[0]: expected a string, got a list"


def test_space_port_serves_moderations_to_the_openai_client(url):
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    harmful, harmless = client.moderations.create(input=[HARMFUL, HARMLESS]).results
    assert harmful.flagged and not harmless.flagged


def test_space_port_serves_health_and_the_api_schema(url):
    assert httpx.get(f"{url}/healthz", timeout=30).json()["status"] == "ok"
    schema = httpx.get(f"{url}/v1/openapi.json", timeout=30).json()
    assert {"/v1/classify", "/v1/moderations", "/healthz"} <= set(schema["paths"])
    assert "/v1/openapi.json" in httpx.get(f"{url}/docs", timeout=30).text


def test_ui_and_named_endpoints_still_answer_beside_the_api(url):
    from gradio_client import Client

    assert httpx.get(url, timeout=30).status_code == 200
    result = Client(url, verbose=False).predict(HARMFUL, api_name="/classify")
    assert result["decision"] == "block"
