"""`generate` end to end against the tests' OpenAI-compatible server: faults, rejections with
reasons, provenance, export, secrets, kill-and-resume, Ctrl-C, and concurrent workers on SQLite
and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline.__main__ import main as cli
from pipeline.core.config import REPO_ROOT
from pipeline.core.schema import ATTRIBUTE_NAMES, load_corpus
from pipeline.llm.generate.checks import arabic_share, parse_commands, row_id
from pipeline.llm.generate.config import GenerateConfig
from pipeline.llm.generate.export import EXPORT_NAME
from pipeline.llm.generate.prompts import PROMPT_VERSION, generation_messages
from pipeline.llm.generate.summary import SUMMARY_NAME
from pipeline.llm.jobs.db import JobDB
from pipeline.llm.jobs.engine import database_url
from pipeline.llm.jobs.tables import DONE, GENERATE, OK, PENDING, RUNNING
from pipeline.testing.llm_server import LLMServer
from tests.generate_fixtures import (  # noqa: F401 (fixtures)
    ALLOW,
    KEY_ENV,
    SECRET,
    SEED_ROWS,
    api_key,
    generate_args,
    seed_dir,
    write_models,
)
from tests.postgres import postgres_server, postgres_url  # noqa: F401 (fixtures)


@pytest.fixture
def server():
    with LLMServer(timeout_sleep_s=3.0) as s:
        yield s


def jobs_db(build: Path) -> JobDB:
    return JobDB(database_url(None, build / "jobs.sqlite"))


def test_nothing_configured_exits_zero_and_touches_nothing(tmp_path, seed_dir, capsys, monkeypatch):
    build = tmp_path / "build"
    assert cli(generate_args(build, tmp_path / "missing.toml", seed_dir, 10)) == 0
    assert "nothing configured" in capsys.readouterr().out
    models = tmp_path / "models.toml"
    models.write_text(
        f'[[generators]]\nmodel = "m"\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "{KEY_ENV}"\n'
    )
    monkeypatch.delenv(KEY_ENV)
    assert cli(generate_args(build, models, seed_dir, 10)) == 0
    out = capsys.readouterr().out
    assert "nothing configured" in out and f"${KEY_ENV} is not set" in out
    assert not build.exists()


def test_generate_survives_faults_and_records_every_rejection(
    tmp_path, seed_dir, server, capsys, caplog
):
    server.script(
        "429:1",
        "500",
        "timeout",
        "bad_json",
        "wrong_labels",
        "missing_field",
        "short",
        "wrong_language",
        "fenced",
        "duplicate",
    )
    build = tmp_path / "build"
    models = write_models(tmp_path / "models.toml", server, timeout_s=1.0)
    # Enough attempts that a job hit by several whole-reply faults in a row still finishes.
    assert cli(generate_args(build, models, seed_dir, 24, "--set", "generate.max_attempts=12")) == 0
    out = capsys.readouterr().out

    with jobs_db(build) as db:
        jobs = db.jobs_frame_rows(GENERATE)
        assert {j["state"] for j in jobs} == {DONE}
        reasons = db.rejection_counts(GENERATE)
        for reason in (
            "bad_json",
            "wrong_labels",
            "missing_field",
            "length",
            "wrong_language",
            "duplicate",
        ):
            assert reasons.get(reason, 0) >= 1, reason
        assert all(r["detail"] for r in db.rejection_rows(GENERATE))
        wrong = next(r for r in db.rejection_rows(GENERATE) if r["reason"] == "wrong_labels")
        assert "legal: got" in wrong["detail"]
        rows = db.accepted_rows()
        specs = {j["id"]: json.loads(j["spec"]) for j in jobs}
        for r in rows:
            spec = specs[r["job_id"]]
            assert {a: r[a] for a in ATTRIBUTE_NAMES} == spec["labels"]
            assert (r["lang"], r["domain"]) == (spec["lang"], spec["domain"])
            assert r["id"] == row_id(r["lang"], r["text"])
        ok = [r for r in db.response_rows() if r["outcome"] == OK]
        assert len(ok) == len(jobs)
        for r in ok:
            assert r["endpoint"] == server.base_url and r["prompt_version"].startswith(
                f"{PROMPT_VERSION}+"
            )
            assert r["temperature"] == 0.8 and "choices" in json.loads(r["raw"])
            assert r["model"] in ("gen-a", "gen-b") and r["prompt_tokens"] > 0
        assert any(r["retries"] >= 1 for r in ok)

    exported = build / "generated" / EXPORT_NAME
    corpus = load_corpus([seed_dir / "tiny.csv", exported])
    generated = corpus[corpus["source"] != "seed"]
    assert len(generated) == len(rows)
    assert set(generated["source"]) == {"gen-a", "gen-b"}
    assert generated["id"].str.startswith("gen-").all()

    summary = json.loads((build / "reports" / SUMMARY_NAME).read_text())
    assert summary["jobs"][DONE] == len(jobs) and summary["rows_exported"] == len(rows)
    assert summary["rejections"] == reasons
    assert set(summary["tokens"]) == {"gen-a", "gen-b"}
    assert all(t["total_tokens"] > 0 for t in summary["tokens"].values())
    assert "rejected outputs by reason" in out and "tokens per provider" in out

    assert {r.authorization for r in server.requests if r.model == "gen-a"} == {f"Bearer {SECRET}"}
    for path in build.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in out and SECRET not in caplog.text


def test_rerun_after_completion_plans_nothing_and_keeps_the_export(
    tmp_path, seed_dir, server, capsys
):
    build = tmp_path / "build"
    models = write_models(tmp_path / "models.toml", server)
    args = generate_args(build, models, seed_dir, 12)
    assert cli(args) == 0
    before = (build / "generated" / EXPORT_NAME).read_bytes()
    requests = len(server.requests)
    capsys.readouterr()
    assert cli(args) == 0
    assert "planned this run: 0 jobs" in capsys.readouterr().out
    assert len(server.requests) == requests
    assert (build / "generated" / EXPORT_NAME).read_bytes() == before


def test_balancing_asks_for_missing_languages_first(tmp_path, seed_dir, server):
    build = tmp_path / "build"
    models = write_models(tmp_path / "models.toml", server)
    # Only Arabic allow rows are wanted; the seed holds one in `files`.
    extra = [
        "--set",
        'generate.language_shares={"ar": 1.0}',
        "--set",
        'generate.domain_shares={"files": 1.0, "travel": 1.0}',
        "--set",
        'generate.profiles=[{"feasible": "yes", "legal": "yes", "ethical": "yes", '
        '"within_boundaries": "yes", "reversible": "yes", "risk": "low"}]',
        "--plan-only",
    ]
    assert cli(generate_args(build, models, seed_dir, 6, *extra)) == 0
    with jobs_db(build) as db:
        specs = [json.loads(j["spec"]) for j in db.jobs_frame_rows(GENERATE)]
    asked = Counter()
    for spec in specs:
        assert spec["lang"] == "ar" and spec["labels"] == ALLOW
        asked[spec["domain"]] += spec["n"]
    # Target 12 rows, 6 per cell; the corpus has 6 rows, one of them Arabic allow in `files`.
    # The 6 rows of the run go first to `travel` (deficit 6), then to `files` (deficit 5).
    assert asked == {"travel": 4, "files": 2}
    assert len(server.requests) == 0


def test_parse_commands_rejects_bad_output_with_reasons():
    config = GenerateConfig()
    spec = {"n": 3, "lang": "en", "domain": "files", "labels": ALLOW}

    def reasons(content: str, known=frozenset()) -> list[str]:
        return [r.reason for r in parse_commands(content, spec, "m", config, known).rejections]

    good = {"text": "move my invoices into the Taxes folder", "labels": ALLOW}
    assert reasons("not json at all") == ["bad_json"]
    assert reasons(json.dumps({"items": []})) == ["bad_json"]
    assert reasons(json.dumps({"commands": [{"text": "move the files please now"}]})) == [
        "missing_field"
    ]
    assert reasons(
        json.dumps({"commands": [{**good, "labels": {**ALLOW, "risk": "extreme"}}]})
    ) == ["bad_value"]
    assert reasons(json.dumps({"commands": [{**good, "labels": {**ALLOW, "legal": "no"}}]})) == [
        "wrong_labels"
    ]
    assert reasons(json.dumps({"commands": [{**good, "domain": "travel"}]})) == ["wrong_domain"]
    assert reasons(
        json.dumps({"commands": [{**good, "text": "رتب الملفات في مجلد الفواتير"}]})
    ) == ["wrong_language"]
    assert reasons(json.dumps({"commands": [{**good, "text": "go"}]})) == ["length"]
    assert reasons(json.dumps({"commands": [good, good]})) == ["duplicate"]
    assert reasons(
        json.dumps({"commands": [good]}), frozenset({"move my invoices into the taxes folder"})
    ) == ["duplicate"]
    assert reasons(
        json.dumps(
            {
                "commands": [good]
                + [{**good, "text": f"move invoice {i} to Taxes"} for i in range(3)]
            }
        )
    ) == ["too_many"]
    fenced = parse_commands(
        "```json\n" + json.dumps({"commands": [good]}) + "\n```", spec, "m", config
    )
    assert [r.text for r in fenced.rows] == [good["text"]] and fenced.rejections == []
    upper = parse_commands(
        json.dumps({"commands": [{**good, "labels": {**ALLOW, "legal": "Yes"}}]}), spec, "m", config
    )
    assert upper.rows[0].labels == ALLOW and upper.rows[0].source == "m"


def test_prompt_names_the_target_labels_domain_and_language():
    spec = {
        "n": 7,
        "lang": "ar",
        "domain": "travel",
        "labels": {**ALLOW, "reversible": "no"},
        "variant": 3,
    }
    system, user = generation_messages(spec, "GUIDE TEXT")
    assert "GUIDE TEXT" in system["content"]
    assert (
        "Write 7 different commands in Arabic" in user["content"] and '"travel"' in user["content"]
    )
    assert (
        "- reversible = no  (reversible = yes means: the effects can be undone)" in user["content"]
    )
    assert (
        json.loads(user["content"].split("Request: ", 1)[1].split("\n", 1)[0])["labels"]
        == spec["labels"]
    )
    assert arabic_share("احذف ملفات .tmp من مجلد build") > 0.5


def _subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, KEY_ENV: SECRET, "PYTHONUNBUFFERED": "1"}
    env.update(extra or {})
    return env


def _wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _done_jobs(db_path: Path) -> set[int]:
    if not db_path.exists():
        return set()
    with JobDB(database_url(None, db_path)) as db:
        return {j["id"] for j in db.jobs_frame_rows(GENERATE) if j["state"] == DONE}


@pytest.mark.slow
def test_killed_run_resumes_with_every_job_done_exactly_once(tmp_path, seed_dir, server):
    server.latency_s = 0.25
    build = tmp_path / "build"
    models = write_models(tmp_path / "models.toml", server, generators=("gen-a",), concurrency=2)
    args = generate_args(build, models, seed_dir, 80, "--set", "generate.lease_seconds=600")
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        cwd=REPO_ROOT,
        env=_subprocess_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(lambda: len(_done_jobs(build / "jobs.sqlite")) >= 5, what="5 jobs done")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = time.time()
    done_before = _done_jobs(build / "jobs.sqlite")
    with jobs_db(build) as db:
        counts = db.job_counts(GENERATE)
    assert counts[PENDING] + counts[RUNNING] > 0, "the run finished before it was killed"

    # Resume with a lease far from expiry: the dead worker's jobs are found by its pid.
    assert cli(args) == 0
    with jobs_db(build) as db:
        jobs = db.jobs_frame_rows(GENERATE)
        assert {j["state"] for j in jobs} == {DONE}
        ok_per_job = Counter(r["job_id"] for r in db.response_rows() if r["outcome"] == OK)
        assert all(ok_per_job[j["id"]] == 1 for j in jobs)
        rows = db.accepted_rows()
        assert len(rows) == sum(json.loads(j["spec"])["n"] for j in jobs)
        assert len({r["id"] for r in rows}) == len(rows)
    after_kill = Counter(r.job for r in server.requests if r.started > killed_at)
    assert not any(after_kill[str(job)] for job in done_before), "a finished job was asked again"
    exported = load_corpus([seed_dir / "tiny.csv", build / "generated" / EXPORT_NAME])
    assert len(exported) == len(SEED_ROWS) + len(rows)


@pytest.mark.slow
def test_interrupt_gives_running_jobs_back(tmp_path, seed_dir, server):
    server.latency_s = 0.3
    build = tmp_path / "build"
    models = write_models(tmp_path / "models.toml", server, generators=("gen-a",), concurrency=2)
    args = generate_args(build, models, seed_dir, 60)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        cwd=REPO_ROOT,
        env=_subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell running the suite in the background ignores SIGINT, and the child would inherit
        # that (Python then installs no KeyboardInterrupt handler): give it the default back.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _wait_for(lambda: len(_done_jobs(build / "jobs.sqlite")) >= 2, what="2 jobs done")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "interrupted" in err
    with jobs_db(build) as db:
        counts = db.job_counts(GENERATE)
        assert counts[RUNNING] == 0 and counts[PENDING] > 0
        assert all(
            j["attempts"] == 0 for j in db.jobs_frame_rows(GENERATE) if j["state"] == PENDING
        )
    assert (build / "generated" / EXPORT_NAME).exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_two_workers_share_the_jobs_without_double_work(
    backend, request, tmp_path, seed_dir, server, monkeypatch
):
    server.latency_s = 0.4
    build = tmp_path / "build"
    url = (
        database_url(None, build / "jobs.sqlite")
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    # The database URL comes from the environment, as a PostgreSQL password would.
    env = {"LM_ACTION_JOBS_DB": url}
    monkeypatch.setenv("LM_ACTION_JOBS_DB", url)
    models = write_models(tmp_path / "models.toml", server, generators=("gen-a",), concurrency=2)
    args = generate_args(build, models, seed_dir, 60)
    assert cli([*args, "--plan-only"]) == 0
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "pipeline", *args, "--no-plan"],
            cwd=REPO_ROOT,
            env=_subprocess_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in workers:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    with JobDB(url) as db:
        jobs = db.jobs_frame_rows(GENERATE)
        assert db.dialect == ("sqlite" if backend == "sqlite" else "postgresql")
        assert jobs and {j["state"] for j in jobs} == {DONE}
        assert all(j["attempts"] == 1 for j in jobs)
        responses = db.response_rows()
        assert Counter(r["job_id"] for r in responses) == {j["id"]: 1 for j in jobs}
        assert len({r["worker"] for r in responses}) == 2, "both workers should have taken jobs"
        assert len(db.accepted_rows()) == sum(json.loads(j["spec"])["n"] for j in jobs)
    ok_requests = server.requests_per_job(ok_only=True)
    assert ok_requests == {str(j["id"]): 1 for j in jobs}
