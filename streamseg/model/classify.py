"""Cosine-similarity classification against text embeddings, max over each class's synonyms.

Reference: `get_classification_logits` in bytedance/fc-clip `fcclip/modeling/transformer_decoder/
fcclip_transformer_decoder.py` (max ensemble over synonyms as in OpenSeg/ODISE).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def max_over_synonyms(logits: Tensor, class_index: Tensor, num_classes: int) -> Tensor:
    """Per class, the largest logit among its synonyms.

    Args:
        logits: (..., S) one logit per synonym.
        class_index: (S,) long, class of each synonym (every class has at least one).
        num_classes: C.

    Returns:
        (..., C).
    """
    shape = (*logits.shape[:-1], num_classes)
    out = torch.full(shape, float("-inf"), dtype=logits.dtype, device=logits.device)
    index = class_index.to(logits.device).expand(*logits.shape[:-1], -1)
    return out.scatter_reduce(-1, index, logits, reduce="amax", include_self=True)


def classification_logits(
    embeddings: Tensor,
    text_embeddings: Tensor,
    class_index: Tensor,
    num_classes: int,
    void_embedding: Tensor,
    logit_scale: Tensor,
) -> Tensor:
    """Scaled cosine logits of C classes plus void.

    Args:
        embeddings: (B, Q, D) query or region embeddings (normalized here).
        text_embeddings: (S, D) L2-normalized synonym embeddings.
        class_index: (S,) long, class of each synonym.
        num_classes: C.
        void_embedding: (1, D) learned void embedding (normalized here).
        logit_scale: scalar log-scale; exp is clamped at 100 as in CLIP.

    Returns:
        (B, Q, C + 1), the last column void.
    """
    embeddings = F.normalize(embeddings, dim=-1)
    scale = torch.clamp(logit_scale.exp(), max=100)
    classifier = torch.cat([text_embeddings, F.normalize(void_embedding, dim=-1)], dim=0)
    logits = scale * embeddings @ classifier.to(embeddings).T
    per_class = max_over_synonyms(logits[..., :-1], class_index, num_classes)
    return torch.cat([per_class, logits[..., -1:]], dim=-1)
