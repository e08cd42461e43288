import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.model.losses import MultiLabelLoss, focal_bce_with_logits, positive_class_weights

LOGITS = torch.tensor([[0.0, 2.0, -1.0], [3.0, -2.5, 0.5]])
TARGETS = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])


def test_focal_with_gamma_zero_is_binary_cross_entropy():
    focal = focal_bce_with_logits(LOGITS, TARGETS, gamma=0.0)
    expected = F.binary_cross_entropy_with_logits(LOGITS, TARGETS, reduction="none")
    assert torch.allclose(focal, expected)


def test_focal_value_on_known_inputs():
    loss = focal_bce_with_logits(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0]), gamma=2.0)
    p = 1 / (1 + math.exp(-2.0))
    # logit 0, target 1: p_t = 0.5; logit 2, target 0: p_t = 1 - sigmoid(2).
    expected = [0.25 * math.log(2.0), p**2 * -math.log(1 - p)]
    assert loss.tolist() == pytest.approx(expected, rel=1e-5)


def test_focal_down_weights_easy_examples_more_than_hard_ones():
    logits = torch.tensor([4.0, -4.0])  # confident: right for target 1, wrong for target 1
    targets = torch.tensor([1.0, 1.0])
    ratio = focal_bce_with_logits(logits, targets, gamma=2.0) / focal_bce_with_logits(logits, targets, gamma=0.0)
    assert ratio[0] < 0.001
    assert ratio[1] > 0.95


def test_negative_gamma_is_rejected():
    with pytest.raises(ValueError, match="gamma"):
        focal_bce_with_logits(LOGITS, TARGETS, gamma=-1.0)


def test_positive_class_weights_balance_each_output():
    targets = np.array([[1, 0, 1], [0, 0, 1], [0, 1, 1], [0, 0, 1]], dtype=np.float32)
    full = positive_class_weights(targets, power=1.0)
    # output 0: 1 positive, 3 negatives -> (3+1)/(1+1); output 2: all positive -> 1/5.
    assert full.tolist() == pytest.approx([2.0, 2.0, 0.2])
    assert positive_class_weights(targets, power=0.0).tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert positive_class_weights(targets, power=0.5).tolist() == pytest.approx(np.sqrt([2.0, 2.0, 0.2]), rel=1e-6)


def test_positive_class_weights_are_clipped():
    targets = np.zeros((1000, 1), dtype=np.float32)
    targets[0, 0] = 1
    assert positive_class_weights(targets, power=1.0)[0] == pytest.approx(20.0)


def test_class_weight_scales_only_the_positive_term():
    weight = torch.tensor([3.0, 3.0, 3.0])
    weighted = focal_bce_with_logits(LOGITS, TARGETS, gamma=0.0, pos_weight=weight)
    plain = focal_bce_with_logits(LOGITS, TARGETS, gamma=0.0)
    positive = TARGETS == 1
    assert torch.allclose(weighted[positive], 3.0 * plain[positive])
    assert torch.allclose(weighted[~positive], plain[~positive])


def test_loss_normalized_by_items_matches_the_full_batch_mean():
    loss = MultiLabelLoss(gamma=2.0, pos_weight=np.array([1.0, 2.0, 0.5]))
    full = loss({"logits": LOGITS}, TARGETS)
    items = TARGETS.numel()
    halves = loss({"logits": LOGITS[:1]}, TARGETS[:1], num_items_in_batch=items) + loss(
        {"logits": LOGITS[1:]}, TARGETS[1:], num_items_in_batch=items
    )
    assert torch.allclose(full, halves)
