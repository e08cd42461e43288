"""The staged Hub folders as `publish` checks them: their files with SHA-256 hashes, the data hash
of a release, and the manifest `stage` writes (`build/reports/stage.json`)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pipeline.core.io import StageInputError
from pipeline.hub.cards.release import HubRepos, Release

DATA_DIR = "data"
CARD = "README.md"
MANIFEST = "stage.json"
SKIPPED_PARTS = (".git", ".cache", "__pycache__")  # never part of a Hub folder
HASH_CHUNK = 1 << 20
CARD_DATA_HASH = re.compile(r"^\| trained on data hash \| `([0-9a-f]{64})` \|", re.MULTILINE)  # the model card's row


@dataclass
class StagedFolder:
    """One Hub folder as staged: its files with their SHA-256."""

    path: Path
    files: dict[str, str]  # posix path inside the folder -> sha256

    @property
    def size_bytes(self) -> int:
        return sum((self.path / f).stat().st_size for f in self.files)


@dataclass
class StageResult:
    """What `stage` wrote."""

    release: Release
    repos: HubRepos
    folders: dict[str, StagedFolder]  # "dataset", "model", "space"
    onnx: dict | None = None
    requirements: dict[str, str] = field(default_factory=dict)

    def manifest(self) -> dict:
        """The content of `build/reports/stage.json`."""
        return {
            "version": self.release.version,
            "data_hash": self.release.data_hash,
            "repos": {"dataset": self.repos.dataset, "model": self.repos.model, "space": self.repos.space},
            "folders": {k: {"path": str(f.path), "files": f.files} for k, f in self.folders.items()},
            "onnx": self.onnx,
            "space_requirements": self.requirements,
        }


def staged_files(folder: Path) -> list[str]:
    """Every file of a Hub folder, as sorted posix paths relative to it (what gets uploaded)."""
    folder = Path(folder)
    out = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if path.is_file() and not any(part in SKIPPED_PARTS for part in rel.parts):
            out.append(rel.as_posix())
    return sorted(out)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def human_size(n: float) -> str:
    """Bytes in decimal units, as the Hub shows file sizes."""
    for unit in ("B", "kB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def folder_hashes(folder: Path) -> dict[str, str]:
    return {rel: file_sha256(folder / rel) for rel in staged_files(folder)}


def data_hash(dataset_dir: Path) -> str:
    """SHA-256 over the dataset's data files (`data/`): each file's path and content hash, in
    path order. The same files give the same hash on any machine."""
    dataset_dir = Path(dataset_dir)
    files = [f for f in staged_files(dataset_dir) if PurePosixPath(f).parts[0] == DATA_DIR]
    if not files:
        raise StageInputError(f"{dataset_dir / DATA_DIR}: no data files; run `python -m pipeline split` first")
    digest = hashlib.sha256()
    for rel in files:
        digest.update(f"{rel}\t{file_sha256(dataset_dir / rel)}\n".encode())
    return digest.hexdigest()


def model_data_hash(model_dir: Path) -> str | None:
    """The data hash a staged model folder's card records (its `trained on data hash` row, from
    hub_cards/model_card.md), or None when the folder has no card or the card no hash."""
    card = Path(model_dir) / CARD
    if not card.is_file():
        return None
    match = CARD_DATA_HASH.search(card.read_text(encoding="utf-8", errors="replace"))
    return match.group(1) if match else None
