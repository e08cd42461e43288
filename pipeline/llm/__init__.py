"""LLM generation and labeling: the OpenAI-compatible client with its rate limits, the Batch API
files, the job database, the balancing planner and the `generate` and `label` stages."""
