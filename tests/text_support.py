"""One small trained text classifier shared by the text test files: the encoder loads once a session."""

import functools

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
