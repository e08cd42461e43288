"""`GenerateConfig`: the `[generate]` table of a preset (labeling settings included)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.config import ConfigError, setting
from pipeline.core.schema import ATTRIBUTE_NAMES
from pipeline.llm.balance import DEFAULT_PROFILES, BalanceTarget, Profile


@dataclass
class GenerateConfig:
    """The `[generate]` table of a preset (labeling settings included)."""

    models_file: str = setting(
        "configs/generators.toml",
        "TOML/YAML file listing `[[generators]]` and `[[labelers]]` (configs/generators.example.toml)",
    )
    db_url_env: str = setting(
        "LM_ACTION_JOBS_DB", "environment variable holding the job database URL (PostgreSQL); unset: build/jobs.sqlite"
    )
    seed_dir: str = setting("", "folder of the hand-written corpus; empty: data/seed")
    target_rows: int = setting(8000, "the corpus size to reach; runs plan only the rows still missing")
    max_rows_per_run: int = setting(1000, "rows requested by one run at most")
    batch_size: int = setting(10, "commands asked for in one prompt")
    language_shares: dict[str, float] = setting({"en": 0.75, "ar": 0.25}, "target share of each language")
    domain_shares: dict[str, float] = setting({}, "target share of each domain; empty: every domain alike")
    profiles: list[Profile] = setting(list(DEFAULT_PROFILES), "label combinations the corpus should hold, with their relative weights")
    min_words: int = setting(3, "shortest accepted command, in words")
    max_words: int = setting(60, "longest accepted command, in words")
    max_attempts: int = setting(
        4, "attempts per job (a failed call, a response with no valid command, a lost worker)"
    )
    retry_delay_s: float = setting(10.0, "seconds before a failed attempt is tried again")
    lease_seconds: float = setting(120.0, "a running job whose worker sent no heartbeat for this long is taken over")
    poll_seconds: float = setting(2.0, "seconds between checks for retries that are due or jobs held by other workers")
    seed: int = setting(0, "breaks ties between equally short cells when planning")
    label_batch_size: int = setting(20, "`label`: rows per labeler prompt")
    label_quorum: float = setting(
        1.0, "`label`: share of labelers that must agree with the generator's labels on `label_attributes`"
    )
    label_attributes: list[str] = setting(list(ATTRIBUTE_NAMES), "`label`: the attributes the labelers must agree on")
    label_rounds: int = setting(3, "`label`: planning rounds per run")
    label_sample_rows: int = setting(
        0,
        "`label`: rows the labelers label, stratified by decision and language (equal shares, the rest "
        "redistributed); 0: every row. Rows left out keep their generator labels",
    )
    batch_lease_hours: float = setting(
        72.0,
        "hours a Batch API file holds its jobs (the Batch API's window is 24 h); after that live workers may "
        "take them over and the file's late answers are skipped",
    )

    def __post_init__(self) -> None:
        unknown = sorted(set(self.label_attributes) - set(ATTRIBUTE_NAMES))
        if unknown:
            raise ConfigError(
                f"generate.label_attributes: unknown attribute(s) {', '.join(unknown)}"
            )
        if not 0 < self.label_quorum <= 1:
            raise ConfigError("generate.label_quorum must be in (0, 1]")
        if self.min_words < 1 or self.max_words < self.min_words:
            raise ConfigError("generate.min_words/max_words must satisfy 1 <= min <= max")
        if self.max_attempts < 1 or self.batch_size < 1 or self.label_batch_size < 1:
            raise ConfigError("generate.max_attempts, batch_size and label_batch_size must be >= 1")

    def target(self) -> BalanceTarget:
        return BalanceTarget(
            total_rows=self.target_rows,
            profiles=tuple(self.profiles),
            domain_shares=self.domain_shares,
            language_shares=self.language_shares,
        )
