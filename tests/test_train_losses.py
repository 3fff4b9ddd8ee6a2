"""Matcher against brute force, and every loss against hand-computed values."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from streamseg.train.criterion import LossConfig, SetCriterion, class_loss, mask_losses
from streamseg.train.matcher import match, pairwise_bce_cost, pairwise_dice_cost, solve_assignment
from streamseg.train.points import point_sample, uncertain_points


def _brute_force(cost: torch.Tensor) -> float:
    queries, targets = cost.shape
    return min(
        sum(float(cost[q, t]) for t, q in enumerate(perm))
        for perm in itertools.permutations(range(queries), targets)
    )


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (5, 2), (6, 4), (7, 7)])
@pytest.mark.parametrize("seed", range(4))
def test_assignment_equals_brute_force(shape, seed):
    cost = (
        torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 10
        - 3
    )
    rows, cols = solve_assignment(cost)
    assert sorted(cols.tolist()) == list(range(shape[1]))
    assert len(set(rows.tolist())) == shape[1]
    assert float(cost[rows, cols].sum()) == pytest.approx(_brute_force(cost), abs=1e-9)


def test_assignment_no_targets():
    rows, cols = solve_assignment(torch.zeros(4, 0))
    assert rows.numel() == 0 and cols.numel() == 0


def test_pairwise_costs_hand_computed():
    logits = torch.tensor([[0.0, 2.0]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731 softplus
    # BCE(x, 1) = softplus(-x), BCE(x, 0) = softplus(x); mean over 2 points.
    expected = [[(sp(0) + sp(2)) / 2, (sp(0) + sp(-2)) / 2]]
    assert torch.allclose(pairwise_bce_cost(logits, targets), torch.tensor(expected))
    p = [0.5, 1 / (1 + math.exp(-2))]
    dice = [
        1 - (2 * p[0] + 1) / (sum(p) + 1 + 1),
        1 - (2 * sum(p) + 1) / (sum(p) + 2 + 1),
    ]
    assert torch.allclose(pairwise_dice_cost(logits, targets), torch.tensor([dice]))
    # A zero-weight point drops out of the dice sums and the BCE numerator.
    weights = torch.tensor([1.0, 0.0])
    assert torch.allclose(
        pairwise_bce_cost(logits, targets, weights), torch.tensor([[sp(0) / 2, sp(0) / 2]])
    )


def test_match_finds_the_obvious_pairs():
    # Query 2 is a perfect copy of target 0, query 0 of target 1; classes agree.
    h = w = 8
    target_masks = torch.zeros(2, h, w, dtype=torch.bool)
    target_masks[0, :4] = True
    target_masks[1, 4:] = True
    pred_masks = torch.full((1, 4, h, w), -10.0)
    pred_masks[0, 2][target_masks[0]] = 10.0
    pred_masks[0, 0][target_masks[1]] = 10.0
    logits = torch.zeros(1, 4, 4)
    logits[0, 2, 1] = 5.0
    logits[0, 0, 0] = 5.0
    targets = [{"labels": torch.tensor([1, 0]), "masks": target_masks}]
    ((rows, cols),) = match(logits, pred_masks, targets, num_points=64)
    assert dict(zip(cols.tolist(), rows.tolist(), strict=True)) == {0: 2, 1: 0}


def test_point_sample_centers():
    grid = torch.arange(16.0).view(1, 1, 4, 4)
    coords = torch.tensor([[[0.125, 0.125], [0.875, 0.125], [0.375, 0.625]]])  # pixel centers
    assert point_sample(grid, coords).tolist() == [[[0.0, 3.0, 9.0]]]


def test_uncertain_points_pick_the_boundary():
    logits = torch.full((1, 1, 16, 16), 20.0)
    logits[..., :, 8:] = -20.0
    logits[..., :, 2:14] = 0.0  # the uncertain band: ~69% of 120 candidates have logit 0
    coords = uncertain_points(logits, 40, 3.0, 0.75, torch.Generator().manual_seed(0))
    assert coords.shape == (1, 40, 2)
    x = coords[0, :30, 0]  # the 30 important points: all where the logit is exactly 0
    assert ((x >= 2.5 / 16) & (x <= 13.5 / 16)).all()


def test_class_loss_hand_computed():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])  # B=1, Q=2, C=2 (+void)
    target = torch.tensor([[0, 2]])
    lse0 = math.log(math.exp(2) + 2)
    lse1 = math.log(2 + math.exp(1))
    expected = (1.0 * (lse0 - 2) + 0.1 * (lse1 - 1)) / 1.1
    assert class_loss(logits, target, 0.1).item() == pytest.approx(expected, rel=1e-6)


def test_mask_losses_hand_computed():
    logits = torch.tensor([[0.0, 2.0, -1.0], [1.0, 1.0, 1.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    weights = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    s = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    bce0 = (sp(0) + sp(2) + sp(-1)) / 3
    bce1 = (sp(-1) + sp(-1)) / 2  # third point weighted 0
    dice0 = 1 - (2 * 0.5 + 1) / (0.5 + s(2) + s(-1) + 1 + 1)
    dice1 = 1 - (2 * 2 * s(1) + 1) / (2 * s(1) + 2 + 1)
    bce, dice = mask_losses(logits, labels, weights, num_masks=4.0)
    assert bce.item() == pytest.approx((bce0 + bce1) / 4, rel=1e-6)
    assert dice.item() == pytest.approx((dice0 + dice1) / 4, rel=1e-6)


def test_criterion_weights_aux_and_perfect_prediction():
    h = w = 16
    masks = torch.zeros(1, h, w, dtype=torch.bool)
    masks[0, 4:12, 4:12] = True
    targets = [{"labels": torch.tensor([1]), "masks": masks}]
    pred_masks = torch.full((1, 3, h // 4, w // 4), -30.0)
    pred_masks[0, 1, 1:3, 1:3] = 30.0  # query 1 = the target at stride 4
    logits = torch.full((1, 3, 3), -30.0)
    logits[0, :, 2] = 30.0  # void everywhere ...
    logits[0, 1] = torch.tensor([-30.0, 30.0, -30.0])  # ... but query 1 says class 1
    outputs = {
        "pred_logits": logits,
        "pred_masks": pred_masks,
        "aux_outputs": [{"pred_logits": logits, "pred_masks": pred_masks}] * 2,
    }
    config = LossConfig(num_points=256)
    torch.manual_seed(0)
    losses = SetCriterion(config)(outputs, targets, num_masks=1.0)
    assert set(losses) == {
        f"{p}{n}" for p in ("", "aux0_", "aux1_") for n in ("loss_ce", "loss_mask", "loss_dice")
    } | {"loss"}
    assert losses["loss_ce"].item() < 1e-6
    # Importance sampling puts most points on the (bilinearly blurred) border: not zero there,
    # but far below the loss of the inverted mask.
    inverted = SetCriterion(config)(dict(outputs, pred_masks=-pred_masks), targets, 1.0)
    assert inverted["loss_mask"].item() > 5 * losses["loss_mask"].item()
    assert inverted["loss_dice"].item() > 3 * losses["loss_dice"].item()
    assert losses["loss"].item() == pytest.approx(
        sum(v.item() for k, v in losses.items() if k != "loss"), rel=1e-6
    )
    # Wrong class on the matched query: CE = 2.0 * (60 / 1.2) with weight 1 and void 0.1 ...
    wrong = logits.clone()
    wrong[0, 1] = torch.tensor([30.0, -30.0, -30.0])
    out = SetCriterion(config)({"pred_logits": wrong, "pred_masks": pred_masks}, targets, 1.0)
    assert out["loss_ce"].item() == pytest.approx(2.0 * 60.0 / 1.2, rel=1e-4)
    assert "aux0_loss_ce" not in out


def test_ignore_region_removes_the_loss():
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, :, :4] = True
    pred = torch.full((1, 1, 8, 8), 30.0)  # says "all foreground"
    logits = torch.tensor([[[30.0, -30.0]]])
    config = LossConfig(num_points=200, deep_supervision=False)
    base = {"labels": torch.tensor([0]), "masks": masks}
    outputs = {"pred_logits": logits, "pred_masks": pred}
    wrong = SetCriterion(config)(outputs, [base], 1.0)
    ignored = SetCriterion(config)(outputs, [dict(base, ignore=torch.ones(8, 8, dtype=bool))], 1.0)
    assert wrong["loss_mask"].item() > 10.0 and wrong["loss_dice"].item() > 0.5
    # Every point ignored: BCE 0, dice 1 - (0 + 1) / (0 + 0 + 1) = 0.
    assert ignored["loss_mask"].item() == 0.0 and ignored["loss_dice"].item() == 0.0
