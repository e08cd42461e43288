"""Labeling results: the labelers' answers and rejections, the verdicts of rows and the
adjudicated labels of disagreements."""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipeline.core.schema import ATTRIBUTE_NAMES
from pipeline.llm.jobs.engine import Transactions
from pipeline.llm.jobs.tables import LABEL, adjudications, labels, rejections, rows


class LabelVerdicts(Transactions):
    """Labeler answers, row verdicts and adjudications."""

    def label_answers(self) -> list[dict[str, Any]]:
        """Every stored labeler answer, ordered by row and labeler."""
        with self._begin() as conn:
            result = conn.execute(sa.select(labels).order_by(labels.c.row_id, labels.c.labeler))
            return [dict(r._mapping) for r in result]

    def set_adjudications(self, records: Sequence[Mapping[str, Any]], adjudicator: str) -> int:
        """Store (or replace) adjudicated labels: `row_id`, the six attributes, optional `note`."""
        if not records:
            return 0
        now = time.time()
        with self._begin() as conn:
            ids = [r["row_id"] for r in records]
            conn.execute(adjudications.delete().where(adjudications.c.row_id.in_(ids)))
            conn.execute(
                adjudications.insert(),
                [
                    {
                        "row_id": r["row_id"],
                        **{name: r[name] for name in ATTRIBUTE_NAMES},
                        "adjudicator": adjudicator,
                        "note": r.get("note", ""),
                        "created_at": now,
                    }
                    for r in records
                ],
            )
        return len(records)

    def adjudications(self) -> dict[str, dict[str, Any]]:
        """Adjudicated labels by row id."""
        with self._begin() as conn:
            return {r.row_id: dict(r._mapping) for r in conn.execute(sa.select(adjudications))}

    @staticmethod
    def answered_conn(conn: Connection) -> set[tuple[str, str]]:
        """(row id, labeler) of every stored labeler answer."""
        return {(r, l) for r, l in conn.execute(sa.select(labels.c.row_id, labels.c.labeler))}

    @staticmethod
    def label_rejections_conn(conn: Connection) -> dict[tuple[str, str], int]:
        """How often each labeler's answer for each row was rejected."""
        result = conn.execute(
            sa.select(rejections.c.row_id, rejections.c.provider, sa.func.count())
            .where(rejections.c.kind == LABEL, rejections.c.row_id.is_not(None))
            .group_by(rejections.c.row_id, rejections.c.provider)
        )
        return {(row_id, provider): int(n) for row_id, provider, n in result}

    def set_verdicts(self, verdicts: Mapping[str, str | None]) -> None:
        """Store the labeling verdict of rows (`agreed`, `disagreed` or None for undecided)."""
        if not verdicts:
            return
        with self._begin() as conn:
            conn.execute(
                rows.update()
                .where(rows.c.id == sa.bindparam("row_id"))
                .values(verdict=sa.bindparam("new_verdict")),
                [{"row_id": k, "new_verdict": v} for k, v in verdicts.items()],
            )
