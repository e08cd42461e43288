"""`label`: labeler models re-label generated rows through the tests' server; only agreed rows
are exported, every answer is stored, agreement is reported per attribute."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.__main__ import main as cli
from pipeline.core.schema import ATTRIBUTE_NAMES, load_corpus
from pipeline.llm.client import ProviderConfig
from pipeline.llm.generate.export import EXPORT_NAME
from pipeline.llm.jobs.db import JobDB
from pipeline.llm.jobs.engine import database_url
from pipeline.llm.jobs.tables import AGREED, DISAGREED, DONE, LABEL
from pipeline.llm.label import (
    AGREEMENT_REPORT,
    DISAGREEMENTS_CSV,
    cohen_kappa,
    fleiss_kappa,
    parse_label_answers,
    verdicts,
)
from pipeline.testing.llm_server import ATTRIBUTE_FLIP, LLMServer
from tests.generate_fixtures import (  # noqa: F401 (fixtures)
    ALLOW,
    KEY_ENV,
    api_key,
    generate_args,
    seed_dir,
    write_models,
)

LABELERS = """
[[labelers]]
name = "lab-agree"
model = "lab-agree-model"
base_url = "{url}"
requests_per_minute = 0
concurrency = 2

[[labelers]]
name = "lab-picky"
model = "lab-picky-model"
base_url = "{url}"
api_key_env = "{key}"
requests_per_minute = 0
concurrency = 2

[[labelers]]
name = "lab-same"
model = "gen-a"
base_url = "{url}"
requests_per_minute = 0
"""


def picky(text: str, labels: dict[str, str]) -> dict[str, str]:
    """Disagrees on `reversible` for every command whose number is a multiple of 3."""
    number = int(re.search(r"\d+", text).group())
    return (
        {**labels, "reversible": ATTRIBUTE_FLIP[labels["reversible"]]}
        if number % 3 == 0
        else labels
    )


def is_picked(text: str) -> bool:
    return int(re.search(r"\d+", text).group()) % 3 == 0


@pytest.fixture
def server():
    with LLMServer() as s:
        s.labeler_rules["lab-picky-model"] = picky
        yield s


def label_args(build: Path, models: Path) -> list[str]:
    return [
        "label",
        "--models",
        str(models),
        "--build-dir",
        str(build),
        "--no-progress",
        "--set",
        "generate.label_batch_size=5",
        "--set",
        "generate.retry_delay_s=0",
        "--set",
        "generate.poll_seconds=0.05",
    ]


def generate_then_label(tmp_path, seed_dir, server, capsys) -> tuple[Path, str]:
    build = tmp_path / "build"
    models = write_models(
        tmp_path / "models.toml",
        server,
        generators=("gen-a",),
        labelers=LABELERS.format(url=server.base_url, key=KEY_ENV),
    )
    assert cli(generate_args(build, models, seed_dir, 16)) == 0
    assert "waiting for labels" in capsys.readouterr().out
    assert not (build / "generated" / EXPORT_NAME).exists()
    assert cli(label_args(build, models)) == 0
    return build, capsys.readouterr().out


def test_label_keeps_only_agreed_rows_and_reports_agreement(tmp_path, seed_dir, server, capsys):
    build, out = generate_then_label(tmp_path, seed_dir, server, capsys)
    with JobDB(database_url(None, build / "jobs.sqlite")) as db:
        rows = db.accepted_rows()
        answers = db.label_answers()
        assert {j["state"] for j in db.jobs_frame_rows(LABEL)} == {DONE}
    assert rows
    # Every row answered once by each labeler of another model; never by the generator's model.
    assert sorted((a["row_id"], a["labeler"]) for a in answers) == sorted(
        (r["id"], name) for r in rows for name in ("lab-agree", "lab-picky")
    )
    assert all(a["labeler_model"] in ("lab-agree-model", "lab-picky-model") for a in answers)
    expected = {r["id"]: DISAGREED if is_picked(r["text"]) else AGREED for r in rows}
    assert {r["id"]: r["verdict"] for r in rows} == expected
    assert DISAGREED in expected.values() and AGREED in expected.values()

    exported = load_corpus([seed_dir / "tiny.csv", build / "generated" / EXPORT_NAME])
    assert set(exported.loc[exported["source"] == "gen-a", "id"]) == {
        k for k, v in expected.items() if v == AGREED
    }

    report = json.loads((build / "reports" / AGREEMENT_REPORT).read_text())["agreement"]
    assert report["verdicts"] == {
        AGREED: list(expected.values()).count(AGREED),
        DISAGREED: list(expected.values()).count(DISAGREED),
        "adjudicated": 0,
        "unsampled": 0,
        "waiting": 0,
    }
    reversible = report["attributes"]["reversible"]
    picked = sum(is_picked(r["text"]) for r in rows)
    assert reversible["observed_agreement"] == pytest.approx(1 - picked / (2 * len(rows)))
    assert reversible["fleiss_rows"] == len(rows)
    assert reversible["fleiss_kappa"] < 1
    for name in ATTRIBUTE_NAMES:
        kappa = report["attributes"][name]["cohen_kappa"]["lab-agree"]
        assert kappa is None or kappa == pytest.approx(1.0)
    assert report["attributes"]["feasible"]["observed_agreement"] == 1.0

    with (build / "reports" / DISAGREEMENTS_CSV).open(encoding="utf-8") as handle:
        listed = list(csv.DictReader(handle))
    assert {r["id"] for r in listed} == {k for k, v in expected.items() if v == DISAGREED}
    assert {r["attribute"] for r in listed} == {"reversible"}
    assert all(r["lab-picky"] != r["generator"] == r["lab-agree"] for r in listed)
    assert "disagreements to review" in out


def test_malformed_labeler_answers_are_recorded_and_asked_again(tmp_path, seed_dir, server, capsys):
    server.script("bad_json", model="lab-agree-model")
    server.script("wrong_labels", "missing_field", model="lab-picky-model")
    build, _ = generate_then_label(tmp_path, seed_dir, server, capsys)
    with JobDB(database_url(None, build / "jobs.sqlite")) as db:
        reasons = db.rejection_counts(LABEL)
        rows = db.accepted_rows()
        answered = {(a["row_id"], a["labeler"]) for a in db.label_answers()}
        rejected = db.rejection_rows(LABEL)
    assert reasons["bad_json"] == 1 and reasons["bad_value"] == 1 and reasons["missing_answer"] == 1
    assert next(r for r in rejected if r["reason"] == "bad_value")["detail"] == "risk='extreme'"
    assert answered == {(r["id"], name) for r in rows for name in ("lab-agree", "lab-picky")}
    assert all(r["verdict"] in (AGREED, DISAGREED) for r in rows)


def test_label_without_labelers_does_nothing(tmp_path, server, capsys):
    models = write_models(tmp_path / "models.toml", server, generators=("gen-a",))
    assert cli(label_args(tmp_path / "build", models)) == 0
    assert "nothing configured" in capsys.readouterr().out
    assert not (tmp_path / "build").exists()


def test_parse_label_answers_rejects_with_reasons():
    good = {
        "feasible": "yes",
        "legal": "yes",
        "ethical": "yes",
        "within_boundaries": "yes",
        "reversible": "no",
        "risk": "medium",
    }
    reply = {
        "labels": [
            {"id": "gen-a", **good},
            {"id": "gen-a", **good},
            {"id": "gen-zzz", **good},
            {"id": "gen-b", **{**good, "legal": "maybe"}},
            {"id": "gen-c", "feasible": "yes"},
        ]
    }
    parsed = parse_label_answers(json.dumps(reply), ["gen-a", "gen-b", "gen-c", "gen-d"])
    assert [(a.row_id, a.labels) for a in parsed.answers] == [("gen-a", good)]
    assert [(r.reason, r.row_id) for r in parsed.rejections] == [
        ("duplicate", "gen-a"),
        ("unknown_id", None),
        ("bad_value", "gen-b"),
        ("missing_field", "gen-c"),
        ("missing_answer", "gen-d"),
    ]
    assert [r.reason for r in parse_label_answers("{oops", ["gen-a"]).rejections] == ["bad_json"]


def test_verdicts_follow_the_quorum_and_skip_the_generators_model():
    labels = dict(ALLOW)
    rows = [{"id": "r1", "source": "gen-a", **labels}, {"id": "r2", "source": "gen-a", **labels}]
    labelers = [
        ProviderConfig(model="x", name="x"),
        ProviderConfig(model="y", name="y"),
        ProviderConfig(model="gen-a", name="z"),
    ]
    answers = [
        {"row_id": "r1", "labeler": "x", **labels},
        {"row_id": "r1", "labeler": "y", **{**labels, "risk": "high"}},
        {"row_id": "r2", "labeler": "x", **labels},
    ]
    assert verdicts(rows, answers, labelers, ATTRIBUTE_NAMES, quorum=1.0) == {
        "r1": DISAGREED,
        "r2": None,
    }
    assert verdicts(rows, answers, labelers, ATTRIBUTE_NAMES, quorum=0.5) == {
        "r1": AGREED,
        "r2": None,
    }
    assert verdicts(rows, answers, labelers, ["legal"], quorum=1.0) == {"r1": AGREED, "r2": None}


def test_fleiss_kappa_matches_the_published_example():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories.
    counts = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert fleiss_kappa(counts) == pytest.approx(0.210, abs=5e-4)
    assert fleiss_kappa(np.array([[3, 0], [3, 0]])) is None


def test_cohen_kappa_is_undefined_without_variation():
    assert cohen_kappa(["yes", "yes"], ["yes", "yes"], ("no", "yes")) is None
    assert cohen_kappa(
        ["yes", "no", "yes", "no"], ["yes", "no", "yes", "no"], ("no", "yes")
    ) == pytest.approx(1.0)
    assert cohen_kappa(["yes", "no"], ["no", "yes"], ("no", "yes")) == pytest.approx(-1.0)
