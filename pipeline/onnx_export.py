"""ONNX export of the trained classifier: `onnx/model.onnx` (graph-optimized fp32) and
`onnx/model_quantized.onnx` (int8 dynamic quantization) beside the safetensors weights, the
layout Transformers.js and `optimum` read.

Dynamic int8 quantization: weights int8 per output channel, activations quantized per batch at
run time. Measured on the published model's validation split (see results/gpu-full/), it was the
best of the int8 options ONNX Runtime runs fast on AVX2 CPUs:

- static per-tensor activation scales calibrated on validation moved 3x more probability mass
  (the LayerNorm outputs carry one channel 14x larger than the rest);
- SmoothQuant-style channel scaling did not help, because the per-channel weight scales absorb
  the migrated outliers badly;
- weight-only 8-bit blocks (`MatMulNBits`) were as accurate as fp32 but slower than fp32 here.

Quantizing the fused attention blocks as well as the dense layers cut single-command latency by
about a fifth at no measurable accuracy cost; the word embeddings stay fp32 (quantizing them
cost a macro-F1 point). The parity check against the torch model on real texts guards it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.inference import ONNX_DIR, ONNX_FP32, ONNX_INT8

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


@dataclass
class OnnxExportResult:
    fp32_path: Path
    int8_path: Path | None
    max_abs_diff_fp32: float
    max_abs_diff_int8: float | None
    sizes_mb: dict[str, float] = field(default_factory=dict)


def _export_graph(model_dir: Path, out_path: Path, opset: int) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    # Eager attention traces to plain MatMul/Softmax, the pattern the BERT fusion recognizes.
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    enc = tokenizer(list(PARITY_TEXTS[:2]), padding=True, return_tensors="pt")
    inputs = tuple(enc[name] for name in INPUT_NAMES)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    axes["logits"] = {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(
            model,
            inputs,
            str(out_path),
            input_names=list(INPUT_NAMES),
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
    log.info("fused operators: %s", optimized.get_fused_operator_statistics())
    optimized.save_model_to_file(str(out_path))


def _quantize(
    path: Path, out_path: Path, per_channel: bool, op_types: tuple[str, ...], exclude: tuple[str, ...] = ()
) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    names = {node.name for node in onnx.load(str(path), load_external_data=False).graph.node}
    unknown = sorted(set(exclude) - names)
    if unknown:
        raise ValueError(f"exclude_nodes: {unknown} are not nodes of {path.name}")

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


def _max_diff(model_dir: Path, onnx_path: Path, texts: Sequence[str]) -> float:
    """Largest absolute difference in output probabilities between torch and ONNX."""
    from pipeline.inference import Predictor, PredictorConfig

    torch_probs = Predictor(model_dir, PredictorConfig(backend="torch", device="cpu")).predict_proba(texts)
    onnx_probs = Predictor(
        model_dir, PredictorConfig(backend="onnx", onnx_file=onnx_path.name)
    ).predict_proba(texts)
    return float(np.abs(torch_probs - onnx_probs).max())


def export_onnx(
    model_dir: str | Path,
    config: OnnxExportConfig = OnnxExportConfig(),
    parity_texts: Sequence[str] = PARITY_TEXTS,
) -> OnnxExportResult:
    """Write `onnx/model.onnx` (and `onnx/model_quantized.onnx`) into `model_dir`."""
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
    if config.quantize:
        _quantize(fp32, int8, config.per_channel, config.quantize_ops, config.exclude_nodes)
    elif int8.exists():
        int8.unlink()
    texts = list(parity_texts)
    result = OnnxExportResult(
        fp32_path=fp32,
        int8_path=int8 if config.quantize else None,
        max_abs_diff_fp32=_max_diff(model_dir, fp32, texts),
        max_abs_diff_int8=_max_diff(model_dir, int8, texts) if config.quantize else None,
        sizes_mb={p.name: round(p.stat().st_size / 2**20, 2) for p in onnx_dir.glob("*.onnx")},
    )
    log.info(
        "ONNX export: fp32 max |dp| %.2e, int8 max |dp| %s, sizes %s",
        result.max_abs_diff_fp32,
        f"{result.max_abs_diff_int8:.3f}" if result.max_abs_diff_int8 is not None else "-",
        result.sizes_mb,
    )
    return result
