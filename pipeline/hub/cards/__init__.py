"""Hub cards: the dataset card, the model card and the Space README.

Each card is a Jinja2 template in `hub_cards/` filled from what the pipeline wrote: the staged
dataset files, `eval.json`, `train.json` and the data reports (`data.json`, `clean.json`,
`dedup.json`, the generation and labeling summaries). Attribute names, values and meanings come
from `pipeline.core.schema`, the policy text from `pipeline.core.decision`. Metadata is built with
`huggingface_hub`'s card data classes (and `datasets`' own `dataset_info` / `configs` writers);
every rendered card is parsed back with `ModelCard` / `DatasetCard` / `SpaceCard` and checked
against the fields the Hub reads (`metadata_problems`).

- `release`: the Hub repo ids and the version and data hash of a release;
- `format`: the templates and the helpers every card shares (shares, docstring paragraphs, the
  policy sentence, figures);
- `checks`: what the Hub accepts in the metadata it reads, `metadata_problems` and `parse_card`;
- `dataset`: the dataset card (its metadata, split, label, domain, source and agreement tables);
- `model`: the model card (`model-index`, the evaluation tables, training and ONNX rows, the usage
  snippet);
- `space`: the Space README and its `app.py`.
"""
