"""Where the Space's model and dataset come from: the Hub repos named by `MODEL_ID` /
`DATASET_ID` (optional `MODEL_REVISION` / `DATASET_REVISION`), else the local folders
`build/hub/model` and `build/hub/dataset` (`LM_ACTION_MODEL_DIR` / `LM_ACTION_DATASET_DIR`);
reports from `build/reports` (`LM_ACTION_REPORTS_DIR`)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pipeline.core.config import REPO_ROOT, BuildLayout

log = logging.getLogger(__name__)

LAYOUT = BuildLayout(REPO_ROOT / "build")
DEFAULT_MODEL_DIR = LAYOUT.hub_model
DEFAULT_DATASET_DIR = LAYOUT.hub_dataset
DEFAULT_REPORTS_DIR = LAYOUT.reports


class SpaceLoadError(RuntimeError):
    """The model (or a required file) could not be found or loaded at start-up."""


@dataclass(frozen=True)
class SpaceConfig:
    """What the Space loads; `from_env` reads the documented environment variables."""

    model_id: str | None = None  # Hub repo id; None: the local folder
    model_revision: str | None = None
    dataset_id: str | None = None
    dataset_revision: str | None = None
    model_dir: Path = DEFAULT_MODEL_DIR  # local fallback
    dataset_dir: Path = DEFAULT_DATASET_DIR  # local fallback
    reports_dir: Path = DEFAULT_REPORTS_DIR  # data.json, eval.json and plots, when present

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "SpaceConfig":
        env = os.environ if environ is None else environ

        def value(name: str) -> str | None:
            return (env.get(name) or "").strip() or None

        return cls(
            model_id=value("MODEL_ID"),
            model_revision=value("MODEL_REVISION"),
            dataset_id=value("DATASET_ID"),
            dataset_revision=value("DATASET_REVISION"),
            model_dir=Path(value("LM_ACTION_MODEL_DIR") or DEFAULT_MODEL_DIR),
            dataset_dir=Path(value("LM_ACTION_DATASET_DIR") or DEFAULT_DATASET_DIR),
            reports_dir=Path(value("LM_ACTION_REPORTS_DIR") or DEFAULT_REPORTS_DIR),
        )


@dataclass(frozen=True)
class LoadedFrom:
    """Where a model or dataset was loaded from, as the UI states it."""

    kind: str  # "hub" or "local"
    ref: str  # the Hub repo id or the local folder (for logs; the UI names it `shown`)
    revision: str  # the Hub commit, or a note for a local folder
    path: Path
    repo_type: str  # "model" or "dataset"
    note: str = ""  # why the local folder was used although a Hub id was given

    @property
    def url(self) -> str | None:
        if self.kind != "hub":
            return None
        prefix = "datasets/" if self.repo_type == "dataset" else ""
        return f"https://huggingface.co/{prefix}{self.ref}"

    @property
    def shown(self) -> str:
        """How the UI names it: the Hub id, or a local folder by its path inside the repository
        (`build/hub/model`), else by its own name; never a server path."""
        if self.kind == "hub":
            return self.ref
        try:
            return self.path.resolve().relative_to(REPO_ROOT.resolve()).as_posix()
        except ValueError:
            return self.path.name

    def describe(self) -> str:
        """A short Markdown phrase: the id (linked) and revision, or the local build's folder."""
        if self.kind == "hub":
            return f"[`{self.ref}`]({self.url}) @ `{self.revision[:12]}`"
        return f"local `{self.shown}` ({self.revision})"


def _local_revision(path: Path) -> str:
    """A local folder has no Hub revision; its newest file's time tells builds apart."""
    times = [p.stat().st_mtime for p in path.rglob("*") if p.is_file()]
    if not times:
        return "empty"
    stamp = datetime.fromtimestamp(max(times), tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"built {stamp}"


def resolve_source(
    repo_id: str | None, revision: str | None, repo_type: str, local_dir: Path
) -> LoadedFrom:
    """A Hub snapshot of `repo_id` (downloaded, or cached when offline), else `local_dir`."""
    note = ""
    if repo_id:
        import httpx
        from huggingface_hub import snapshot_download

        try:
            path = Path(snapshot_download(repo_id, repo_type=repo_type, revision=revision))
            return LoadedFrom("hub", repo_id, path.name, path, repo_type)
        except (OSError, ValueError, httpx.HTTPError) as exc:
            log.warning("%s %s could not be loaded from the Hub: %s", repo_type, repo_id, exc)
            note = f"`{repo_id}` could not be loaded from the Hub ({_hub_failure(exc)})"
    local_dir = Path(local_dir)
    revision_note = _local_revision(local_dir) if local_dir.is_dir() else "missing"
    return LoadedFrom("local", str(local_dir), revision_note, local_dir, repo_type, note)


def _hub_failure(exc: Exception) -> str:
    """Why a Hub download failed, in words a user can act on (the details go to the log, which
    may hold server paths and URLs)."""
    from huggingface_hub import errors

    if isinstance(exc, errors.RepositoryNotFoundError):
        return "no such repository, or it is private"
    if isinstance(exc, errors.RevisionNotFoundError):
        return "no such revision"
    if isinstance(exc, (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled)):
        return "offline, and not in the local cache"
    return "the Hub did not answer"


