"""Texts as a padded batch of token ids, with what attributions need to know about each token:
whether it is a player (a real token of the text) or fixed (special tokens and padding), its
string, and the word it belongs to.

Special tokens ([CLS], [SEP]) stay in every input the model sees but are never attributed:
they are the same in every sentence and no word of the text. Padding is masked out by the
attention mask and is not attributed either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from leanlens.errors import BadInput, MissingCapability

TEXTS_HINT = "pass a list of non-empty strings, e.g. ['a fine day', 'not good']"


@dataclass(frozen=True)
class Encoded:
    """A tokenized batch: ids and attention mask (N, tokens), and a sample's players in order."""

    ids: torch.Tensor  # int64, padded with the pad id
    mask: torch.Tensor  # bool, True on real tokens (special ones included)
    players: torch.Tensor  # bool, True on the tokens that get attributions
    tokens: tuple[tuple[str, ...], ...]  # the players' word pieces, one tuple a sample
    words: tuple[tuple[int, ...], ...]  # each player's word index within its sample
    word_texts: tuple[tuple[str, ...], ...]  # each word as it is written in the text
    pad_id: int

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self, i: int) -> torch.Tensor:
        """Where sample i's players sit among its tokens."""
        return self.players[i].nonzero()[:, 0]

    def sentence(self, i: int) -> torch.Tensor:
        """Sample i's ids without padding (1-D)."""
        return self.ids[i, self.mask[i]]


def checked_texts(texts) -> list[str]:
    """`texts` as a list of non-empty strings, or one line saying which item is not."""
    if isinstance(texts, str):
        raise BadInput("explain() takes a list of texts, got one string", f"wrap it in a list: [text]; {TEXTS_HINT}")
    texts = list(texts)
    if not texts:
        raise BadInput("no texts to explain", TEXTS_HINT)
    for i, item in enumerate(texts):
        if not isinstance(item, str):
            raise BadInput(f"text {i} is a {type(item).__name__}, not a string", TEXTS_HINT)
        if not item.strip():
            raise BadInput(f"text {i} is empty", "drop empty texts before explaining; " + TEXTS_HINT)
    return texts


def encode(tokenizer, texts: list[str], max_length: int) -> Encoded:
    """Tokenize, pad to the longest text and mark the players; texts longer than `max_length`
    tokens are cut (the special tokens included)."""
    if not getattr(tokenizer, "is_fast", False):
        raise MissingCapability(f"{type(tokenizer).__name__} is a slow tokenizer: it cannot say which word "
                                "each token belongs to", "load the fast one: AutoTokenizer.from_pretrained(..., use_fast=True)")
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_attention_mask=True,
                      return_special_tokens_mask=True, return_offsets_mapping=True)
    ids = torch.as_tensor(np.asarray(batch["input_ids"], dtype=np.int64))
    mask = torch.as_tensor(np.asarray(batch["attention_mask"])) == 1
    players = mask & (torch.as_tensor(np.asarray(batch["special_tokens_mask"])) == 0)
    empty = (~players.any(1)).nonzero()
    if len(empty):
        raise BadInput(f"text {int(empty[0, 0])} has no tokens besides the special ones",
                       "drop texts the tokenizer reads as nothing; " + TEXTS_HINT)
    tokens, words, word_texts = [], [], []
    for i, text in enumerate(texts):
        kept = players[i].nonzero()[:, 0].tolist()
        tokens.append(tuple(tokenizer.convert_ids_to_tokens([int(ids[i, k]) for k in kept])))
        numbers, spelled = _words(batch.word_ids(i), batch["offset_mapping"][i], kept, text)
        words.append(numbers)
        word_texts.append(spelled)
    return Encoded(ids, mask, players, tuple(tokens), tuple(words), tuple(word_texts), int(tokenizer.pad_token_id))


def _words(word_ids: Sequence[int | None], offsets, kept: list[int], text: str):
    """Each player's word, numbered 0.. in order, and each word's text (from its pieces' offsets)."""
    numbers, spans, index = [], [], {}
    for k in kept:
        word = word_ids[k] if word_ids[k] is not None else -1 - k  # a token outside any word stands alone
        if word not in index:
            index[word] = len(index)
            spans.append(list(offsets[k]))
        spans[index[word]][1] = offsets[k][1]
        numbers.append(index[word])
    return tuple(numbers), tuple(text[start:end] for start, end in spans)


def sum_by_word(values: np.ndarray, words: Sequence[int]) -> np.ndarray:
    """Token values summed within each word (a word's pieces share its credit)."""
    out = np.zeros(max(words) + 1, dtype=np.float64)
    np.add.at(out, np.asarray(words), values)
    return out
