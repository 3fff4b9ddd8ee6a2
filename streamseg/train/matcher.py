"""Hungarian matching of queries to ground-truth segments (Mask2Former `HungarianMatcher`,
Cheng et al. CVPR 2022): cost = w_class * (-p(class)) + w_mask * BCE + w_dice * dice, the mask
costs on points sampled uniformly at random (the same points for predictions and targets),
solved with lapx's Jonker-Volgenant (`lap.lapjv`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from streamseg.train.points import point_sample


def pairwise_bce_cost(logits: Tensor, targets: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mean binary cross-entropy of every prediction against every target over points.

    Args:
        logits: (Q, P) mask logits at the points; targets: (T, P) in {0, 1};
        weights: (P,) point weights (0 = ignored point), default all 1.

    Returns:
        (Q, T); the mean divides by P (as officially), ignored points contribute 0.
    """
    num_points = logits.shape[1]
    pos = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.ones_like(logits), reduction="none"
    )
    neg = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.zeros_like(logits), reduction="none"
    )
    if weights is not None:
        pos, neg = pos * weights, neg * weights
    return (pos @ targets.T + neg @ (1 - targets).T) / num_points


def pairwise_dice_cost(logits: Tensor, targets: Tensor, weights: Tensor | None = None) -> Tensor:
    """1 - (2 |p t| + 1) / (|p| + |t| + 1) for every prediction/target pair, p = sigmoid.

    Args: as `pairwise_bce_cost`. Returns: (Q, T).
    """
    probs = logits.sigmoid()
    if weights is not None:
        probs, targets = probs * weights, targets * weights
    numerator = 2 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def solve_assignment(cost: Tensor) -> tuple[Tensor, Tensor]:
    """Minimum-cost matching of a (Q, T) cost with Q >= T: every target gets one query.

    Returns:
        (query indices, target indices), both (T,) long, sorted by query.
    """
    import lap

    num_queries, num_targets = cost.shape
    if num_targets == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    matrix = np.ascontiguousarray(cost.detach().double().cpu().numpy())
    if not np.isfinite(matrix).all():
        raise ValueError("matching cost has NaN or inf entries")
    _, row_to_col, _ = lap.lapjv(matrix, extend_cost=num_queries != num_targets)
    rows = np.nonzero(row_to_col >= 0)[0]
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(
        row_to_col[rows], dtype=torch.long
    )


@torch.no_grad()
def match(
    pred_logits: Tensor,
    pred_masks: Tensor,
    targets: list[dict[str, Tensor]],
    *,
    class_weight: float = 2.0,
    mask_weight: float = 5.0,
    dice_weight: float = 5.0,
    num_points: int = 12544,
    generator: torch.Generator | None = None,
) -> list[tuple[Tensor, Tensor]]:
    """Match each image's queries to its targets.

    Args:
        pred_logits: (B, Q, C+1) class logits; pred_masks: (B, Q, h, w) mask logits.
        targets: per image {"labels": (T,) long, "masks": (T, H, W) bool/float,
            optional "ignore": (H, W) bool}; masks at any size (sampled by coordinates).
        generator: RNG of the point coordinates (default torch's global RNG).

    Returns:
        per image (query indices, target indices), (T,) long each, on the CPU.
    """
    results = []
    for b, target in enumerate(targets):
        labels = target["labels"]
        if labels.numel() == 0:
            empty = torch.zeros(0, dtype=torch.long)
            results.append((empty, empty))
            continue
        probs = pred_logits[b].float().softmax(-1)  # (Q, C+1)
        cost_class = -probs[:, labels]
        coords = torch.rand(1, num_points, 2, device=pred_masks.device, generator=generator)
        out = point_sample(
            pred_masks[b][:, None].float(), coords.expand(pred_masks.shape[1], -1, -1)
        )
        out = out[:, 0]  # (Q, P)
        tgt_masks = target["masks"].to(pred_masks.device, torch.float32)
        tgt = point_sample(tgt_masks[:, None], coords.expand(tgt_masks.shape[0], -1, -1))[:, 0]
        weights = None
        if target.get("ignore") is not None:
            ignore = target["ignore"].to(pred_masks.device, torch.float32)[None, None]
            weights = (point_sample(ignore, coords, "border")[0, 0] < 0.5).float()
        cost = (
            mask_weight * pairwise_bce_cost(out, tgt, weights)
            + class_weight * cost_class
            + dice_weight * pairwise_dice_cost(out, tgt, weights)
        )
        results.append(solve_assignment(cost.cpu()))
    return results
