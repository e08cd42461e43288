"""One predictor for the seven-output classifier, used by evaluation, the Space and benchmarks.

Backends: `torch` (the safetensors weights) and `onnx` (ONNX Runtime, int8 by default on CPU
when `onnx/model_quantized.onnx` exists). Texts are tokenized once with the Rust tokenizer,
sorted by token count and padded per batch, so a batch of short commands never pays for one long
command elsewhere in the input. On CPU, ONNX batches run on one single-threaded stream per
core: for sequences this short that beats splitting each matrix product across cores.
"""

from __future__ import annotations

import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from pipeline.core.decision import GateResult, Thresholds, gate, most_restrictive
from pipeline.core.host import usable_cores
from pipeline.core.schema import MODEL_OUTPUTS

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
    batch_size: int = 16  # on 2 CPU cores 16 beat 8, 32 and 64 in benchmarks.bench_infer
    max_length: int = 128
    device: str | None = None  # torch only: cuda when available, else cpu
    onnx_file: str | None = None  # default: model_quantized.onnx, else model.onnx
    num_threads: int | None = None  # intra-op threads; None lets the runtime decide
    # onnx only: concurrent single-threaded streams for multi-batch calls (0 = num_threads, else
    # the CPU count; 1 = run batches one after another on the multi-threaded session)
    streams: int = 0
    torch_int8: bool = False  # torch only: dynamic int8 quantization of Linear layers (CPU)
    # onnx int8 only: re-score in fp32 (onnx/model.onnx) every command with an output probability
    # within this distance of its threshold, where int8 rounding can flip a label. 0 = off.
    verify_margin: float = 0.0
    # A command longer than `max_length` tokens is read in overlapping windows of this many
    # tokens, each starting `window_stride` of a window after the previous one, and each of its
    # sentences and clauses is read on its own as well; the gate takes, per output, the most
    # restrictive of them (pipeline.core.decision.most_restrictive). A harmful request padded with
    # benign text is then read once without the padding.
    window_tokens: int = 64
    window_stride: float = 0.5
    # Windows read per command at most; a longer command is not read in full and never allowed.
    max_windows: int = 64

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_length < 2:
            raise ValueError(f"batch_size must be at least 1 and max_length at least 2, got {self.batch_size}, {self.max_length}")
        if self.streams < 0 or (self.num_threads is not None and self.num_threads < 1):
            raise ValueError(f"streams must be at least 0 and num_threads at least 1, got {self.streams}, {self.num_threads}")
        if not 0.0 <= self.verify_margin <= 1.0:
            raise ValueError(f"verify_margin must be in [0, 1], got {self.verify_margin}")
        if not 0.0 < self.window_stride <= 1.0 or self.max_windows < 1 or self.window_tokens < 8:
            raise ValueError(
                "window_stride must be in (0, 1], max_windows at least 1 and window_tokens at least 8, "
                f"got {self.window_stride}, {self.max_windows}, {self.window_tokens}"
            )


@dataclass(frozen=True)
class Scores:
    """Probabilities of many commands, with how each was read."""

    probs: np.ndarray  # (n, 7), in the order of MODEL_OUTPUTS
    windows: np.ndarray  # (n,) windows read per command
    read_in_full: np.ndarray  # (n,) False where a command had more than max_windows windows


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
        self._encoder = _fast_encoder(self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id or 0
        backend = config.backend
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        onnx_path = self._onnx_path()
        if backend == "auto":
            backend = "onnx" if onnx_path is not None and not _cuda_available() else "torch"
        self.backend = backend
        self._verify_session = None
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
        verify = self.config.verify_margin > 0 and path.name != ONNX_FP32
        # With verify, two sessions take turns on the same cores: threads that spin on after a
        # run would slow the other session's run (p95 2-3x in benchmarks.bench_infer), so they stop at its end.
        self._session = _ort_session(path, self.config.num_threads, stop_spinning=verify)
        self._onnx_inputs = {i.name for i in self._session.get_inputs()}
        self._onnx_path = path
        if verify:
            fp32 = path.with_name(ONNX_FP32)
            if not fp32.is_file():
                raise ModelLoadError(f"{fp32}: verify_margin needs the fp32 ONNX file beside {path.name}")
            self._verify_session = _ort_session(fp32, self.config.num_threads, stop_spinning=True)
        self._streams = self.config.streams or self.config.num_threads or usable_cores()
        self._stream_session = None  # made on the first multi-batch call
        self._stream_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self.backend_detail = f"onnxruntime {path.name}" + (
            f", fp32 re-score within {self.config.verify_margin:g} of a threshold" if self._verify_session else ""
        )

    def _streams_ready(self) -> bool:
        """Build the single-threaded session and its workers once; False when streams are off."""
        if self._streams < 2:
            return False
        with self._stream_lock:
            if self._stream_session is None:
                self._stream_session = _ort_session(self._onnx_path, 1)
                self._pool = ThreadPoolExecutor(self._streams, thread_name_prefix="lm-action-onnx")
        return True

    def _encode(self, texts: list[str]) -> tuple[list[tuple[list[int], list[int]]], list[int], list[bool]]:
        """The windows of every text (token ids and token type ids, unpadded), the index of the
        text each window belongs to, and whether each text was read in full.

        A text of at most `max_length` tokens is one window, exactly as the tokenizer encodes it.
        A longer one is cut into windows of `window_tokens` tokens (its special tokens around
        each slice of the content) that overlap by `1 - window_stride`, at most `max_windows`.
        One text at a time: `encode_batch` would start the tokenizer's thread pool, whose
        spinning workers then compete with the model's threads for the same cores."""
        windows: list[tuple[list[int], list[int]]] = []
        owners: list[int] = []
        full: list[bool] = []
        for index, text in enumerate(texts):
            encoding = self._encoder.encode(text)
            if len(encoding.ids) <= self.max_length:
                windows.append((encoding.ids, encoding.type_ids))
                owners.append(index)
                full.append(True)
                continue
            mask = encoding.special_tokens_mask
            lead = next((i for i, m in enumerate(mask) if not m), len(mask))
            tail = next((i for i, m in enumerate(reversed(mask)) if not m), 0)
            prefix, suffix = encoding.ids[:lead], encoding.ids[len(mask) - tail :]
            content = encoding.ids[lead : len(mask) - tail]
            width = max(1, min(self.config.window_tokens, self.max_length) - len(prefix) - len(suffix))
            stride = max(1, int(width * self.config.window_stride))
            starts = list(range(0, len(content) - width, stride)) + [len(content) - width]
            pieces = [prefix + content[s : s + width] + suffix for s in starts]
            for segment in clauses(text):
                ids = self._encoder.encode(segment).ids
                if len(ids) <= self.max_length:
                    pieces.append(ids)
            full.append(len(pieces) <= self.config.max_windows)
            for ids in pieces[: self.config.max_windows]:
                windows.append((ids, [0] * len(ids)))
                owners.append(index)
        return windows, owners, full

    def _batch_arrays(self, encoded: list[tuple[list[int], list[int]]]) -> dict[str, np.ndarray]:
        """Pad one batch to its longest member."""
        width = max(len(ids) for ids, _ in encoded)
        input_ids = np.full((len(encoded), width), self.pad_id, dtype=np.int64)
        token_type_ids = np.zeros((len(encoded), width), dtype=np.int64)
        attention_mask = np.zeros((len(encoded), width), dtype=np.int64)
        for row, (ids, types) in enumerate(encoded):
            input_ids[row, : len(ids)] = ids
            token_type_ids[row, : len(types)] = types
            attention_mask[row, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}

    def _logits(self, arrays: dict[str, np.ndarray], session=None) -> np.ndarray:
        if self.backend == "onnx":
            feed = {k: v for k, v in arrays.items() if k in self._onnx_inputs}
            return (session or self._session).run(None, feed)[0]
        import torch

        names = self.tokenizer.model_input_names  # e.g. no token_type_ids for DistilBERT
        inputs = {k: torch.from_numpy(v).to(self.device) for k, v in arrays.items() if k in names}
        with torch.inference_mode():
            return self._torch_model(**inputs).logits.float().cpu().numpy()

    # -- public API -------------------------------------------------------------------------

    def score(self, texts: Sequence[str], progress: bool = False) -> Scores:
        """Every command read in full (in windows when long), with per-output most restrictive
        window probabilities."""
        texts = [str(t) for t in texts]
        if not texts:
            empty = np.zeros((0, len(MODEL_OUTPUTS)), dtype=np.float32)
            return Scores(empty, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool))
        encoded, owners, full = self._encode(texts)
        owner = np.asarray(owners)
        out = self._predict_encoded(encoded, progress=progress)
        probs = _per_text(out, owner, len(texts))
        if self._verify_session is not None:
            near = (np.abs(probs - self.thresholds.as_array()) < self.config.verify_margin).any(axis=1)
            again = np.flatnonzero(near[owner])
            if again.size:
                out[again] = self._predict_encoded([encoded[i] for i in again], session=self._verify_session)
                probs = _per_text(out, owner, len(texts))
        windows = np.bincount(owner, minlength=len(texts))
        return Scores(probs, windows, np.asarray(full, dtype=bool))

    def predict_proba(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """An (n, 7) array of output probabilities, in the order of `MODEL_OUTPUTS`."""
        return self.score(texts, progress=progress).probs

    def _predict_encoded(self, encoded: list, session=None, progress: bool = False) -> np.ndarray:
        out = np.zeros((len(encoded), len(MODEL_OUTPUTS)), dtype=np.float32)
        order = np.argsort([len(ids) for ids, _ in encoded], kind="stable")
        batches = [order[i : i + self.config.batch_size] for i in range(0, len(order), self.config.batch_size)]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(batches), desc="predict", unit="batch")

        def run(idx: np.ndarray, session=None) -> None:
            logits = self._logits(self._batch_arrays([encoded[i] for i in idx]), session)
            out[idx] = 1.0 / (1.0 + np.exp(-logits))
            if bar is not None:
                bar.update()

        if session is None and self.backend == "onnx" and len(batches) > 1 and self._streams_ready():
            for future in [self._pool.submit(run, idx, self._stream_session) for idx in batches]:
                future.result()
        else:
            for idx in batches:
                run(idx, session)
        if bar is not None:
            bar.close()
        return out

    def windows(self, text: str) -> int:
        """How many windows the model reads `text` in (1 for a command of at most `max_length` tokens)."""
        return len(self._encode([text])[1])

    def gate(self, text: str) -> GateResult:
        """Probabilities, labels, decision and reasons for one command."""
        return self.gate_many([text])[0]

    def gate_many(self, texts: Iterable[str]) -> list[GateResult]:
        scores = self.score(list(texts))
        return [
            gate(p, self.thresholds, windows=int(w), read_in_full=bool(f))
            for p, w, f in zip(scores.probs, scores.windows, scores.read_in_full)
        ]


# Where a long command splits into parts read on their own: sentence ends (Latin and Arabic
# punctuation, line breaks) and the connectors that chain steps.
_CLAUSE_BREAK = re.compile(
    r"(?<=[.!?;:\u061f\u061b\u060c])\s+|\n+|\s+(?=(?:and then|and also|then|after that|also)\s)|\s+(?=(?:\u062b\u0645|\u0648\u0628\u0639\u062f\u064a\u0646)\s)",
    flags=re.IGNORECASE,
)


def clauses(text: str) -> list[str]:
    """The sentences and chained steps of a command, each with at least two words."""
    parts = (p.strip() for p in _CLAUSE_BREAK.split(text))
    return [p for p in parts if len(p.split()) >= 2]


def _per_text(window_probs: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Per text, the most restrictive of its windows' probabilities."""
    if len(owner) == n:
        return window_probs
    return np.stack([most_restrictive(window_probs[owner == i]) for i in range(n)]).astype(np.float32)


def _ort_session(path: Path, threads: int | None, stop_spinning: bool = False):
    """A fully graph-optimized CPU session; `threads` intra-op threads (None: the runtime's choice)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    if stop_spinning:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _fast_encoder(tokenizer):
    """A private copy of the Rust tokenizer that never truncates or pads: the same ids as
    `tokenizer(text)` at a fraction of the cost (windows are cut from it)."""
    from tokenizers import Tokenizer

    encoder = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    encoder.no_padding()
    encoder.no_truncation()
    return encoder


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False
