"""The training loss of the seven sigmoid outputs: binary cross-entropy, optionally focal and
class-weighted, usable as the `compute_loss_func` of a `transformers.Trainer`."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# A weight is never pushed past these bounds, so an output with very few positives (tiny or
# skewed data) cannot dominate the loss.
MIN_POS_WEIGHT, MAX_POS_WEIGHT = 0.05, 20.0


def focal_bce_with_logits(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma: float = 0.0,
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-element focal binary cross-entropy, same shape as `logits`.

    `(1 - p_t) ** gamma * BCE`, where `p_t` is the probability given to the true value and BCE
    carries `pos_weight` on its positive term (as `torch.nn.BCEWithLogitsLoss`). `gamma=0` with
    no weight is plain BCE.
    """
    if gamma < 0:
        raise ValueError(f"focal gamma must be >= 0, got {gamma}")
    logits = logits.float()
    targets = targets.to(logits.dtype)
    weight = None if pos_weight is None else pos_weight.to(device=logits.device, dtype=logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none", pos_weight=weight)
    if gamma > 0:
        p = torch.sigmoid(logits)
        p_true = p * targets + (1.0 - p) * (1.0 - targets)
        loss = loss * (1.0 - p_true).pow(gamma)
    return loss


def positive_class_weights(targets: np.ndarray, power: float = 1.0) -> np.ndarray:
    """One positive-term weight per output from the (n, k) 0/1 training targets.

    `(negatives / positives) ** power`: 1.0 balances the two values of each output, 0.0 turns
    weighting off, 0.5 is a milder square-root balance. Clipped to [0.05, 20].
    """
    targets = np.asarray(targets, dtype=np.float64)
    if targets.ndim != 2 or targets.shape[0] == 0:
        raise ValueError(f"targets must be a non-empty (n, k) matrix, got shape {targets.shape}")
    positives = targets.sum(axis=0)
    negatives = targets.shape[0] - positives
    ratio = (negatives + 1.0) / (positives + 1.0)
    return np.clip(ratio**power, MIN_POS_WEIGHT, MAX_POS_WEIGHT).astype(np.float32)


class MultiLabelLoss:
    """`compute_loss_func(outputs, labels, num_items_in_batch)` for `transformers.Trainer`.

    With gradient accumulation the Trainer passes the number of target cells in the whole
    accumulated batch; the summed loss is divided by it, so accumulating k batches of b rows
    gives the same gradient as one batch of k*b rows.
    """

    def __init__(self, gamma: float = 0.0, pos_weight: np.ndarray | torch.Tensor | None = None):
        self.gamma = float(gamma)
        self.pos_weight = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32)

    def __call__(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        loss = focal_bce_with_logits(logits, labels, self.gamma, self.pos_weight)
        if num_items_in_batch is None:
            return loss.mean()
        return loss.sum() / num_items_in_batch
