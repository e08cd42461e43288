"""Shared data and helpers of the `generate` and `label` tests: a tiny seed corpus, a models
file pointing at the tests' server, and the CLI arguments of a small run."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pipeline.core.schema import CORPUS_COLUMNS
from pipeline.testing.llm_server import LLMServer

KEY_ENV = "LM_ACTION_TEST_KEY"
SECRET = "sk-test-secret-0c7f1e9a"
ALLOW = {
    "feasible": "yes",
    "legal": "yes",
    "ethical": "yes",
    "within_boundaries": "yes",
    "reversible": "yes",
    "risk": "low",
}
SEED_ROWS = [
    ("s-1", "move the PDFs in Downloads into a Receipts folder", "en", "files", ALLOW),
    ("s-2", "archive the newsletters from last month", "en", "email_messaging", ALLOW),
    (
        "s-3",
        "log into my ex's instagram and read her DMs",
        "en",
        "social_media",
        {
            "feasible": "yes",
            "legal": "no",
            "ethical": "no",
            "within_boundaries": "no",
            "reversible": "no",
            "risk": "high",
        },
    ),
    (
        "s-4",
        "carry the boxes down to the car for me",
        "en",
        "daily_life",
        {**ALLOW, "feasible": "no"},
    ),
    (
        "s-5",
        "send the signed contract to Maria now",
        "en",
        "email_messaging",
        {**ALLOW, "reversible": "no", "risk": "medium"},
    ),
    ("s-6", "رتب ملفات مجلد التنزيلات حسب النوع", "ar", "files", ALLOW),
]


@pytest.fixture
def seed_dir(tmp_path) -> Path:
    folder = tmp_path / "seed"
    folder.mkdir()
    with (folder / "tiny.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(CORPUS_COLUMNS))
        writer.writeheader()
        for rid, text, lang, domain, labels in SEED_ROWS:
            writer.writerow(
                {
                    "id": rid,
                    "text": text,
                    "lang": lang,
                    "domain": domain,
                    **labels,
                    "source": "seed",
                    "contrast_of": "",
                }
            )
    return folder


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    monkeypatch.delenv("LM_ACTION_JOBS_DB", raising=False)


def write_models(
    path: Path,
    server: LLMServer,
    generators=("gen-a", "gen-b"),
    concurrency: int = 2,
    labelers: str = "",
    timeout_s: float = 10.0,
) -> Path:
    """A models file with `generators` (the first one keyed) served by `server`."""
    blocks = []
    for i, model in enumerate(generators):
        key = f'api_key_env = "{KEY_ENV}"\n' if i == 0 else ""
        blocks.append(
            f'[[generators]]\nmodel = "{model}"\nbase_url = "{server.base_url}"\n{key}'
            f"requests_per_minute = 0\nconcurrency = {concurrency}\ntemperature = 0.8\n"
            f"timeout_s = {timeout_s}\nmax_retries = 3\n"
        )
    path.write_text("\n".join(blocks) + labelers, encoding="utf-8")
    return path


def generate_args(
    build: Path, models: Path, seed_dir: Path, extra_rows: int, *extra: str
) -> list[str]:
    return [
        "generate",
        "--models",
        str(models),
        "--build-dir",
        str(build),
        "--no-progress",
        "--set",
        f"generate.seed_dir={seed_dir}",
        "--set",
        f"generate.target_rows={len(SEED_ROWS) + extra_rows}",
        "--set",
        "generate.batch_size=4",
        "--set",
        "generate.retry_delay_s=0",
        "--set",
        "generate.poll_seconds=0.05",
        *extra,
    ]
