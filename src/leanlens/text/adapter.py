"""A text classifier seen the way token attributions need it: scores from token ids and an
attention mask, and, where the model allows it, scores from word embeddings (for IG).

Three kinds are recognised: leanlens' `TextClassifier` (its tokenizer is the bundled one), a
Hugging Face `transformers` sequence classifier (the user passes its tokenizer), and any other
leanlens model of token ids, e.g. a quantized text classifier's ONNX graph (forward only; it
derives its attention mask from the pad id itself).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from leanlens.errors import BadInput, BadOption
from leanlens.text.classifier import TextClassifier

TOKENIZER_HINT = "pass tokenizer=transformers.AutoTokenizer.from_pretrained(<the model's folder or name>)"


@dataclass(frozen=True)
class TextModel:
    """Callables over (N, tokens) int64 ids and a bool attention mask; `from_embeddings` is None
    for a forward-only model."""

    tokenizer: Any
    scores: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (ids, mask) -> (N, classes)
    embed: Callable[[torch.Tensor], torch.Tensor] | None = None  # ids -> word embeddings (N, tokens, hidden)
    from_embeddings: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # (embeddings, mask)
    module: nn.Module | None = None  # put in eval mode while explaining

    @property
    def differentiable(self) -> bool:
        return self.from_embeddings is not None

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """The module in eval mode (no dropout) for the call; its own mode comes back after."""
        was_training = self.module is not None and self.module.training
        if self.module is not None:
            self.module.eval()
        try:
            yield
        finally:
            if was_training:
                self.module.train()


def text_model(model, tokenizer=None) -> TextModel:
    """The `TextModel` of a leanlens TextClassifier, a transformers sequence classifier, or a
    leanlens model of token ids; one line naming the fix for anything else."""
    module = getattr(model, "module", model)  # a leanlens TorchModel holds its module
    if isinstance(module, TextClassifier):
        return _leanlens_classifier(module, tokenizer)
    if is_hugging_face(module):
        return _hugging_face(module, _required(tokenizer))
    if isinstance(model, nn.Module):
        raise BadInput(f"cannot explain text with a {type(model).__name__}",
                       "pass a leanlens TextClassifier or a transformers AutoModelForSequenceClassification")
    from leanlens.models.wrap import wrap

    return _forward_only(wrap(model), _required(tokenizer))


def is_hugging_face(module) -> bool:
    return isinstance(module, nn.Module) and hasattr(module, "get_input_embeddings") and hasattr(module, "config")


def _required(tokenizer):
    if tokenizer is None:
        raise BadOption("explaining text needs the model's tokenizer", TOKENIZER_HINT)
    if not callable(tokenizer) or not hasattr(tokenizer, "convert_ids_to_tokens"):
        raise BadOption(f"tokenizer={type(tokenizer).__name__} is not a transformers tokenizer", TOKENIZER_HINT)
    return tokenizer


def _leanlens_classifier(module: TextClassifier, tokenizer) -> TextModel:
    from leanlens.text.encoder import load_tokenizer

    tokenizer = load_tokenizer() if tokenizer is None else _required(tokenizer)
    device = _device(module)

    def embed(ids):
        return module.embed(ids.to(device))

    def from_embeddings(embeddings, mask):
        return module.forward_embeddings(embeddings, mask.to(device))

    return TextModel(tokenizer, lambda ids, mask: from_embeddings(embed(ids), mask), embed, from_embeddings, module)


def _hugging_face(module: nn.Module, tokenizer) -> TextModel:
    device, words = _device(module), module.get_input_embeddings()

    def from_embeddings(embeddings, mask):
        return module(inputs_embeds=embeddings, attention_mask=mask.long().to(device)).logits

    def scores(ids, mask):
        return module(input_ids=ids.to(device), attention_mask=mask.long().to(device)).logits

    return TextModel(tokenizer, scores, lambda ids: words(ids.to(device)), from_embeddings, module)


def _device(module: nn.Module) -> torch.device:
    """Where the module's weights are: token ids, made on the CPU, go there."""
    return next(module.parameters()).device


def _forward_only(model, tokenizer) -> TextModel:
    def scores(ids, mask):  # the graph masks its padding from the ids themselves
        return torch.as_tensor(model.predict(ids.cpu().numpy()), dtype=torch.float32)

    return TextModel(tokenizer, scores)
