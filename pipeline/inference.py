"""One predictor for the seven-output classifier, used by evaluation, the Space and benchmarks.

Backends: `torch` (the safetensors weights) and `onnx` (ONNX Runtime, int8 by default on CPU
when `onnx/model_quantized.onnx` exists). Texts are sorted by length and padded per batch, so a
batch of short commands never pays for one long command elsewhere in the input.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from pipeline.decision import GateResult, Thresholds, gate
from pipeline.schema import MODEL_OUTPUTS

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")
ONNX_DIR = "onnx"
ONNX_FP32 = "model.onnx"
ONNX_INT8 = "model_quantized.onnx"


class ModelLoadError(RuntimeError):
    """The model folder is missing, incomplete or not a seven-output LM-Action model."""


@dataclass(frozen=True)
class PredictorConfig:
    """How to run the model."""

    backend: str = "auto"  # auto: onnx int8 on CPU when the files exist, else torch
    batch_size: int = 32
    max_length: int = 128
    device: str | None = None  # torch only: cuda when available, else cpu
    onnx_file: str | None = None  # default: model_quantized.onnx, else model.onnx
    num_threads: int | None = None  # intra-op threads; None lets the runtime decide
    torch_int8: bool = False  # torch only: dynamic int8 quantization of Linear layers (CPU)


def _check_labels(id2label: dict, where: str) -> None:
    names = [id2label[i] for i in sorted(id2label, key=int)]
    if names != list(MODEL_OUTPUTS):
        raise ModelLoadError(f"{where}: id2label is {names}, expected {list(MODEL_OUTPUTS)}")


class Predictor:
    """Seven sigmoid probabilities per command, and the gate's decision from them."""

    def __init__(self, model_dir: str | Path, config: PredictorConfig = PredictorConfig()):
        from transformers import AutoConfig, AutoTokenizer

        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise ModelLoadError(f"{self.model_dir}: no config.json; train or stage a model first")
        self.config = config
        self.model_config = AutoConfig.from_pretrained(self.model_dir)
        _check_labels(self.model_config.id2label, str(self.model_dir))
        self.thresholds = Thresholds.from_config(self.model_config)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, use_fast=True)
        self.max_length = min(config.max_length, getattr(self.model_config, "max_position_embeddings", 512))
        backend = config.backend
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        onnx_path = self._onnx_path()
        if backend == "auto":
            backend = "onnx" if onnx_path is not None and not _cuda_available() else "torch"
        self.backend = backend
        if backend == "onnx":
            if onnx_path is None:
                raise ModelLoadError(f"{self.model_dir}: no ONNX files under {ONNX_DIR}/")
            self._init_onnx(onnx_path)
        else:
            self._init_torch()
        log.info("loaded %s with backend %s (%s)", self.model_dir, self.backend, self.backend_detail)

    # -- backends ---------------------------------------------------------------------------

    def _onnx_path(self) -> Path | None:
        folder = self.model_dir / ONNX_DIR
        names = [self.config.onnx_file] if self.config.onnx_file else [ONNX_INT8, ONNX_FP32]
        for name in names:
            if (folder / name).is_file():
                return folder / name
        return None

    def _init_torch(self) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification

        self.device = self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.config.num_threads:
            torch.set_num_threads(self.config.num_threads)
        model = AutoModelForSequenceClassification.from_pretrained(self.model_dir).eval()
        if self.config.torch_int8:
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            self.device = "cpu"
        self._torch_model = model.to(self.device)
        self.backend_detail = f"torch {self.device}" + (" int8" if self.config.torch_int8 else "")

    def _init_onnx(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.config.num_threads:
            options.intra_op_num_threads = self.config.num_threads
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._onnx_inputs = {i.name for i in self._session.get_inputs()}
        self.backend_detail = f"onnxruntime {path.name}"

    def _logits(self, texts: list[str]) -> np.ndarray:
        if self.backend == "onnx":
            enc = self.tokenizer(
                texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
            )
            feed = {k: v.astype(np.int64) for k, v in enc.items() if k in self._onnx_inputs}
            return self._session.run(None, feed)[0]
        import torch

        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            return self._torch_model(**enc).logits.float().cpu().numpy()

    # -- public API -------------------------------------------------------------------------

    def predict_proba(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """An (n, 7) array of output probabilities, in the order of `MODEL_OUTPUTS`."""
        texts = [str(t) for t in texts]
        out = np.zeros((len(texts), len(MODEL_OUTPUTS)), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort([len(t) for t in texts], kind="stable")
        batches = [order[i : i + self.config.batch_size] for i in range(0, len(order), self.config.batch_size)]
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="predict", unit="batch")
        for idx in batches:
            logits = self._logits([texts[i] for i in idx])
            out[idx] = 1.0 / (1.0 + np.exp(-logits))
        return out

    def truncates(self, text: str) -> bool:
        """Whether `text` is longer than the model reads (it is then cut to `max_length`)."""
        return len(self.tokenizer(text, truncation=False)["input_ids"]) > self.max_length

    def gate(self, text: str) -> GateResult:
        """Probabilities, labels, decision and reasons for one command."""
        return gate(self.predict_proba([text])[0], self.thresholds)

    def gate_many(self, texts: Iterable[str]) -> list[GateResult]:
        probs = self.predict_proba(list(texts))
        return [gate(p, self.thresholds) for p in probs]


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False
