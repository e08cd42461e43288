"""ONNX export of the trained classifier: `onnx/model.onnx` (graph-optimized fp32) and
`onnx/model_quantized.onnx` (int8 dynamic quantization) beside the safetensors weights, the
layout Transformers.js and `optimum` read.

Dynamic int8 quantization: weights int8 per output channel, activations quantized per batch at
run time, in the dense layers and the fused attention blocks; the word embeddings stay fp32.
`python -m benchmarks.bench_infer --variants` times the alternatives on the machine at hand; on the
published model and 2 AVX2 cores the default was the fastest, and of the others (all measured in
results/gpu-full/bench_infer.md):

- dense layers only (attention fp32): about 1.3x slower per command, no fewer label flips;
- static int8 with activation ranges calibrated on validation: three times the label flips, as
  fixed per-tensor ranges must cover the rare outlier activations of every command;
- 8-bit weight-only blocks (`MatMulNBits`): as accurate as fp32, but slower than fp32 on AVX2.

The parity check against the torch model on real texts guards the export: a file whose
probabilities or labels differ from torch's beyond `OnnxExportConfig`'s tolerances raises
`OnnxParityError`, and no ONNX file of that export is kept.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from pipeline.core.decision import Thresholds
from pipeline.core.schema import ATTRIBUTE_NAMES, TEXT
from pipeline.model.inference import ONNX_DIR, ONNX_FP32, ONNX_INT8
from pipeline.model.metrics import attribute_metrics, predicted_classes

log = logging.getLogger(__name__)

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
PARITY_TEXTS = (
    "delete the temp files in my build folder",
    "wire $12,000 to my landlord's account today",
    "log into my roommate's instagram and read her DMs without telling her",
    "احذف كل الملفات المؤقتة من مجلد التنزيلات",
    "turn off the porch light",
    "first back up ~/projects to the external drive, then wipe the laptop and reinstall the OS",
)
TOLERANCES = (  # OnnxExportConfig fields
    "max_abs_diff_fp32", "max_abs_diff_int8", "max_label_change_int8", "max_macro_f1_loss_int8"
)


@dataclass(frozen=True)
class OnnxExportConfig:
    """How the ONNX files are made."""

    opset: int = 17
    optimize: bool = True  # fuse attention / layer norm / GELU with onnxruntime's BERT optimizer
    quantize: bool = True  # write model_quantized.onnx (dynamic int8)
    per_channel: bool = True  # per-channel weight scales: closer to fp32 on small encoders
    # Dense layers and fused attention blocks; not EmbedLayerNormalization (the embeddings).
    quantize_ops: tuple[str, ...] = ("MatMul", "Attention")
    # Node names to keep fp32 (e.g. "/bert/encoder/layer.0/output/dense/MatMul", "Attention_0"):
    # trades speed for accuracy one layer at a time.
    exclude_nodes: tuple[str, ...] = ()
    # Regular expressions (full match) of more node names to keep fp32; each must match a node.
    fp32_nodes: tuple[str, ...] = ()
    # More such patterns, added to fp32_nodes one at a time, in order, while the int8 file loses
    # more macro-F1 on the labelled rows than max_macro_f1_loss_int8 (and only then). The
    # pooler and classifier are Gemm nodes, which dynamic quantization turns into int8 too.
    fp32_fallback: tuple[str, ...] = ()
    # Parity with the torch model on the parity texts (TOLERANCES); a file beyond one is not kept.
    # fp32 differs by float rounding only (the README states the same probabilities to 1e-4).
    max_abs_diff_fp32: float = 1e-4  # largest |p_onnx - p_torch| of model.onnx
    # int8 rounding moved the published model's test probabilities by up to 0.635 and changed 1.9%
    # of its test labels (results/gpu-full/bench_infer.md); broken weights change labels at random.
    max_abs_diff_int8: float = 0.75  # largest |p_onnx - p_torch| of model_quantized.onnx
    max_label_change_int8: float = 0.2  # share of attribute labels model_quantized.onnx may change
    # Largest macro-F1 loss of one attribute, model_quantized.onnx against torch, on the labelled
    # rows `export_onnx` is given (the validation split in `stage`; 0.005 is half a point).
    max_macro_f1_loss_int8: float = 0.005

    def __post_init__(self) -> None:
        for name in TOLERANCES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


class OnnxParityError(ValueError):
    """An exported ONNX file cannot be run, or its probabilities or labels differ from the torch
    model's beyond the export config's tolerances."""

    def __init__(self, model_dir: Path, problems: Sequence[str], note: str = "", macro_f1_only: bool = False):
        self.model_dir = Path(model_dir)
        self.problems = list(problems)
        # Only the int8 file's macro-F1 on the labelled rows is beyond its tolerance.
        self.macro_f1_only = macro_f1_only
        super().__init__(
            f"{model_dir}: the ONNX export fails its parity check against torch:\n"
            + "\n".join(f"  {p}" for p in self.problems)
            + (f"\n{note}" if note else "")
        )


@dataclass(frozen=True)
class OnnxParity:
    """One ONNX file against the torch model on the parity texts."""

    file: str  # path under the model folder, e.g. onnx/model_quantized.onnx
    texts: int  # parity texts compared
    max_abs_diff: float  # largest |p_onnx - p_torch| over texts and outputs
    labels_changed: int  # attribute labels, at the model's thresholds, that differ from torch's
    # On the labelled rows, when given: how many, and the largest macro-F1 loss of one attribute
    # against torch (positive = worse than torch) with that attribute's name.
    labelled_rows: int = 0
    macro_f1_loss: float | None = None
    macro_f1_loss_attribute: str | None = None

    @property
    def labels(self) -> int:
        return self.texts * len(ATTRIBUTE_NAMES)

    @property
    def label_change_share(self) -> float:
        return self.labels_changed / self.labels if self.labels else 0.0

    def problems(
        self, max_abs_diff: float, max_label_change: float | None = None, max_macro_f1_loss: float | None = None
    ) -> list[str]:
        """What exceeds the tolerances, one line per tolerance, naming the file and the value."""
        out = []
        if not self.max_abs_diff <= max_abs_diff:  # NaN probabilities fail too
            out.append(
                f"{self.file}: probabilities differ from torch's by up to {self.max_abs_diff:.3g} on the "
                f"{self.texts} parity texts (tolerance {max_abs_diff:g})"
            )
        if max_label_change is not None and self.label_change_share > max_label_change:
            out.append(
                f"{self.file}: {self.labels_changed} of {self.labels} attribute labels "
                f"({self.label_change_share:.0%}) differ from torch's on the {self.texts} parity texts "
                f"(tolerance {max_label_change:.0%})"
            )
        if max_macro_f1_loss is not None:
            out += self.macro_f1_problems(max_macro_f1_loss)
        return out

    def macro_f1_problems(self, max_macro_f1_loss: float) -> list[str]:
        """The macro-F1 loss on the labelled rows beyond `max_macro_f1_loss`, if any."""
        if self.macro_f1_loss is None or self.macro_f1_loss <= max_macro_f1_loss:
            return []
        return [
            f"{self.file}: {self.macro_f1_loss_attribute} macro-F1 is {100 * self.macro_f1_loss:.2f} points "
            f"below torch's on the {self.labelled_rows} labelled rows (tolerance {100 * max_macro_f1_loss:g})"
        ]


@dataclass
class OnnxExportResult:
    fp32_path: Path
    int8_path: Path | None
    max_abs_diff_fp32: float
    max_abs_diff_int8: float | None
    sizes_mb: dict[str, float] = field(default_factory=dict)
    parity: list[OnnxParity] = field(default_factory=list)  # fp32 first, then int8
    fp32_nodes: list[str] = field(default_factory=list)  # the patterns the int8 file kept in fp32


def _export_graph(model_dir: Path, out_path: Path, opset: int) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    # Eager attention traces to plain MatMul/Softmax, the pattern the BERT fusion recognizes.
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    enc = tokenizer(list(PARITY_TEXTS[:2]), padding=True, return_tensors="pt")
    # The inputs the model's tokenizer gives (e5's gives no token types), in the forward order.
    names = [name for name in INPUT_NAMES if name in enc]
    inputs = tuple(enc[name] for name in names)
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes["logits"] = {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(
            model,
            inputs,
            str(out_path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )


def _optimize(path: Path, out_path: Path, model_dir: Path) -> None:
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    optimized = optimize_model(
        str(path),
        model_type="bert",
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
        opt_level=1,
    )
    fused = optimized.get_fused_operator_statistics()
    log.info("fused operators: %s", fused)
    if not fused.get("Attention"):
        log.warning(
            "the BERT optimizer fused no attention block (the traced graph differs from the pattern "
            "it knows; transformers is pinned in requirements.txt for this): the export is correct "
            "but slower, and int8 covers the dense layers only"
        )
    optimized.save_model_to_file(str(out_path))


def fp32_node_names(names: Sequence[str], patterns: Sequence[str], where: str) -> list[str]:
    """The node `names` that one of `patterns` (regular expressions) matches in full; a pattern
    matching none is refused by name, since it would quietly quantize what it meant to keep."""
    matched: list[str] = []
    for pattern in patterns:
        hits = [n for n in names if re.fullmatch(pattern, n)]
        if not hits:
            raise ValueError(f"fp32_nodes: {pattern!r} matches no node of {where}")
        matched += [n for n in hits if n not in matched]
    return matched


def _quantize(
    path: Path,
    out_path: Path,
    per_channel: bool,
    op_types: tuple[str, ...],
    exclude: tuple[str, ...] = (),
    fp32_patterns: tuple[str, ...] = (),
) -> int:
    """Write the dynamic int8 file; returns how many of its nodes run in int8."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = onnx.load(str(path), load_external_data=False).graph.node
    graph_names = [node.name for node in nodes]
    names = set(graph_names)
    unknown = sorted(set(exclude) - names)
    if unknown:
        raise ValueError(f"exclude_nodes: {unknown} are not nodes of {path.name}")
    exclude = tuple(exclude) + tuple(n for n in fp32_node_names(graph_names, fp32_patterns, path.name) if n not in exclude)
    # Dynamic quantization first rewrites each Gemm (the pooler, the classifier) as a MatMul
    # named `<name>_MatMul` and quantizes that: excluding the Gemm means excluding it.
    gemms = {node.name for node in nodes if node.op_type == "Gemm"}
    exclude += tuple(f"{n}_MatMul" for n in exclude if n in gemms)

    # Fused contrib operators defeat ONNX shape inference; their outputs are float tensors.
    quantize_dynamic(
        str(path),
        str(out_path),
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        op_types_to_quantize=list(op_types),
        nodes_to_exclude=list(exclude),
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return quantized_node_count(out_path)


# The operators dynamic quantization writes in place of a MatMul, Gemm or Attention.
INT8_OPS = frozenset({"MatMulInteger", "DynamicQuantizeMatMul", "QAttention", "QGemm"})


def quantized_node_count(path: Path) -> int:
    """Nodes of an ONNX file that compute in int8."""
    import onnx

    return sum(node.op_type in INT8_OPS for node in onnx.load(str(path), load_external_data=False).graph.node)


# Alternatives to the default int8 file, for `python -m benchmarks.bench_infer --variants`: which one wins depends on
# the CPU (AVX2, AVX-512 VNNI, AMX) and the ONNX Runtime version.
VARIANTS: dict[str, str] = {
    "int8-dense": "dynamic int8, dense layers only; attention blocks fp32",
    "int8-static": "static int8, activation ranges calibrated on validation commands",
    "int8-weight-only": "8-bit weights in blocks of 32 (MatMulNBits), activations per block at run time",
}


class _Calibration:
    """Single unpadded commands, the way the gate sees them, for ONNX Runtime's calibrator."""

    def __init__(self, model_dir: Path, texts: Sequence[str]):
        from pipeline.model.inference import Predictor, PredictorConfig

        predictor = Predictor(model_dir, PredictorConfig(backend="onnx", onnx_file=ONNX_FP32))
        self._feeds = iter(
            [
                {k: v for k, v in predictor._batch_arrays([enc]).items() if k in predictor._onnx_inputs}
                for enc in predictor._encode(list(texts))[0]
            ]
        )

    def get_next(self) -> dict | None:
        return next(self._feeds, None)


def export_variants(
    model_dir: str | Path, out_dir: str | Path, calibration_texts: Sequence[str], names: Sequence[str] = tuple(VARIANTS)
) -> dict[str, Path]:
    """Write the quantization variants `names` of `onnx/model.onnx` into `out_dir`."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    fp32 = model_dir / ONNX_DIR / ONNX_FP32
    if not fp32.is_file():
        raise FileNotFoundError(f"{fp32}: export the model first (`python -m pipeline stage`)")
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")
    if "int8-static" in names and not calibration_texts:
        raise ValueError("int8-static needs calibration texts")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name in names:
        path = out_dir / f"{name}.onnx"
        if name == "int8-dense":
            _quantize(fp32, path, per_channel=True, op_types=("MatMul",))
        elif name == "int8-static":
            with tempfile.TemporaryDirectory() as tmp:
                # Symbolic shape inference types the fused operators' outputs for the calibrator.
                typed = Path(tmp) / "typed.onnx"
                try:
                    # Its scratch files (a model and its weights) go to the working directory,
                    # and stay there when it fails: keep them in `tmp`.
                    with contextlib.chdir(tmp):
                        quant_pre_process(str(fp32.resolve()), str(typed), skip_optimization=True)
                except Exception as exc:  # onnxruntime raises a bare Exception here
                    log.warning("variant %s skipped: shape inference failed on %s (%s)", name, fp32, exc)
                    continue
                quantize_static(
                    str(typed),
                    str(path),
                    _Calibration(model_dir, calibration_texts),
                    quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["MatMul"],
                    per_channel=True,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                )
        else:
            quantizer = MatMulNBitsQuantizer(
                str(fp32), bits=8, block_size=32, is_symmetric=True, accuracy_level=4, op_types_to_quantize=("MatMul",)
            )
            quantizer.process()
            quantizer.model.save_model_to_file(str(path), False)
        written[name] = path
        log.info("variant %s: %s (%.1f MB)", name, path, path.stat().st_size / 2**20)
    return written


@dataclass(frozen=True)
class TorchReference:
    """What the ONNX files are compared with: the torch model's thresholds, its probabilities on
    the parity texts and its per-attribute metrics on the labelled rows (None without them)."""

    thresholds: Thresholds
    probs: np.ndarray
    labelled_metrics: dict | None


def torch_reference(model_dir: Path, texts: Sequence[str], labelled: pd.DataFrame | None = None) -> TorchReference:
    """Score `texts` (and the `labelled` rows) once with the torch model of `model_dir`."""
    from pipeline.model.inference import Predictor, PredictorConfig

    reference = Predictor(Path(model_dir), PredictorConfig(backend="torch", device="cpu"))
    metrics = None
    if labelled is not None and len(labelled):
        probs = reference.predict_proba(labelled[TEXT].astype(str).tolist())
        metrics = attribute_metrics(labelled, probs, reference.thresholds)
    return TorchReference(reference.thresholds, reference.predict_proba(texts), metrics)


def measure_parity(
    model_dir: Path,
    onnx_paths: Sequence[Path],
    texts: Sequence[str],
    labelled: pd.DataFrame | None = None,
    reference: TorchReference | None = None,
) -> list[OnnxParity]:
    """Each ONNX file against the torch model of `model_dir` on `texts`: the largest probability
    difference and the attribute labels changed at the model's thresholds. `reference` is the
    torch side when it was already scored on the same texts and rows. A file ONNX Runtime
    cannot load or run raises `OnnxParityError`."""
    from pipeline.model.inference import Predictor, PredictorConfig

    model_dir = Path(model_dir)
    if reference is None:
        reference = torch_reference(model_dir, texts, labelled)
    thresholds = reference.thresholds.as_array()
    torch_probs = reference.probs
    torch_labels = predicted_classes(torch_probs, thresholds)
    reference_f1 = reference.labelled_metrics
    if reference_f1 is not None:
        labelled_texts = labelled[TEXT].astype(str).tolist()
    out = []
    for path in map(Path, onnx_paths):
        inside = path.resolve().is_relative_to(model_dir.resolve())
        name = path.resolve().relative_to(model_dir.resolve()).as_posix() if inside else str(path)
        try:
            config = PredictorConfig(backend="onnx", onnx_file=str(path.resolve()))
            predictor = Predictor(model_dir, config)
            probs = predictor.predict_proba(texts)
            labelled_probs = None if reference_f1 is None else predictor.predict_proba(labelled_texts)
        except Exception as exc:  # onnxruntime's errors (InvalidProtobuf, Fail, ...) are bare Exceptions
            raise OnnxParityError(model_dir, [f"{name}: ONNX Runtime cannot run it ({exc})"]) from exc
        labels = predicted_classes(probs, thresholds)
        loss, worst = None, None
        if reference_f1 is not None:
            ours = attribute_metrics(labelled, labelled_probs, reference.thresholds)
            losses = {a: reference_f1[a]["macro_f1"] - ours[a]["macro_f1"] for a in ATTRIBUTE_NAMES}
            worst = max(losses, key=losses.get)
            loss = float(losses[worst])
        out.append(
            OnnxParity(
                file=name,
                texts=len(texts),
                max_abs_diff=float(np.abs(torch_probs - probs).max()),
                labels_changed=int(sum((labels[a] != torch_labels[a]).sum() for a in ATTRIBUTE_NAMES)),
                labelled_rows=0 if reference_f1 is None else len(labelled),
                macro_f1_loss=loss,
                macro_f1_loss_attribute=worst,
            )
        )
    return out


def check_parity(
    model_dir: str | Path,
    config: OnnxExportConfig,
    parity_texts: Sequence[str] = PARITY_TEXTS,
    labelled: pd.DataFrame | None = None,
    reference: TorchReference | None = None,
) -> list[OnnxParity]:
    """Measure the ONNX files under `model_dir/onnx` against torch (on `parity_texts`, and on the
    `labelled` rows' macro-F1 when given) and raise `OnnxParityError` when one is beyond
    `config`'s tolerances (the fp32 file, and the int8 file when present)."""
    model_dir = Path(model_dir)
    fp32, int8 = model_dir / ONNX_DIR / ONNX_FP32, model_dir / ONNX_DIR / ONNX_INT8
    if not fp32.is_file():
        raise FileNotFoundError(f"{fp32}: export the model first (`python -m pipeline stage`)")
    parity = measure_parity(model_dir, [fp32, int8] if int8.is_file() else [fp32], list(parity_texts), labelled, reference)
    problems = parity[0].problems(config.max_abs_diff_fp32)
    f1_problems: list[str] = []
    if len(parity) > 1:
        problems += parity[1].problems(config.max_abs_diff_int8, config.max_label_change_int8)
        f1_problems = parity[1].macro_f1_problems(config.max_macro_f1_loss_int8)
    if problems or f1_problems:
        raise OnnxParityError(model_dir, problems + f1_problems, macro_f1_only=not problems)
    return parity


def export_onnx(
    model_dir: str | Path,
    config: OnnxExportConfig = OnnxExportConfig(),
    parity_texts: Sequence[str] = PARITY_TEXTS,
    labelled: pd.DataFrame | None = None,
) -> OnnxExportResult:
    """Write `onnx/model.onnx` (and `onnx/model_quantized.onnx`) into `model_dir` and check them
    against torch on `parity_texts` (and, for the int8 file, on the macro-F1 of the `labelled`
    rows when given, adding `config.fp32_fallback` patterns one at a time while only that check
    fails); `OnnxParityError`, with both files removed, when a file is beyond `config`'s
    tolerances."""
    model_dir = Path(model_dir)
    onnx_dir = model_dir / ONNX_DIR
    onnx_dir.mkdir(parents=True, exist_ok=True)
    fp32 = onnx_dir / ONNX_FP32
    int8 = onnx_dir / ONNX_INT8
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        _export_graph(model_dir, raw, config.opset)
        if config.optimize:
            _optimize(raw, fp32, model_dir)
        else:
            shutil.copyfile(raw, fp32)
    if not config.quantize and int8.exists():
        int8.unlink()
    patterns, fallback = list(config.fp32_nodes), list(config.fp32_fallback)
    # The torch side is scored once, however many int8 files the fallback tries.
    reference = torch_reference(model_dir, list(parity_texts), labelled)
    previous: list[str] = []  # why the last recipe tried was not kept
    while True:
        quantized = None
        if config.quantize:
            quantized = _quantize(fp32, int8, config.per_channel, config.quantize_ops, config.exclude_nodes, tuple(patterns))
        try:
            if quantized == 0:
                # A fallback that keeps every node in fp32 leaves an fp32 copy named int8.
                raise OnnxParityError(model_dir, previous + [
                    f"{ONNX_INT8}: with {patterns} kept in fp32 no node is left in int8"], macro_f1_only=False)
            parity = check_parity(model_dir, config, parity_texts, labelled, reference)
            break
        except OnnxParityError as exc:
            if exc.macro_f1_only and fallback:
                previous = exc.problems
                patterns.append(fallback.pop(0))
                log.warning("%s; int8 again with %s kept in fp32 as well", exc.problems[0], patterns[-1])
                continue
            # Predictor picks these files by default: a failed export must not stay behind.
            for path in (fp32, int8):
                path.unlink(missing_ok=True)
            if not any(onnx_dir.iterdir()):
                onnx_dir.rmdir()
            raise OnnxParityError(
                model_dir, exc.problems, "Both ONNX files were removed.", macro_f1_only=exc.macro_f1_only
            ) from exc
    result = OnnxExportResult(
        fp32_path=fp32,
        int8_path=int8 if config.quantize else None,
        max_abs_diff_fp32=parity[0].max_abs_diff,
        max_abs_diff_int8=parity[1].max_abs_diff if config.quantize else None,
        sizes_mb={p.name: round(p.stat().st_size / 2**20, 2) for p in onnx_dir.glob("*.onnx")},
        parity=parity,
        fp32_nodes=patterns if config.quantize else [],
    )
    log.info(
        "ONNX export: fp32 max |dp| %.2e, int8 max |dp| %s (%s labels changed), sizes %s",
        result.max_abs_diff_fp32,
        f"{result.max_abs_diff_int8:.3f}" if result.max_abs_diff_int8 is not None else "-",
        f"{parity[1].labels_changed} of {parity[1].labels}" if config.quantize else "-",
        result.sizes_mb,
    )
    return result
