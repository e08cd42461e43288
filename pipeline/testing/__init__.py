"""Loopback servers that tests and benchmarks share: an OpenAI-compatible LLM (`llm_server`) and a
Hugging Face Hub (`hub_server`). Not used by the pipeline itself."""
