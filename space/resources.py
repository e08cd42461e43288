"""Everything the Space loads once at start-up: the model, the dataset and the About tab's
content."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.host import usable_cores
from pipeline.model.inference import ONNX_DIR, ONNX_FP32, ONNX_INT8, Predictor, PredictorConfig
from space.about import AboutContent, load_about
from space.classifier import CommandClassifier
from space.dataset import DatasetView, load_dataset_view
from space.examples import ModelExamples, model_examples
from space.sources import LoadedFrom, SpaceConfig, SpaceLoadError, resolve_source

log = logging.getLogger(__name__)


def space_predictor_config(model_dir: Path) -> PredictorConfig:
    """How the Space runs the model. With ONNX files: one intra-op thread per model call, and a
    batch file's chunks on one single-threaded stream per core, since under many concurrent
    users a second intra-op thread of a single command only spins against the event loop that
    serves them (`benchmarks/space_load.py` measures it). The torch backend keeps its own
    threads."""
    onnx = model_dir / ONNX_DIR
    if not any((onnx / name).is_file() for name in (ONNX_INT8, ONNX_FP32)):
        return PredictorConfig()
    return PredictorConfig(num_threads=1, streams=usable_cores())


@dataclass
class SpaceResources:
    """Everything the Space loads once at start-up."""

    classifier: CommandClassifier
    model_source: LoadedFrom
    dataset: DatasetView
    about: AboutContent
    backend: str
    examples: ModelExamples  # labelled with the loaded model's own decisions


def load_resources(
    config: SpaceConfig, predictor_config: PredictorConfig | None = None
) -> SpaceResources:
    """Load the model (`space_predictor_config` unless `predictor_config` says otherwise),
    the dataset and the About tab's content once, and pick the examples the model decides each
    way."""
    model_source = resolve_source(config.model_id, config.model_revision, "model", config.model_dir)
    if not (model_source.path / "config.json").is_file():
        hint = f" ({model_source.note})" if model_source.note else ""
        raise SpaceLoadError(
            f"no model at {model_source.ref}{hint}: set MODEL_ID to a Hub repo, or run "
            "`make build` to stage build/hub/model"
        )
    predictor = Predictor(model_source.path, predictor_config or space_predictor_config(model_source.path))
    dataset_source = resolve_source(
        config.dataset_id, config.dataset_revision, "dataset", config.dataset_dir
    )
    dataset = load_dataset_view(dataset_source)
    reports = [config.reports_dir, model_source.path / "reports", dataset_source.path / "reports"]
    about = load_about(reports, model_source.path)
    classifier = CommandClassifier(predictor)
    examples = model_examples(dataset, classifier)
    log.info("model %s, dataset %s", model_source.ref, dataset_source.ref)
    return SpaceResources(
        classifier, model_source, dataset, about, predictor.backend_detail, examples
    )

