"""Working through generation jobs: what to ask, how to check the answer and what to count
(the loop itself is `pipeline.llm.runner.JobWorker`)."""

from __future__ import annotations

from typing import Awaitable, Callable, Sequence

from pipeline.llm.client import ChatClient, Endpoint
from pipeline.llm.generate.checks import normalize_text, parse_commands
from pipeline.llm.generate.config import GenerateConfig
from pipeline.llm.generate.prompts import generation_messages, labeling_guide, prompt_version
from pipeline.llm.jobs.db import JobDB
from pipeline.llm.jobs.records import Claim, FinishResult
from pipeline.llm.jobs.tables import GENERATE
from pipeline.llm.runner import Checked, JobWorker, WorkStats, run_jobs


class GenerationWorker(JobWorker):
    """Runs generation jobs of one provider: prompt, call, check the commands, store the rows."""

    def __init__(
        self,
        db: JobDB,
        client: ChatClient,
        config: GenerateConfig,
        guide: str,
        known_texts: set[str],
        stats: WorkStats,
    ):
        super().__init__(db, client, config.retry_delay_s, prompt_version(guide), stats)
        self.config = config
        self.guide = guide
        self.known_texts = known_texts

    async def messages(self, claim: Claim) -> tuple[list[dict[str, str]], None]:
        return generation_messages(claim.spec, self.guide, self.client.provider.brief), None

    def check(self, claim: Claim, text: str, asked: None) -> Checked:
        parsed = parse_commands(text, claim.spec, self.client.provider.model, self.config, self.known_texts)
        if not parsed.rows:
            reasons = ", ".join(f"{k} x{v}" for k, v in sorted(parsed.reasons.items())) or "empty"
            return Checked(parsed.rejections, error=f"no valid command ({reasons})")
        return Checked(parsed.rejections, rows=parsed.rows)

    def accepted(self, checked: Checked, result: FinishResult) -> None:
        self.stats.accepted_rows += len(result.rows)
        self.known_texts.update(normalize_text(r.text) for r in checked.rows)


async def run_generation(
    db: JobDB,
    endpoints: Sequence[Endpoint],
    config: GenerateConfig,
    known_texts: set[str],
    worker: str | None = None,
    show_progress: bool = True,
) -> WorkStats:
    """Work through the open generation jobs of `endpoints`' providers."""
    guide = labeling_guide()

    def handler(client: ChatClient, stats: WorkStats) -> Callable[[Claim], Awaitable[str | None]]:
        return GenerationWorker(db, client, config, guide, known_texts, stats).handle

    return await run_jobs(
        db, GENERATE, endpoints, config.lease_seconds, config.poll_seconds, handler, worker, show_progress
    )
