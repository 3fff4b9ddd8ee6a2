"""In-vocabulary / out-of-vocabulary / ensembled probabilities on hand-computed cases."""

from __future__ import annotations

import math

import torch

from streamseg.model.classify import classification_logits, max_over_synonyms
from streamseg.model.ensemble import ensemble_probabilities


def logits_of(probs: list[float]) -> torch.Tensor:
    return torch.tensor([[[math.log(p) for p in probs]]], dtype=torch.float64)


def test_geometric_ensemble_hand_computed() -> None:
    # in-vocab: class probs (before void) 0.6 : 0.2 -> 0.75 / 0.25; void 0.2.
    in_logits = logits_of([0.6, 0.2, 0.2])
    out_logits = logits_of([0.2, 0.8, 0.5])  # void column ignored: out = 0.2 / 0.8
    seen = torch.tensor([True, False])
    probs = ensemble_probabilities(in_logits, out_logits, seen, alpha=0.4, beta=0.8)
    seen_score = 0.75**0.6 * 0.2**0.4  # class 0 seen: alpha
    unseen_score = 0.25**0.2 * 0.8**0.8  # class 1 unseen: beta
    total = seen_score + unseen_score
    want = [0.8 * seen_score / total, 0.8 * unseen_score / total, 0.2]
    torch.testing.assert_close(probs[0, 0], torch.tensor(want, dtype=torch.float64))


def test_invalid_mask_uses_in_vocab_only() -> None:
    in_logits = logits_of([0.6, 0.2, 0.2])
    out_logits = logits_of([0.2, 0.8, 0.5])
    probs = ensemble_probabilities(
        in_logits, out_logits, torch.tensor([True, False]), 0.4, 0.8, valid=torch.tensor([[False]])
    )
    torch.testing.assert_close(probs[0, 0], torch.tensor([0.6, 0.2, 0.2], dtype=torch.float64))


def test_underflow_in_branch_not_taken_gives_no_nan() -> None:
    in_logits = torch.tensor([[[0.0, -200.0, 0.0]]])  # class 1 probability underflows to 0
    out_logits = torch.tensor([[[0.0, 0.0]]])
    probs = ensemble_probabilities(in_logits, out_logits, torch.tensor([True, True]), 0.4, 0.8)
    assert torch.isfinite(probs).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 1))


def test_max_over_synonyms() -> None:
    logits = torch.tensor([[1.0, 5.0, 2.0, -1.0, 3.0]])
    index = torch.tensor([0, 0, 1, 2, 2])
    torch.testing.assert_close(max_over_synonyms(logits, index, 3), torch.tensor([[5.0, 2.0, 3.0]]))


def test_classification_logits_cosine_scaled_with_void() -> None:
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [math.sqrt(0.5), math.sqrt(0.5)]])
    index = torch.tensor([0, 1, 1])
    void = torch.tensor([[-2.0, 0.0]])  # normalized to (-1, 0)
    query = torch.tensor([[[3.0, 0.0]]])  # normalized to (1, 0)
    scale = torch.tensor(math.log(10.0))
    got = classification_logits(query, text, index, 2, void, scale)
    torch.testing.assert_close(got, torch.tensor([[[10.0, 10 * math.sqrt(0.5), -10.0]]]))
    # exp(logit_scale) is clamped at 100
    big = classification_logits(query, text, index, 2, void, torch.tensor(10.0))
    torch.testing.assert_close(big[0, 0, 0], torch.tensor(100.0))
