"""FC-CLIP's geometric ensemble of in-vocabulary and out-of-vocabulary class scores.

Reference: bytedance/fc-clip `fcclip/fcclip.py` (inference), after ODISE (NVlabs/ODISE
`odise/modeling/meta_arch/odise.py`). Pure function.
"""

from __future__ import annotations

import torch
from torch import Tensor


def ensemble_probabilities(
    in_logits: Tensor,
    out_logits: Tensor,
    seen: Tensor,
    alpha: float,
    beta: float,
    valid: Tensor | None = None,
) -> Tensor:
    """Ensembled class probabilities with void.

    in = softmax(in_logits[..., :C]), out = softmax(out_logits[..., :C]) (void dropped);
    cls = seen * log(in^(1-alpha) * out^alpha) + (1 - seen) * log(in^(1-beta) * out^beta);
    void = softmax(in_logits)[..., C]; probs = [softmax(cls) * (1 - void), void].

    Args:
        in_logits: (B, Q, C + 1) in-vocabulary logits, last = void.
        out_logits: (B, Q, C + 1) or (B, Q, C) out-of-vocabulary logits.
        seen: (C,) bool, class seen in training.
        alpha: exponent of out-of-vocab for seen classes.
        beta: exponent of out-of-vocab for unseen classes.
        valid: optional (B, Q) bool; where False, alpha and beta are 0 (in-vocab only), as the
            official `ensemble_on_valid_mask`.

    Returns:
        (B, Q, C + 1) probabilities (rows sum to 1); the official code then uses
        log(probs + 1e-8) as the class logits of post-processing.
    """
    num_classes = in_logits.shape[-1] - 1
    in_probs = in_logits[..., :num_classes].softmax(-1)
    out_probs = out_logits[..., :num_classes].softmax(-1)
    alpha_t = torch.full_like(in_probs, alpha)
    beta_t = torch.full_like(in_probs, beta)
    if valid is not None:
        weight = valid.to(in_probs.dtype).unsqueeze(-1)
        alpha_t = alpha_t * weight
        beta_t = beta_t * weight
    seen_part = (in_probs ** (1 - alpha_t) * out_probs**alpha_t).log()
    unseen_part = (in_probs ** (1 - beta_t) * out_probs**beta_t).log()
    # `where` instead of the official multiply-and-add: equal whenever finite, and a -inf
    # (a probability that underflowed to 0) in the branch not taken cannot turn into NaN.
    cls = torch.where(seen.to(in_probs.device), seen_part, unseen_part)
    void = in_logits.softmax(-1)[..., -1:]
    return torch.cat([cls.softmax(-1) * (1.0 - void), void], dim=-1)
