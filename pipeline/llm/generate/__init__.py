"""`generate`: grow the corpus with commands written by LLMs, balanced towards a target
distribution, through a resumable job database.

Steps: read the models file (generator endpoints; keys from environment variables), count the
corpus (data/seed + build/generated + accepted rows not exported yet), plan jobs for the cells
short of the target (pipeline.llm.balance), let async workers run them against every provider
(pipeline.llm.client) with each result checked against the schema and the requested labels, then
export the accepted rows to build/generated/generated.csv in the corpus format.

- `config`: `GenerateConfig`, the `[generate]` table (labeling settings included);
- `inputs`: the models file, the job database URL and the corpus the balancer counts;
- `prompts`: the labeling guide, the style hints and the messages of one generation job;
- `checks`: a generator's reply checked against the schema and the request (`parse_commands`),
  the rejection reasons, row ids;
- `plan`: jobs for the cells short of the target, spread over the generators;
- `worker`: `GenerationWorker` and `run_generation`;
- `export`: the accepted rows written in the corpus format, with their provenance;
- `summary`: the end-of-run report.
"""
