"""Each segment's embedding, as tensor work on the device: the L2-normalized mean of its
queries' CLIP embeddings (areas and boxes come from `code_stats`); a query whose mask pooled
nothing on the stride-32 CLIP map counts as a zero row (appearance unknown)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def segment_embeddings(
    embeddings: Tensor, segment_of: Tensor, num_ids: int, valid: Tensor | None = None
) -> Tensor:
    """Each segment's embedding: normalize(mean of its queries' embeddings).

    Args:
        embeddings: (B, K, D) embedding of each slot's query.
        segment_of: (B, K) long segment id of each slot (0 = none).
        num_ids: N, the largest segment id.
        valid: (B, K) bool, the slot's query mask covered a cell of the CLIP map (FC-CLIP's
            `valid`); None: all did. An invalid query's embedding is the CLIP head's output
            for an empty pooling, one constant direction shared by every such query, so it is
            zeroed: a segment of invalid queries only gets a zero row ("appearance unknown",
            which the tracker and the search read as such), a mixed one the direction of its
            valid queries.

    Returns:
        (B, N, D) in the embeddings' dtype; rows of absent ids (or of no valid query) are
        zeros.
    """
    if valid is not None:
        embeddings = embeddings.masked_fill(~valid[..., None], 0)
    batch, slots, dim = embeddings.shape
    sums = embeddings.new_zeros((batch, num_ids + 1, dim))
    sums.scatter_add_(1, segment_of[..., None].expand(batch, slots, dim), embeddings)
    counts = embeddings.new_zeros((batch, num_ids + 1))
    counts.scatter_add_(1, segment_of, torch.ones_like(segment_of, dtype=embeddings.dtype))
    mean = sums[:, 1:] / counts[:, 1:, None].clamp(min=1)
    return F.normalize(mean, dim=-1)
