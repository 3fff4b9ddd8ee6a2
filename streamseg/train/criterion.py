"""Mask2Former's set criterion as FC-CLIP trains with it (Cheng et al. CVPR 2022,
`SetCriterion`): after Hungarian matching, class cross-entropy over all queries with the
no-object class down-weighted, and mask BCE + dice on matched pairs, both on points chosen by
uncertainty-based importance sampling; the same on every auxiliary (earlier-layer) prediction.

The datasets now give no ignore region (crowd segments and padding are background, as the
official mapper makes them: docs/TRAINING.md), so the values equal the official ones; an
ignore mask, if a caller passes one, still gives its points weight 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from streamseg.train.matcher import match
from streamseg.train.points import point_sample, uncertain_points


@dataclass(frozen=True)
class LossConfig:
    """Loss and matching settings (official FC-CLIP / Mask2Former COCO values)."""

    class_weight: float = 2.0  # weight of the class cross-entropy (and its matching cost)
    mask_weight: float = 5.0  # weight of the mask BCE
    dice_weight: float = 5.0  # weight of the dice loss
    no_object_weight: float = 0.1  # CE weight of the no-object (void) class
    num_points: int = 12544  # points per mask for the losses and the matching costs
    oversample_ratio: float = 3.0  # candidates drawn per point before importance selection
    importance_ratio: float = 0.75  # share of points chosen by uncertainty
    deep_supervision: bool = True  # losses on every auxiliary decoder prediction


def class_loss(logits: Tensor, target_classes: Tensor, no_object_weight: float) -> Tensor:
    """Weighted cross-entropy over all queries (torch's weighted mean: divides by the summed
    weights of the targets).

    Args:
        logits: (B, Q, C+1); target_classes: (B, Q) long, C = no object.
    """
    num_classes = logits.shape[-1] - 1
    weight = torch.ones(num_classes + 1, device=logits.device, dtype=torch.float32)
    weight[-1] = no_object_weight
    return F.cross_entropy(logits.float().transpose(1, 2), target_classes, weight=weight)


def mask_losses(
    point_logits: Tensor, point_labels: Tensor, point_weights: Tensor, num_masks: float
) -> tuple[Tensor, Tensor]:
    """BCE (mean over points) and dice per mask, summed and divided by `num_masks`.

    Args:
        point_logits, point_labels, point_weights: (N, P); weights 0 drop a point.

    Returns:
        (bce, dice) scalars.
    """
    bce = F.binary_cross_entropy_with_logits(point_logits, point_labels, reduction="none")
    bce = (bce * point_weights).sum(1) / point_weights.sum(1).clamp(min=1.0)
    probs = point_logits.sigmoid() * point_weights
    labels = point_labels * point_weights
    dice = 1 - (2 * (probs * labels).sum(-1) + 1) / (probs.sum(-1) + labels.sum(-1) + 1)
    return bce.sum() / num_masks, dice.sum() / num_masks


class SetCriterion(torch.nn.Module):
    """Matching + losses for one model output (and its aux outputs).

    Args:
        config: the loss settings.
    """

    def __init__(self, config: LossConfig) -> None:
        super().__init__()
        self.config = config

    def single(
        self, logits: Tensor, masks: Tensor, targets: list[dict[str, Tensor]], num_masks: float
    ) -> dict[str, Tensor]:
        """Unweighted losses of one prediction (B, Q, C+1) / (B, Q, h, w)."""
        c = self.config
        indices = match(
            logits,
            masks,
            targets,
            class_weight=c.class_weight,
            mask_weight=c.mask_weight,
            dice_weight=c.dice_weight,
            num_points=c.num_points,
        )
        batch, num_queries = logits.shape[:2]
        target_classes = torch.full(
            (batch, num_queries), logits.shape[-1] - 1, dtype=torch.long, device=logits.device
        )
        for b, (query, target) in enumerate(indices):
            target_classes[b, query.to(logits.device)] = targets[b]["labels"].to(logits.device)[
                target.to(logits.device)
            ]
        loss_ce = class_loss(logits, target_classes, c.no_object_weight)

        src, tgt, ign = [], [], []
        for b, (query, target) in enumerate(indices):
            if query.numel() == 0:
                continue
            src.append(masks[b, query.to(masks.device)])
            tgt.append(targets[b]["masks"].to(masks.device, torch.float32)[target.to(masks.device)])
            ignore = targets[b].get("ignore")
            if ignore is None:
                ignore = torch.zeros(tgt[-1].shape[-2:], device=masks.device)
            ign.append(ignore.to(masks.device, torch.float32)[None].expand(query.numel(), -1, -1))
        if not src:
            zero = masks.sum() * 0.0
            return {"loss_ce": loss_ce, "loss_mask": zero, "loss_dice": zero}
        src_masks = torch.cat(src)[:, None].float()  # (N, 1, h, w)
        with torch.no_grad():
            coords = uncertain_points(
                src_masks, c.num_points, c.oversample_ratio, c.importance_ratio
            )
            # Per image: targets of different images may differ in size (sampled by coordinates).
            labels, weights, start = [], [], 0
            for t, i in zip(tgt, ign, strict=True):
                part = coords[start : start + t.shape[0]]
                labels.append(point_sample(t[:, None], part)[:, 0])
                weights.append((point_sample(i[:, None], part, "border")[:, 0] < 0.5).float())
                start += t.shape[0]
        point_logits = point_sample(src_masks, coords)[:, 0]
        loss_mask, loss_dice = mask_losses(
            point_logits, torch.cat(labels), torch.cat(weights), num_masks
        )
        return {"loss_ce": loss_ce, "loss_mask": loss_mask, "loss_dice": loss_dice}

    def forward(
        self, outputs: dict[str, Any], targets: list[dict[str, Tensor]], num_masks: float
    ) -> dict[str, Tensor]:
        """Weighted losses; keys loss_ce/loss_mask/loss_dice and `aux{i}_...`, plus "loss"
        (their sum).

        Args:
            outputs: the model's dict (pred_logits, pred_masks, aux_outputs).
            targets: per image {"labels", "masks", optional "ignore"}.
            num_masks: number of target masks in the (global) batch, at least 1.
        """
        c = self.config
        weights = {
            "loss_ce": c.class_weight,
            "loss_mask": c.mask_weight,
            "loss_dice": c.dice_weight,
        }
        losses: dict[str, Tensor] = {}
        predictions = [("", outputs["pred_logits"], outputs["pred_masks"])]
        if c.deep_supervision:
            predictions += [
                (f"aux{i}_", aux["pred_logits"], aux["pred_masks"])
                for i, aux in enumerate(outputs.get("aux_outputs", []))
            ]
        for prefix, logits, masks in predictions:
            for name, value in self.single(logits, masks, targets, num_masks).items():
                losses[prefix + name] = value * weights[name]
        losses["loss"] = sum(losses.values())  # type: ignore[assignment]
        return losses
