"""Text classifier: the exact prompts, per-synonym template averaging, synonym mapping, cache."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamseg.model.text_classifier import (
    CHUNK_SIZE,
    TEMPLATES,
    build_prompts,
    build_text_classifier,
)
from streamseg.model.vocab import parse_vocab

OFFICIAL_TEMPLATES = [
    "a photo of a {}.",
    "This is a photo of a {}",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "a photo of a {} in the scene",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "There is a small {} in the scene.",
    "There is a medium {} in the scene.",
    "There is a large {} in the scene.",
]


class FakeText:
    """A deterministic 'tokenizer + encoder': prompt number -> a known vector.

    The tokenizer records each prompt and returns its index as the first token; the encoder
    maps index i to a fixed random vector (not normalized, so normalization is exercised).
    """

    def __init__(self, dim: int = 4) -> None:
        self.prompts: list[str] = []
        self.calls: list[int] = []
        self.table = torch.randn(2000, dim, generator=torch.Generator().manual_seed(0)) * 3

    def tokenizer(self, texts: list[str]) -> torch.Tensor:
        tokens = torch.zeros(len(texts), 77, dtype=torch.long)
        for row, text in enumerate(texts):
            tokens[row, 0] = len(self.prompts)
            self.prompts.append(text)
        return tokens

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        assert tokens.shape[1] == 77 and tokens.dtype == torch.long
        self.calls.append(tokens.shape[0])
        return self.table[tokens[:, 0]]


def test_templates_are_the_official_fourteen_in_order() -> None:
    assert list(TEMPLATES) == OFFICIAL_TEMPLATES


def test_prompt_list_is_synonym_major() -> None:
    prompts = build_prompts(["cat", "red panda"])
    assert len(prompts) == 28
    assert prompts[0] == "a photo of a cat."
    assert prompts[13] == "There is a large cat in the scene."
    assert prompts[14] == "a photo of a red panda."
    assert prompts[15] == "This is a photo of a red panda"


def test_averaging_matches_a_hand_computation() -> None:
    fake = FakeText()
    vocabulary = parse_vocab("cat|kitty,dog")
    text = build_text_classifier(fake.encode_text, fake.tokenizer, vocabulary, "cpu")
    assert fake.prompts == build_prompts(["cat", "kitty", "dog"])
    # By hand: normalize each prompt vector, mean over the synonym's 14, normalize again.
    expected = []
    for synonym in range(3):
        rows = fake.table[synonym * 14 : (synonym + 1) * 14]
        mean = (rows / rows.norm(dim=1, keepdim=True)).mean(0)
        expected.append(mean / mean.norm())
    torch.testing.assert_close(text.embeddings, torch.stack(expected))
    assert text.class_index.tolist() == [0, 0, 1]
    assert text.num_classes == 2
    assert text.embeddings.dtype == torch.float32


def test_prompts_are_encoded_in_chunks_of_128() -> None:
    fake = FakeText()
    names = ",".join(f"class {i}" for i in range(10))  # 140 prompts
    text = build_text_classifier(fake.encode_text, fake.tokenizer, parse_vocab(names), "cpu")
    assert fake.calls == [CHUNK_SIZE, 140 - CHUNK_SIZE]
    assert text.embeddings.shape == (10, 4)
    torch.testing.assert_close(text.embeddings.norm(dim=1), torch.ones(10))


def test_cache_hit_does_not_encode(tmp_path) -> None:
    vocabulary = parse_vocab("cat|kitty,dog")
    first = FakeText()
    built = build_text_classifier(
        first.encode_text, first.tokenizer, vocabulary, "cpu", tmp_path, cache_key="model-a"
    )
    assert len(list(tmp_path.glob("text-*.safetensors"))) == 1
    second = FakeText()
    second.table = torch.zeros_like(second.table)  # would give NaN/zeros if it were used
    cached = build_text_classifier(
        second.encode_text, second.tokenizer, vocabulary, "cpu", tmp_path, cache_key="model-a"
    )
    assert second.calls == []
    torch.testing.assert_close(cached.embeddings, built.embeddings)
    assert cached.class_index.tolist() == [0, 0, 1]
    # Another model, or other synonyms, is another cache entry.
    third = FakeText()
    build_text_classifier(
        third.encode_text, third.tokenizer, vocabulary, "cpu", tmp_path, cache_key="model-b"
    )
    build_text_classifier(
        third.encode_text, third.tokenizer, parse_vocab("cat,dog"), "cpu", tmp_path, "model-a"
    )
    assert len(third.calls) == 2
    assert len(list(tmp_path.glob("text-*.safetensors"))) == 3


def test_damaged_cache_file_is_recomputed(tmp_path) -> None:
    vocabulary = parse_vocab("cat")
    fake = FakeText()
    build_text_classifier(fake.encode_text, fake.tokenizer, vocabulary, "cpu", tmp_path, "m")
    (cache_file,) = tmp_path.glob("text-*.safetensors")
    cache_file.write_bytes(b"not a safetensors file")
    again = FakeText()
    text = build_text_classifier(
        again.encode_text, again.tokenizer, vocabulary, "cpu", tmp_path, "m"
    )
    assert again.calls == [14]
    torch.testing.assert_close(text.embeddings.norm(dim=1), torch.ones(1))


def test_with_the_real_open_clip_tokenizer() -> None:
    import open_clip

    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    seen: list[torch.Tensor] = []

    def encode_text(tokens: torch.Tensor) -> torch.Tensor:
        seen.append(tokens)
        return F.one_hot(tokens.argmax(dim=1), 77).float()  # EOT position as a feature

    text = build_text_classifier(encode_text, tokenizer, parse_vocab("cat"), "cpu")
    tokens = torch.cat(seen)
    assert tokens.shape == (14, 77)
    assert (tokens[:, 0] == 49406).all()  # start-of-text token
    assert text.embeddings.shape == (1, 77)
