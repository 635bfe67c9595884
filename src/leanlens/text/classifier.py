"""A text classifier with one input, token ids, like every other leanlens model.

Its attention mask is derived inside from `ids != pad_id`, so the exported graph, the
calibration data and `predict` all take the ids alone. The forward pass is split in two
(`embed`, then `forward_embeddings`) so that token attributions can differentiate with
respect to the word embeddings, which ids themselves do not allow.
"""

from __future__ import annotations

import torch
from torch import nn

from leanlens.errors import BadInput, MissingCapability

IDS_HINT = "pass token ids (N, tokens) from leanlens.text.tokenize, padded with the pad id"


class TextClassifier(nn.Module):
    """A pretrained encoder, mean pooling over the real tokens, and a linear head: ids → class scores.

    `ids` is (N, tokens), int64; floats holding whole numbers are taken too, since leanlens'
    datasets store x as float32 (exact for ids below 2**24).
    """

    def __init__(self, encoder: nn.Module, classes: int = 2, pad_id: int = 0):
        super().__init__()
        self.encoder = encoder
        self.pad_id = int(pad_id)
        self.head = nn.Linear(encoder.config.hidden_size, classes)

    @classmethod
    def pretrained(cls, classes: int = 2) -> TextClassifier:
        """A classifier on the bundled all-MiniLM-L6-v2 encoder, its head untrained."""
        from leanlens.text.encoder import load_encoder  # transformers loads only here

        encoder, tokenizer = load_encoder()
        return cls(encoder, classes, pad_id=tokenizer.pad_token_id)

    @property
    def vocab_size(self) -> int:
        return self.encoder.config.vocab_size

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids if torch.jit.is_tracing() else self.checked_ids(ids)  # the exporter traces plain int64 ids
        return self.forward_embeddings(self.embed(ids), ids != self.pad_id)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """The word embeddings (N, tokens, hidden) of int64 ids; positions are added later, by the encoder."""
        return self.encoder.embeddings.word_embeddings(ids)

    def forward_embeddings(self, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Class scores from word embeddings and the mask of real (not padding) tokens."""
        return self.head(self.pooled_embeddings(embeddings, mask))

    def pooled(self, ids: torch.Tensor) -> torch.Tensor:
        """The mean of the encoder's outputs over the real tokens (N, hidden): what the head reads."""
        ids = self.checked_ids(ids)
        return self.pooled_embeddings(self.embed(ids), ids != self.pad_id)

    def pooled_embeddings(self, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(inputs_embeds=embeddings, attention_mask=mask.long()).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        # clamp: a row of padding only would divide by zero; its mean is then 0
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def checked_ids(self, ids) -> torch.Tensor:
        """`ids` as int64, or one line saying why they are not token ids of this model."""
        if not isinstance(ids, torch.Tensor):
            raise BadInput(f"token ids must be a tensor, got {type(ids).__name__}", IDS_HINT)
        if ids.requires_grad:  # a gradient method asking d(score)/d(ids): they are indices, not values
            raise MissingCapability("token ids have no gradients: they index the embeddings",
                                    "use a black-box method such as 'occlusion', or differentiate "
                                    "forward_embeddings(embed(ids), ids != pad_id)")
        if ids.dim() != 2:
            raise BadInput(f"token ids must have 2 axes (N, tokens), got shape {tuple(ids.shape)}", IDS_HINT)
        if ids.dtype == torch.bool or ids.is_complex():
            raise BadInput(f"token ids must be integers, got dtype {ids.dtype}", IDS_HINT)
        if ids.is_floating_point() and not torch.equal(ids, ids.round()):
            raise BadInput("token ids must be whole numbers, and these hold fractions "
                           "(embeddings or images rather than ids?)", IDS_HINT)
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise BadInput(f"token ids must lie in 0..{self.vocab_size - 1} (the vocabulary), "
                           f"got {int(ids.min())}..{int(ids.max())}", IDS_HINT)
        return ids.long()


def is_text_classifier(module) -> bool:
    return isinstance(module, TextClassifier)
