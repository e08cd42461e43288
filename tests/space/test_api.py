"""The named endpoints `classify` and `classify_batch`, called with `gradio_client` against the
Space served on 127.0.0.1."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from pipeline.core.decision import DECISIONS
from pipeline.core.schema import ATTRIBUTE_NAMES


@pytest.fixture(scope="module")
def client(space_url):
    from gradio_client import Client

    return Client(space_url, verbose=False, download_files=True)


def test_named_endpoints_are_listed_with_named_typed_outputs(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/classify", "/classify_batch"} <= set(endpoints)
    returns = {name: endpoints[name]["returns"] for name in ("/classify", "/classify_batch")}
    assert [r["label"] for r in returns["/classify"]] == ["classification"]
    assert [r["label"] for r in returns["/classify_batch"]] == ["summary", "rows", "results_csv"]
    classification = returns["/classify"][0]["type"]
    assert classification["properties"]["decision"] and "uncertain" in classification["required"]
    summary, rows, _ = (r["type"] for r in returns["/classify_batch"])
    assert set(summary["properties"]["counts"]["properties"]) == set(DECISIONS)
    assert rows["items"] == classification
    for r in (*returns["/classify"], *returns["/classify_batch"]):
        assert "Any" not in r["python_type"]["type"] and not r["label"].startswith("value_")


def test_classify_returns_decision_labels_and_probabilities(client):
    result = client.predict("احذف كل الصور القديمة من هاتفي 📸", api_name="/classify")
    assert result["decision"] in DECISIONS
    assert result["reasons"]
    assert list(result["labels"]) == list(ATTRIBUTE_NAMES)
    assert set(result["probabilities"]["risk"]) == {"low", "medium", "high"}
    assert isinstance(result["uncertain"], bool)


def test_classify_empty_input_returns_a_message(client):
    result = client.predict("   ", api_name="/classify")
    assert result["decision"] is None
    assert result["notices"] == ["Type a command to classify it."]


def test_classify_batch_returns_counts_rows_and_csv_with_every_output(client, tmp_path):
    from gradio_client import handle_file

    path = tmp_path / "commands.csv"
    path.write_text(
        "id,text\n1,book a table for two tonight\n2,\n3,حوّل ألفي دولار إلى المالك\n",
        encoding="utf-8",
    )
    summary, rows, csv_path = client.predict(handle_file(str(path)), api_name="/classify_batch")
    assert (summary["file"], summary["commands"], summary["empty"]) == ("commands.csv", 3, 1)
    assert sum(summary["counts"].values()) == 2 and set(summary["counts"]) == set(DECISIONS)
    assert [row["text"] for row in rows] == [
        "book a table for two tonight",
        "",
        "حوّل ألفي دولار إلى المالك",
    ]
    assert rows[1]["decision"] is None
    for row in (rows[0], rows[2]):
        assert row["decision"] in DECISIONS and list(row["labels"]) == list(ATTRIBUTE_NAMES)
        assert summary["counts"][row["decision"]] >= 1
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert Path(csv_path).name == "commands-classified.csv"
    assert frame["id"].tolist() == ["1", "2", "3"]
    assert frame["decision"].tolist() == [rows[0]["decision"], "", rows[2]["decision"]]
    assert (frame.loc[1, "decision"], frame.loc[1, "notes"]) == ("", "empty: not classified")
    for column in [
        *ATTRIBUTE_NAMES,
        "reasons",
        "uncertain",
        "p_feasible_yes",
        "p_risk_high",
        "notes",
    ]:
        assert column in frame.columns


def test_classify_batch_bad_file_is_an_error_with_the_reason(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    path = tmp_path / "commands.csv"
    path.write_text("id,prompt\n1,open my mail\n", encoding="utf-8")
    with pytest.raises(AppError, match=re.escape("no 'text' column (found: id, prompt)")):
        client.predict(handle_file(str(path)), api_name="/classify_batch")


@pytest.mark.parametrize(
    ("payload", "kind"), [(["a", "b"], "a list"), ({"a": 1}, "an object"), (3, "a number")]
)
def test_classify_refuses_a_payload_that_is_not_a_string(client, payload, kind):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=f"command: expected a string, got {kind}"):
        client.predict(payload, api_name="/classify")
