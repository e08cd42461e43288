"""What a generation run reads: the models file, the job database URL and the corpus the
balancer counts (the bundled corpus, build/generated and the accepted rows not exported yet)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from pipeline.core.config import REPO_ROOT, BuildLayout, bundled_corpus_files
from pipeline.core.schema import CORPUS_COLUMNS, ID, corpus_files, load_corpus
from pipeline.llm.client import ModelsFile, load_models_file
from pipeline.llm.generate.config import GenerateConfig
from pipeline.llm.jobs.engine import database_url
from pipeline.llm.jobs.tables import DISAGREED


def models_path(config: GenerateConfig, override: str | os.PathLike | None = None) -> Path:
    """The models file: the CLI path, else the config's, relative to the cwd or the repo."""
    path = Path(override or config.models_file)
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        return REPO_ROOT / path
    return path


def read_models(path: Path) -> ModelsFile | None:
    """The models file, or None when there is none."""
    return load_models_file(path) if path.is_file() else None


def job_db_url(config: GenerateConfig, layout: BuildLayout, override: str | None = None) -> str:
    """The job database: `--db`, else `$<db_url_env>`, else build/jobs.sqlite."""
    url = override or (os.environ.get(config.db_url_env, "") if config.db_url_env else "")
    return database_url(url, layout.jobs_db)


def load_current_corpus(config: GenerateConfig, layout: BuildLayout) -> pd.DataFrame:
    """The corpus as the balancer sees it: the bundled corpus plus build/generated files."""
    files = bundled_corpus_files(config.seed_dir) + corpus_files(layout.generated)
    if not files:
        return pd.DataFrame(columns=list(CORPUS_COLUMNS))
    return load_corpus(files)


def corpus_with_db_rows(corpus: pd.DataFrame, db_rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """`corpus` plus the accepted DB rows it does not hold yet (not exported, or rejected by
    labelers: those are left out)."""
    known = set(corpus[ID]) if len(corpus) else set()
    extra = [
        {c: r.get(c, "") or "" for c in CORPUS_COLUMNS}
        for r in db_rows
        if r["id"] not in known and r.get("verdict") != DISAGREED
    ]
    if not extra:
        return corpus
    return pd.concat([corpus, pd.DataFrame(extra)], ignore_index=True)
