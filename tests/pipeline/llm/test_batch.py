"""Batch API files through `generate` and `label`: the request lines a batch sends, and answers
read back through the same checks, rejections and provenance as live calls. The loopback LLM
server plays the Batch API: it answers every request line of an exported file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.__main__ import main as cli
from pipeline.core.schema import ATTRIBUTE_NAMES, load_corpus
from pipeline.llm.batch import BatchFileError, read_batch_output
from pipeline.llm.client import ProviderConfig
from pipeline.llm.generate.export import EXPORT_NAME
from pipeline.llm.generate.prompts import PROMPT_VERSION
from pipeline.llm.jobs.db import JobDB
from pipeline.llm.jobs.engine import database_url
from pipeline.llm.jobs.tables import ADJUDICATED, DONE, GENERATE, LABEL, OK, PENDING, RUNNING
from pipeline.testing.llm_server import LLMServer
from tests.generate_fixtures import SEED_ROWS, api_key, generate_args, seed_dir  # noqa: F401 (fixtures)


def models_file(path: Path, labelers: bool = False, ar_only: bool = False) -> Path:
    text = '[[generators]]\nname = "writer-a"\nmodel = "writer-a-model"\ntemperature = 0.7\n'
    if ar_only:
        text += 'languages = ["ar"]\nbrief = "You are an Arabic-speaking student."\n'
    if labelers:
        text += '\n[[labelers]]\nname = "blind"\nmodel = "blind-model"\ntemperature = 0.0\n'
    path.write_text(text, encoding="utf-8")
    return path


def jobs_db(build: Path) -> JobDB:
    return JobDB(database_url(None, build / "jobs.sqlite"))


def export(build, models, seed_dir, path, rows=12, *extra):
    args = generate_args(build, models, seed_dir, rows, "--generator", "writer-a", "--export-batch", str(path), *extra)
    assert cli(args) == 0


def test_export_writes_one_request_line_per_job_and_holds_the_jobs(tmp_path, seed_dir):
    build, requests = tmp_path / "build", tmp_path / "requests.jsonl"
    export(build, models_file(tmp_path / "m.toml"), seed_dir, requests)
    lines = [json.loads(x) for x in requests.read_text().splitlines()]
    assert sum(json.loads(x["body"]["messages"][1]["content"].split("Request: ")[1].split("\n")[0])["n"] for x in lines) == 12
    with jobs_db(build) as db:
        jobs = db.jobs_frame_rows(GENERATE)
        assert {j["state"] for j in jobs} == {RUNNING} and len(jobs) == len(lines)
        assert {x["custom_id"] for x in lines} == {f"generate:{j['id']}" for j in jobs}
        # Answers are recorded under the prompt version the batch went out with.
        assert all(json.loads(j["spec"])["batch_prompt_version"].startswith(PROMPT_VERSION + "+") for j in jobs)
        # A live worker finds nothing to claim while the batch holds the jobs.
        assert db.claim(GENERATE, ["writer-a"], "host:1:x", 60) is None
    for x in lines:
        assert x["method"] == "POST" and x["url"] == "/v1/chat/completions"
        assert x["body"]["model"] == "writer-a-model" and x["body"]["temperature"] == 0.7
        assert x["body"]["response_format"] == {"type": "json_object"}


def test_imported_answers_pass_the_same_checks_and_keep_their_provenance(tmp_path, seed_dir):
    build, requests, output = tmp_path / "build", tmp_path / "requests.jsonl", tmp_path / "output.jsonl"
    models = models_file(tmp_path / "m.toml")
    export(build, models, seed_dir, requests, 16)
    with LLMServer() as server:
        server.script("wrong_labels", "500")
        server.run_batch(requests, output)
    import_args = generate_args(build, models, seed_dir, 16, "--generator", "writer-a", "--import-batch", str(output))
    assert cli(import_args) == 0
    with jobs_db(build) as db:
        states = [j["state"] for j in db.jobs_frame_rows(GENERATE)]
        # wrong labels and HTTP 500: the attempt failed, the job is open again for a new batch
        assert states.count(PENDING) == 2 and states.count(DONE) == len(states) - 2
        assert db.rejection_counts(GENERATE).get("wrong_labels", 0) >= 1
        ok = [r for r in db.response_rows() if r["outcome"] == OK]
        assert ok and all(r["endpoint"] == "batch:output.jsonl" for r in ok)
        assert all(r["prompt_version"].startswith(PROMPT_VERSION + "+") for r in db.response_rows())
        rows = db.accepted_rows()
        assert rows and {r["source"] for r in rows} == {"writer-a-model"}
    exported = load_corpus([build / "generated" / EXPORT_NAME])
    assert set(exported["id"]) == {r["id"] for r in rows}
    provenance = [json.loads(x) for x in (build / "generated" / "generated.provenance.jsonl").read_text().splitlines()]
    assert {p["id"] for p in provenance} == set(exported["id"])
    assert all(p["generator"] == "writer-a" and p["endpoint"] == "batch:output.jsonl" for p in provenance)
    by_id = exported.set_index("id")
    assert all(p["cell"]["labels"]["risk"] == by_id.loc[p["id"], "risk"] and p["cell"]["domain"] == by_id.loc[p["id"], "domain"] for p in provenance)
    # The same file again: every job it answered is no longer held, nothing is stored twice.
    assert cli(import_args) == 1
    with jobs_db(build) as db:
        assert len(db.accepted_rows()) == len(rows)


def test_a_bad_output_line_is_named_and_nothing_is_imported(tmp_path, seed_dir):
    build, requests, output = tmp_path / "build", tmp_path / "requests.jsonl", tmp_path / "output.jsonl"
    models = models_file(tmp_path / "m.toml")
    export(build, models, seed_dir, requests)
    with LLMServer() as server:
        server.run_batch(requests, output)
    lines = output.read_text().splitlines()
    lines.insert(1, '{"custom_id": "label:3", "response": {"status_code": 200, "body": {}}}')
    output.write_text("\n".join(lines) + "\n")
    with pytest.raises(BatchFileError, match=r"output.jsonl:2: custom_id 'label:3'"):
        read_batch_output(output, GENERATE, ProviderConfig(model="writer-a-model", name="writer-a"))
    args = generate_args(build, models, seed_dir, 12, "--generator", "writer-a", "--import-batch", str(output))
    with pytest.raises(BatchFileError):
        cli(args)
    with jobs_db(build) as db:
        assert {j["state"] for j in db.jobs_frame_rows(GENERATE)} == {RUNNING}
        assert db.accepted_rows() == []


def test_a_generator_slice_limits_its_prompts_and_its_brief_reaches_them(tmp_path, seed_dir):
    requests = tmp_path / "requests.jsonl"
    export(tmp_path / "build", models_file(tmp_path / "m.toml", ar_only=True), seed_dir, requests, 20)
    lines = [json.loads(x) for x in requests.read_text().splitlines()]
    assert lines
    for x in lines:
        system, user = (m["content"] for m in x["body"]["messages"])
        assert "You are an Arabic-speaking student." in system
        assert json.loads(user.split("Request: ")[1].split("\n")[0])["lang"] == "ar"


def test_label_batches_store_blind_votes_and_adjudications_settle_disagreements(tmp_path, seed_dir):
    build = tmp_path / "build"
    models = models_file(tmp_path / "m.toml", labelers=True)
    requests, output = tmp_path / "gen.requests.jsonl", tmp_path / "gen.output.jsonl"
    export(build, models, seed_dir, requests, 12)
    with LLMServer() as server:
        server.run_batch(requests, output)
        assert cli(generate_args(build, models, seed_dir, 12, "--generator", "writer-a", "--import-batch", str(output))) == 0
        with jobs_db(build) as db:
            rows = db.accepted_rows()
        flipped = sorted(r["id"] for r in rows)[0]
        flipped_text = next(r["text"] for r in rows if r["id"] == flipped)
        server.labeler_rules["blind-model"] = lambda text, truth: {**truth, "risk": "high"} if text == flipped_text else truth
        label_base = ["label", "--models", str(models), "--build-dir", str(build), "--no-progress"]
        label_requests, label_output = tmp_path / "label.requests.jsonl", tmp_path / "label.output.jsonl"
        assert cli(label_base + ["--labeler", "blind", "--export-batch", str(label_requests)]) == 0
        request_lines = [json.loads(x) for x in label_requests.read_text().splitlines()]
        assert request_lines and all(x["custom_id"].startswith("label:") for x in request_lines)
        # Blind: the labeler's prompt shows the commands, never the generator's labels.
        prompt = request_lines[0]["body"]["messages"][1]["content"]
        commands, _ = json.JSONDecoder().raw_decode(prompt.split("Commands: ")[1])
        assert commands and all(set(c) == {"id", "text"} for c in commands)
        server.run_batch(label_requests, label_output)
    assert cli(label_base + ["--labeler", "blind", "--import-batch", str(label_output)]) == 0
    report = json.loads((build / "reports" / "label_agreement.json").read_text())["agreement"]
    assert report["verdicts"]["disagreed"] == 1 and report["verdicts"]["agreed"] == len(rows) - 1
    assert report["attributes"]["risk"]["linear_weighted_kappa"]["blind"] is not None
    assert report["attributes"]["decision"]["pairs"] == len(rows)
    exported = load_corpus([build / "generated" / EXPORT_NAME])
    assert flipped not in set(exported["id"])

    settled = tmp_path / "adjudicated.csv"
    labels = {**next({a: r[a] for a in ATTRIBUTE_NAMES} for r in rows if r["id"] == flipped), "risk": "medium"}
    settled.write_text("id," + ",".join(ATTRIBUTE_NAMES) + ",note\n" + flipped + "," + ",".join(labels[a] for a in ATTRIBUTE_NAMES) + ",both wrong\n")
    assert cli(label_base + ["--adjudications", str(settled)]) == 0
    with jobs_db(build) as db:
        assert {r["id"]: r["verdict"] for r in db.accepted_rows()}[flipped] == ADJUDICATED
    exported = load_corpus([build / "generated" / EXPORT_NAME]).set_index("id")
    assert exported.loc[flipped, "risk"] == "medium"


def test_label_sample_is_stratified_by_decision_and_language():
    from pipeline.llm.label import labeling_sample

    rows = [{"id": f"a{i}", "lang": "en", **{a: "yes" for a in ATTRIBUTE_NAMES[:-1]}, "risk": "low"} for i in range(50)]
    rows += [{"id": f"b{i}", "lang": "ar", **{a: "yes" for a in ATTRIBUTE_NAMES[:-1]}, "risk": "low"} for i in range(6)]
    rows += [{"id": f"c{i}", "lang": "en", **{a: "no" for a in ATTRIBUTE_NAMES[:-1]}, "risk": "high"} for i in range(50)]
    chosen = labeling_sample(rows, 30, seed=0)
    assert len(chosen) == 30
    # The small Arabic stratum is taken whole; the two large ones share the rest equally.
    assert sum(c.startswith("b") for c in chosen) == 6
    assert sum(c.startswith("a") for c in chosen) == 12 and sum(c.startswith("c") for c in chosen) == 12
    assert labeling_sample(rows, 30, seed=0) == chosen


def test_a_second_sampled_pass_asks_only_about_new_rows_and_keeps_the_old_ones(tmp_path, seed_dir):
    build = tmp_path / "build"
    models = models_file(tmp_path / "m.toml", labelers=True)
    label_base = ["label", "--models", str(models), "--build-dir", str(build), "--no-progress", "--set", "generate.label_sample_rows=4"]
    asked_by_pass = []
    with LLMServer() as server:
        for n, rows in enumerate((12, 24)):
            requests, output = tmp_path / f"gen{n}.requests.jsonl", tmp_path / f"gen{n}.output.jsonl"
            export(build, models, seed_dir, requests, rows)
            server.run_batch(requests, output)
            assert cli(generate_args(build, models, seed_dir, rows, "--generator", "writer-a", "--import-batch", str(output))) == 0
            with jobs_db(build) as db:
                before = {r["id"] for r in db.accepted_rows()}
            if n:
                # Verdicts recomputed before the next pass is planned: the new rows wait for it.
                empty = tmp_path / "none.csv"
                empty.write_text("id," + ",".join(ATTRIBUTE_NAMES) + "\n")
                assert cli(label_base + ["--adjudications", str(empty)]) == 0
                with jobs_db(build) as db:
                    assert {r["verdict"] for r in db.accepted_rows() if r["id"] not in asked_by_pass[0][0]} == {None}
            label_requests, label_output = tmp_path / f"label{n}.requests.jsonl", tmp_path / f"label{n}.output.jsonl"
            assert cli(label_base + ["--labeler", "blind", "--export-batch", str(label_requests)]) == 0
            asked = set()
            for line in label_requests.read_text().splitlines():
                prompt = json.loads(line)["body"]["messages"][1]["content"]
                asked |= {c["id"] for c in json.JSONDecoder().raw_decode(prompt.split("Commands: ")[1])[0]}
            asked_by_pass.append((before, asked))
            server.run_batch(label_requests, label_output)
            assert cli(label_base + ["--labeler", "blind", "--import-batch", str(label_output)]) == 0
    (first_rows, first_asked), (all_rows, second_asked) = asked_by_pass
    assert len(first_asked) == 4 and len(second_asked) == 4
    assert not second_asked & first_rows  # the second pass samples the new rows only
    with jobs_db(build) as db:
        verdicts = {r["id"]: r["verdict"] for r in db.accepted_rows()}
    assert {verdicts[i] for i in first_rows - first_asked} == {"unsampled"}
    assert {verdicts[i] for i in first_asked | second_asked} == {"agreed"}
    exported = load_corpus([build / "generated" / EXPORT_NAME])
    assert set(exported["id"]) == all_rows  # nothing left waiting
