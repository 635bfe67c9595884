"""One small trained text classifier shared by the text test files: the encoder loads once a session."""

import copy
import functools

from torch import nn

import leanlens as ll
from leanlens import text

TRAIN_WORDS, TEST_WORDS = 400, 300


@functools.lru_cache(maxsize=1)
def sentiment_task():
    """(train, test) samples of the VADER task; the test words' stems are unseen in training."""
    return ll.data.load("vader-sentiment-train", n=TRAIN_WORDS), ll.data.load("vader-sentiment-test", n=TEST_WORDS)


@functools.lru_cache(maxsize=1)
def pretrained():
    """The bundled encoder with an untrained head (tests must not change it: train_head copies)."""
    return text.TextClassifier.pretrained()


@functools.lru_cache(maxsize=1)
def sentiment_model():
    return text.train_head(pretrained(), sentiment_task()[0])


SHALLOW_LAYERS = 2


@functools.lru_cache(maxsize=1)
def shallow_sentiment_model():
    """The encoder's first SHALLOW_LAYERS pretrained layers (of 6) with a head trained on them:
    the same operators as the whole model at a third of its export and quantization time."""
    shallow = copy.deepcopy(pretrained())
    shallow.encoder.encoder.layer = nn.ModuleList(shallow.encoder.encoder.layer[:SHALLOW_LAYERS])
    shallow.encoder.config.num_hidden_layers = SHALLOW_LAYERS
    return text.train_head(shallow, sentiment_task()[0])
