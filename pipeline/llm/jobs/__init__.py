"""The job database of `generate` and `label`: jobs, LLM responses, accepted rows, rejections
and labeler answers.

SQLite (a file under `build/`) by default, PostgreSQL when a URL is given; one SQLAlchemy Core
code path for both. Workers claim a job by taking a claim token in a short transaction
(`FOR UPDATE SKIP LOCKED` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite) and finish it in one
transaction fenced by that token, so a job's results are stored exactly once even when a worker
dies, its lease runs out and another worker takes the job over.

- `tables`: the tables and the values of their state, kind, outcome and verdict columns;
- `records`: what workers hand in and get back (`Claim`, `ResponseRecord`, `GeneratedRow`,
  `LabelAnswer`, `Rejection`, `FinishResult`);
- `engine`: database URLs, the engine of either dialect and the transactions every part runs in;
- `workers`: worker ids and finding the dead workers of this host;
- `db`: `JobDB`, made of `planning` (adding jobs under the plan lock), `claims` (claiming,
  leases, giving back), `results` (finishing or failing an attempt), `queries` (counts and rows
  for the stages and reports) and `verdicts` (labeler answers, verdicts, adjudications).
"""
