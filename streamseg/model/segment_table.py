"""Each segment's embedding, as tensor work on the device: the L2-normalized mean of its
queries' CLIP embeddings (areas and boxes come from `code_stats`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def segment_embeddings(embeddings: Tensor, segment_of: Tensor, num_ids: int) -> Tensor:
    """Each segment's embedding: normalize(mean of its queries' embeddings).

    Args:
        embeddings: (B, K, D) embedding of each slot's query.
        segment_of: (B, K) long segment id of each slot (0 = none).
        num_ids: N, the largest segment id.

    Returns:
        (B, N, D) in the embeddings' dtype; rows of absent ids are zeros.
    """
    batch, slots, dim = embeddings.shape
    sums = embeddings.new_zeros((batch, num_ids + 1, dim))
    sums.scatter_add_(1, segment_of[..., None].expand(batch, slots, dim), embeddings)
    counts = embeddings.new_zeros((batch, num_ids + 1))
    counts.scatter_add_(1, segment_of, torch.ones_like(segment_of, dtype=embeddings.dtype))
    mean = sums[:, 1:] / counts[:, 1:, None].clamp(min=1)
    return F.normalize(mean, dim=-1)
