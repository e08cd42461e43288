"""Probability calibration of the seven outputs, folded into the classifier head.

Each output's logit `z` is mapped to `a * z + b` (Platt scaling; `b = 0` is temperature
scaling with `T = 1 / a`), with `a` and `b` fitted on the validation split by minimizing that
output's binary cross-entropy against its own target (risk's two ordinal outputs against
`risk >= medium` and `risk == high`). Because the head is linear, the map is applied by scaling
row `k` of the final layer's weight by `a_k` and setting its bias to `a_k * bias_k + b_k`: the
saved model then gives calibrated probabilities to `from_pretrained`, `pipeline()` and the ONNX
export with no extra code. The fitted maps are recorded in `config.json` (`calibration`),
composed with any map folded in before, so calibrating twice is the same as calibrating once
with the composed map.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.schema import MODEL_OUTPUTS

CONFIG_KEY = "calibration"
METHOD = "platt"
# Probabilities are turned back into logits after clipping to this distance from 0 and 1.
_EPS = 1e-7


def logits_from_probabilities(probs: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


@dataclass(frozen=True)
class Calibration:
    """Per-output affine maps of the logit: calibrated logit = scale * logit + bias."""

    scale: tuple[float, ...]
    bias: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.scale) != len(MODEL_OUTPUTS) or len(self.bias) != len(MODEL_OUTPUTS):
            raise ValueError(f"calibration needs {len(MODEL_OUTPUTS)} scales and biases")
        if any(not np.isfinite(s) or s <= 0 for s in self.scale):
            raise ValueError("calibration scales must be finite and positive")

    @classmethod
    def identity(cls) -> "Calibration":
        return cls((1.0,) * len(MODEL_OUTPUTS), (0.0,) * len(MODEL_OUTPUTS))

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Calibrated probabilities from uncalibrated (n, 7) ones."""
        z = logits_from_probabilities(probs)
        return _sigmoid(z * np.asarray(self.scale)[None, :] + np.asarray(self.bias)[None, :])

    def then(self, other: "Calibration") -> "Calibration":
        """This map followed by `other`."""
        scale = tuple(float(o * s) for s, o in zip(self.scale, other.scale))
        bias = tuple(float(o * b + c) for b, o, c in zip(self.bias, other.scale, other.bias))
        return Calibration(scale, bias)

    def to_config(self, fitted_on: str) -> dict:
        return {
            "method": METHOD,
            "fitted_on": fitted_on,
            "outputs": {
                name: {"scale": round(s, 6), "bias": round(b, 6)}
                for name, s, b in zip(MODEL_OUTPUTS, self.scale, self.bias)
            },
        }

    @classmethod
    def from_dict(cls, saved: dict) -> "Calibration":
        """The map of a `to_config` dict (as config.json and eval.json hold it)."""
        outputs = saved["outputs"]
        return cls(
            tuple(float(outputs[n]["scale"]) for n in MODEL_OUTPUTS),
            tuple(float(outputs[n]["bias"]) for n in MODEL_OUTPUTS),
        )

    @classmethod
    def from_config(cls, config: object) -> "Calibration":
        """The map recorded in a `transformers` config (identity when none is)."""
        saved = getattr(config, CONFIG_KEY, None)
        return cls.from_dict(saved) if saved else cls.identity()


def _fit_one(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(scale, bias) minimizing the binary cross-entropy of sigmoid(scale * z + bias) against y
    (L-BFGS on log(scale) and bias; the loss is convex in scale and bias)."""
    from scipy.optimize import minimize

    if y.min() == y.max():
        return 1.0, 0.0

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        scale, bias = np.exp(params[0]), params[1]
        u = scale * z + bias
        # -[y log s(u) + (1 - y) log(1 - s(u))] = log(1 + e^u) - y u
        value = float(np.mean(np.logaddexp(0.0, u) - y * u))
        residual = _sigmoid(u) - y
        return value, np.array([float(np.mean(residual * z)) * scale, float(np.mean(residual))])

    fit = minimize(loss, np.zeros(2), jac=True, method="L-BFGS-B", bounds=[(-5.0, 5.0), (-20.0, 20.0)])
    return float(np.exp(fit.x[0])), float(fit.x[1])


def fit_calibration(probs: np.ndarray, targets: np.ndarray) -> Calibration:
    """Per-output Platt maps from (n, 7) probabilities and their (n, 7) 0/1 targets."""
    z = logits_from_probabilities(probs)
    targets = np.asarray(targets, dtype=np.float64)
    if z.shape != targets.shape or z.shape[1] != len(MODEL_OUTPUTS):
        raise ValueError(f"probabilities {z.shape} and targets {targets.shape} must both be (n, {len(MODEL_OUTPUTS)})")
    fitted = [_fit_one(z[:, k], targets[:, k]) for k in range(z.shape[1])]
    return Calibration(tuple(s for s, _ in fitted), tuple(b for _, b in fitted))


def classifier_head(state_names: list[str]) -> tuple[str, str]:
    """The weight and bias names of the final layer of a sequence-classification head."""
    for weight in ("classifier.out_proj.weight", "classifier.weight", "score.weight"):
        if weight in state_names and weight.replace("weight", "bias") in state_names:
            return weight, weight.replace("weight", "bias")
    raise ValueError("no classifier head (classifier.weight / classifier.out_proj.weight) in the model weights")


def fold_into_model(model_dir: str | Path, calibration: Calibration, fitted_on: str = "validation") -> Calibration:
    """Apply `calibration` to the saved model's head and record the composed map in its
    config.json; returns the composed map (what the config now says)."""
    from safetensors.numpy import load_file, save_file
    from transformers import AutoConfig

    model_dir = Path(model_dir)
    weights_path = model_dir / "model.safetensors"
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path}: no model weights to calibrate")
    config = AutoConfig.from_pretrained(model_dir)
    composed = Calibration.from_config(config).then(calibration)
    tensors = load_file(str(weights_path))
    weight_name, bias_name = classifier_head(list(tensors))
    weight, bias = tensors[weight_name], tensors[bias_name]
    if weight.shape[0] != len(MODEL_OUTPUTS):
        raise ValueError(f"{weight_name} has {weight.shape[0]} rows, expected {len(MODEL_OUTPUTS)}")
    scale = np.asarray(calibration.scale, dtype=np.float64)
    tensors[weight_name] = (weight.astype(np.float64) * scale[:, None]).astype(weight.dtype)
    tensors[bias_name] = (bias.astype(np.float64) * scale + np.asarray(calibration.bias)).astype(bias.dtype)
    tmp = weights_path.with_suffix(".safetensors.tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.replace(weights_path)
    setattr(config, CONFIG_KEY, composed.to_config(fitted_on))
    config.save_pretrained(model_dir)
    return composed
