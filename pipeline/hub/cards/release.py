"""What identifies a release on the Hub: its three repo ids, its version and its data hash."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HubRepos:
    """The Hub repo ids of one release."""

    dataset: str
    model: str
    space: str


@dataclass(frozen=True)
class Release:
    """What identifies a release: the pipeline version and the hash of the dataset files."""

    version: str
    data_hash: str

    @property
    def short_hash(self) -> str:
        return self.data_hash[:12]
