"""The job database on SQLite and on a real PostgreSQL server: states, attempts, leases,
exactly-once results and concurrent workers."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from pipeline.core.config import REPO_ROOT
from pipeline.llm.jobs.db import JobDB
from pipeline.llm.jobs.engine import database_url
from pipeline.llm.jobs.records import GeneratedRow, Rejection, ResponseRecord
from pipeline.llm.jobs.tables import DONE, FAILED, GENERATE, OK, PENDING, RUNNING
from pipeline.llm.jobs.workers import is_dead_local_worker, worker_id
from tests.generate_fixtures import ALLOW
from tests.postgres import postgres_server, postgres_url  # noqa: F401 (fixtures)

LABELS = ALLOW
SPEC = {"n": 2, "lang": "en", "domain": "files", "labels": LABELS, "variant": 0}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return database_url(None, tmp_path / "jobs.sqlite")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def db(db_url):
    with JobDB(db_url) as opened:
        yield opened


def response(outcome: str = OK, raw: str = '{"choices": []}') -> ResponseRecord:
    now = time.time()
    return ResponseRecord(
        "prov",
        "model-x",
        "http://127.0.0.1:1/v1",
        "generate-v1+abc",
        0.7,
        now,
        now,
        outcome,
        prompt_tokens=11,
        completion_tokens=7,
        raw=raw,
    )


def row(i: int, text: str | None = None) -> GeneratedRow:
    return GeneratedRow(
        f"gen-{i:012d}", text or f"command number {i}", "en", "files", LABELS, "model-x"
    )


def test_job_goes_pending_running_done_and_stores_its_results(db):
    db.add(GENERATE, [("prov", SPEC)], max_attempts=3)
    assert db.job_counts(GENERATE)[PENDING] == 1
    claim = db.claim(GENERATE, ["prov"], "w1", lease_s=60)
    assert claim is not None and claim.attempt == 1 and claim.spec == SPEC
    assert db.job_counts(GENERATE)[RUNNING] == 1
    result = db.finish(
        claim,
        response(),
        [row(1), row(2)],
        rejected=[Rejection("wrong_labels", "legal", "x", item=2)],
    )
    assert result.finished and result.rows == ["gen-000000000001", "gen-000000000002"]
    assert db.job_counts(GENERATE) == {PENDING: 0, RUNNING: 0, DONE: 1, FAILED: 0}
    stored = db.response_rows(claim.job_id)
    assert len(stored) == 1
    assert stored[0]["model"] == "model-x" and stored[0]["prompt_version"] == "generate-v1+abc"
    assert stored[0]["temperature"] == 0.7 and stored[0]["raw"] == '{"choices": []}'
    assert [r["id"] for r in db.accepted_rows()] == result.rows
    assert db.rejection_counts(GENERATE) == {"wrong_labels": 1}
    assert db.claim(GENERATE, ["prov"], "w1", lease_s=60) is None


def test_failed_attempts_are_retried_then_the_job_fails_with_its_error(db):
    db.add(GENERATE, [("prov", SPEC)], max_attempts=2)
    first = db.claim(GENERATE, ["prov"], "w1", 60)
    assert db.fail_attempt(first, "HTTP 500: boom", response("error")) == PENDING
    second = db.claim(GENERATE, ["prov"], "w1", 60)
    assert second.attempt == 2
    rejected = [Rejection("bad_json", "Expecting value: line 1 column 1", "oops")]
    assert (
        db.fail_attempt(second, "no valid command (bad_json x1)", response("rejected"), rejected)
        == FAILED
    )
    job = db.jobs_frame_rows(GENERATE)[0]
    assert job["state"] == FAILED and job["attempts"] == 2 and "bad_json" in job["error"]
    assert [r["outcome"] for r in db.response_rows(job["id"])] == ["error", "rejected"]
    assert db.rejection_counts(GENERATE) == {"bad_json": 1}
    assert db.claim(GENERATE, ["prov"], "w1", 60) is None
    assert db.retry_failed(GENERATE) == 1
    assert db.claim(GENERATE, ["prov"], "w1", 60).attempt == 1


def test_retry_delay_holds_a_job_back(db):
    db.add(GENERATE, [("prov", SPEC)], max_attempts=3)
    claim = db.claim(GENERATE, ["prov"], "w1", 60)
    db.fail_attempt(claim, "HTTP 429", retry_delay_s=30)
    assert db.claim(GENERATE, ["prov"], "w1", 60) is None
    assert db.claim(GENERATE, ["prov"], "w1", 60, now=time.time() + 31) is not None


def test_expired_lease_is_taken_over_and_the_stale_worker_cannot_finish(db):
    db.add(GENERATE, [("prov", SPEC)], max_attempts=3)
    start = time.time()
    stale = db.claim(GENERATE, ["prov"], "w-stale", lease_s=5, now=start)
    assert db.claim(GENERATE, ["prov"], "w-new", lease_s=5, now=start + 1) is None
    fresh = db.claim(GENERATE, ["prov"], "w-new", lease_s=60, now=start + 6)
    assert fresh.job_id == stale.job_id and fresh.attempt == 2
    assert not db.finish(stale, response(), [row(1)]).finished
    assert db.accepted_rows() == [] and db.response_rows() == []
    assert db.finish(fresh, response(), [row(2)]).finished
    assert [r["id"] for r in db.accepted_rows()] == ["gen-000000000002"]


def test_heartbeat_keeps_a_lease_alive(db):
    db.add(GENERATE, [("prov", SPEC)], max_attempts=3)
    claim = db.claim(GENERATE, ["prov"], "w1", lease_s=1)
    assert db.heartbeat([claim], lease_s=60) == 1
    assert db.claim(GENERATE, ["prov"], "w2", lease_s=60, now=time.time() + 5) is None


def test_lost_jobs_fail_once_their_attempts_are_used_up(db):
    db.add(GENERATE, [("prov", SPEC)], max_attempts=1)
    start = time.time()
    db.claim(GENERATE, ["prov"], "w-dead", lease_s=1, now=start)
    assert db.claim(GENERATE, ["prov"], "w2", lease_s=60, now=start + 5) is None
    job = db.jobs_frame_rows(GENERATE)[0]
    assert job["state"] == FAILED and "lease expired" in job["error"]


def test_release_gives_a_job_back_without_using_an_attempt(db):
    db.add(GENERATE, [("prov", SPEC)], max_attempts=1)
    claim = db.claim(GENERATE, ["prov"], "w1", 60)
    assert db.release(claim)
    again = db.claim(GENERATE, ["prov"], "w1", 60)
    assert again.attempt == 1


def test_release_worker_gives_back_only_that_workers_jobs(db):
    db.add(GENERATE, [("prov", SPEC), ("prov", SPEC), ("prov", SPEC)], max_attempts=1)
    mine = [db.claim(GENERATE, ["prov"], "w1", 60), db.claim(GENERATE, ["prov"], "w1", 60)]
    theirs = db.claim(GENERATE, ["prov"], "w2", 60)
    assert db.release_worker(GENERATE, "w1") == 2
    counts = db.job_counts(GENERATE)
    assert counts[RUNNING] == 1 and counts[PENDING] == 2
    assert not db.release(mine[0])  # its claim is gone
    again = db.claim(GENERATE, ["prov"], "w3", 60)
    assert again.attempt == 1 and again.job_id in {c.job_id for c in mine}
    assert db.release(theirs)


def test_same_text_from_two_jobs_is_stored_once_and_the_repeat_rejected(db):
    db.add(GENERATE, [("prov", SPEC), ("prov", SPEC)], max_attempts=1)
    a = db.claim(GENERATE, ["prov"], "w1", 60)
    b = db.claim(GENERATE, ["prov"], "w1", 60)
    assert db.finish(a, response(), [row(1), row(2)]).rows == [
        "gen-000000000001",
        "gen-000000000002",
    ]
    result = db.finish(b, response(), [row(2), row(3)])
    assert result.rows == ["gen-000000000003"] and result.duplicates == ["gen-000000000002"]
    assert len(db.accepted_rows()) == 3
    duplicate = db.rejection_rows(GENERATE)[0]
    assert duplicate["reason"] == "duplicate" and duplicate["row_id"] == "gen-000000000002"


def test_jobs_of_a_dead_local_worker_are_put_back(db):
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = f"{worker_id().split(':')[0]}:{finished.stdout.strip()}:deadbeef"
    assert is_dead_local_worker(dead)
    assert not is_dead_local_worker(worker_id())
    assert not is_dead_local_worker("another-host:1:abc")
    db.add(GENERATE, [("prov", SPEC), ("prov", SPEC)], max_attempts=3)
    db.claim(GENERATE, ["prov"], dead, lease_s=600)
    db.claim(GENERATE, ["prov"], worker_id(), lease_s=600)
    assert db.requeue_dead_workers(GENERATE) == 1
    assert db.job_counts(GENERATE)[PENDING] == 1 and db.job_counts(GENERATE)[RUNNING] == 1


CLAIM_LOOP = """
import json, os, sys, time
from pathlib import Path
from pipeline.llm.jobs.db import JobDB
from pipeline.llm.jobs.records import ResponseRecord
from pipeline.llm.jobs.tables import GENERATE, OK
from pipeline.llm.jobs.workers import worker_id
url, barrier, workers = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
taken = []
with JobDB(url) as db:
    me = worker_id()
    (barrier / str(os.getpid())).touch()
    deadline = time.time() + 120
    while len(list(barrier.iterdir())) < workers and time.time() < deadline:
        time.sleep(0.005)
    while (claim := db.claim(GENERATE, ["prov"], me, 60.0)) is not None:
        time.sleep(0.01)  # the LLM call; SQLite's lock is not fair to a worker that never pauses
        now = time.time()
        record = ResponseRecord("prov", "m", "e", "v", 0.0, now, now, OK)
        assert db.finish(claim, record).finished
        taken.append(claim.job_id)
print(json.dumps(taken))
"""


def test_concurrent_worker_processes_never_take_the_same_job(db, db_url, tmp_path):
    jobs, workers = 90, 3
    db.add(GENERATE, [("prov", {**SPEC, "variant": i}) for i in range(jobs)], max_attempts=1)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM_LOOP, db_url, str(barrier), str(workers)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    taken = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        taken.append(json.loads(out))
    every = [job for worker in taken for job in worker]
    assert len(every) == len(set(every)) == jobs
    assert sum(1 for worker in taken if worker) >= 2, "the workers did not overlap"
    assert all(j["attempts"] == 1 and j["state"] == DONE for j in db.jobs_frame_rows(GENERATE))
    assert len(db.response_rows()) == jobs


def test_database_url_forms(tmp_path):
    assert database_url(None, tmp_path / "j.sqlite") == f"sqlite:///{tmp_path / 'j.sqlite'}"
    assert (
        database_url("postgresql://u:pw@db:5432/jobs", tmp_path)
        == "postgresql+psycopg://u:pw@db:5432/jobs"
    )
    assert database_url(str(tmp_path / "x.db"), tmp_path).startswith("sqlite:///")
    assert "pw" not in sa.make_url(
        database_url("postgresql://u:pw@db/jobs", tmp_path)
    ).render_as_string(hide_password=True)
