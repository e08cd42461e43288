"""The named endpoints `classify` and `classify_batch`, called with `gradio_client` against the
Space served on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline.decision import DECISIONS
from pipeline.schema import ATTRIBUTE_NAMES


@pytest.fixture(scope="module")
def client(space_url):
    from gradio_client import Client

    return Client(space_url, verbose=False, download_files=True)


def test_named_endpoints_are_listed(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/classify", "/classify_batch"} <= set(endpoints)


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


def test_classify_batch_returns_table_and_csv_with_every_output(client, tmp_path):
    from gradio_client import handle_file

    path = tmp_path / "commands.csv"
    path.write_text(
        "id,text\n1,book a table for two tonight\n2,\n3,حوّل ألفي دولار إلى المالك\n",
        encoding="utf-8",
    )
    summary, table, csv_path = client.predict(handle_file(str(path)), api_name="/classify_batch")
    assert "**3 commands** from `commands.csv`" in summary
    assert "1 empty row(s) not classified" in summary
    text = table["headers"].index("text")
    assert [row[text] for row in table["data"]] == [
        "book a table for two tonight",
        "",
        "حوّل ألفي دولار إلى المالك",
    ]
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert Path(csv_path).name == "commands-classified.csv"
    assert frame["id"].tolist() == ["1", "2", "3"]
    assert frame.loc[[0, 2], "decision"].isin(DECISIONS).all()
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


def test_classify_batch_bad_file_returns_the_reason(client, tmp_path):
    from gradio_client import handle_file

    path = tmp_path / "commands.csv"
    path.write_text("id,prompt\n1,open my mail\n", encoding="utf-8")
    summary, table, csv_path = client.predict(handle_file(str(path)), api_name="/classify_batch")
    assert "no 'text' column (found: id, prompt)" in summary
    assert table["data"] == [] and csv_path is None
