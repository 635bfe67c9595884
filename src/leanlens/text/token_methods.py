"""The attribution methods on tokens, each one of `ll.explain`'s own methods on a view of the text.

- "ig": Integrated Gradients on the word embeddings. The input is the (N, tokens, hidden)
  embeddings; the baseline puts the pad token's embedding at every attributed token and keeps
  [CLS], [SEP] and the padding as they are, so those get exactly zero and the token values sum
  to f(x) - f(baseline) up to the quadrature error (`delta`). Positions are added by the
  encoder, so the baseline keeps the sentence's length and order.
- forward-only methods ("occlusion", "kernelshap", "shapley", "lime"): each text is a game
  whose features are its tokens, a feature's values its token id. A removed token becomes
  [MASK], with the attention mask unchanged: BERT-style encoders were trained to read [MASK]
  as "a word is hidden here", and it works through the ids alone, so the same explanation runs
  on a quantized ONNX graph that derives its attention mask from the pad id. (A pad id there
  would delete the token, changing the text's length as well.)

Every method's options are those of the method in `ll.methods()`; the options that say what
"removed" means (baseline, feature_mask, ...) are fixed by the text view and refused.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from leanlens.errors import BadOption, MissingCapability, UnknownMethod
from leanlens.explain.explanation import Explanation
from leanlens.text.adapter import TextModel
from leanlens.text.tokens import Encoded

FORWARD_ONLY = ("occlusion", "kernelshap", "shapley", "lime")
TEXT_METHODS = ("ig",) + FORWARD_ONLY
FIXED_BY_TEXT = ("baseline", "feature_mask", "superpixel", "background")


def check_text_method(method) -> str:
    if method not in TEXT_METHODS:
        raise UnknownMethod(f"method {method!r} does not explain text",
                            "use one of " + ", ".join(repr(m) for m in TEXT_METHODS))
    return method


def check_text_options(options: dict) -> None:
    fixed = sorted(set(options) & set(FIXED_BY_TEXT))
    if fixed:
        raise BadOption(f"{fixed[0]}= cannot be set when explaining text",
                        "removed tokens are [MASK] (the IG baseline the pad token); drop the option")


class _PackedEmbeddings(nn.Module):
    """Scores of word embeddings with the attention mask riding along as one more channel.

    Why packed: `ll.explain`'s IG interpolates one tensor between input and baseline. Both carry
    the same mask channel, so the path never changes it and it gets exactly zero attribution.
    """

    def __init__(self, model: TextModel, module: nn.Module | None):
        super().__init__()
        self.model, self.inner = model, module  # `inner` registered so that eval() reaches it

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        return self.model.from_embeddings(packed[..., :-1], packed[..., -1] > 0.5)


def embedding_ig(model: TextModel, batch: Encoded, target: np.ndarray, options: dict) -> tuple[np.ndarray, Explanation]:
    """IG token values on the padded grid (N, tokens) and the embedding-level explanation (delta, error)."""
    from leanlens.explain.api import explain

    if not model.differentiable:
        raise MissingCapability("method 'ig' needs the model's word embeddings, which this model does not expose",
                                "use a forward-only method: " + ", ".join(repr(m) for m in FORWARD_ONLY))
    with torch.no_grad():
        inputs = model.embed(batch.ids)
        players = batch.players[..., None].to(inputs.device)
        base = torch.where(players, model.embed(torch.full_like(batch.ids, batch.pad_id)), inputs)
    channel = batch.mask[..., None].to(inputs.device, inputs.dtype)
    packed, packed_base = torch.cat([inputs, channel], -1), torch.cat([base, channel], -1)
    result = explain(_PackedEmbeddings(model, model.module), packed, "ig", target=target, baseline=packed_base,
                     **options)
    return result.values.sum(-1), result


def sentence_game_scores(model: TextModel, batch: Encoded, i: int) -> Callable[[np.ndarray], np.ndarray]:
    """The scores of text i as a function of its tokens' ids, (M, players) -> (M, classes):
    special tokens stay where they are; a row's values are the ids at the players' places."""
    sentence, positions = batch.sentence(i), batch.positions(i)

    def scores(players: np.ndarray) -> np.ndarray:
        ids = sentence.repeat(len(players), 1)
        ids[:, positions] = torch.as_tensor(np.rint(players), dtype=torch.long)
        with torch.no_grad():
            return model.scores(ids, torch.ones_like(ids, dtype=torch.bool)).float().cpu().numpy()

    return scores


def forward_only(model: TextModel, batch: Encoded, i: int, method: str, target: int, options: dict) -> Explanation:
    """One text's explanation by a forward-only method over its tokens (values: (1, players))."""
    from leanlens.explain.api import explain

    off_id = model.tokenizer.mask_token_id
    if off_id is None:
        raise MissingCapability(f"method {method!r} hides tokens as [MASK], and this tokenizer has no mask token",
                                "use method='ig', or a tokenizer with a mask token")
    players = batch.ids[i, batch.positions(i)].numpy()[None].astype(np.float32)  # exact: ids < 2**24
    return explain(sentence_game_scores(model, batch, i), players, method, target=target,
                   baseline=float(off_id), **options)
