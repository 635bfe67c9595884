"""Text models: the bundled pretrained encoder, a one-input classifier on it, and its head's training.

    from leanlens import text
    train, test = ll.data.load("vader-sentiment-train"), ll.data.load("vader-sentiment-test")
    model = text.train_head(text.TextClassifier.pretrained(), train)
    q = ll.quantize(model, train, scheme="int8-dynamic")
    exp = ll.explain(model, ["what a lovely day"], method="ig")   # a TokenExplanation

Needs the `text` extra: pip install 'leanlens[text]'.
"""

from leanlens.text.classifier import TextClassifier, is_text_classifier
from leanlens.text.encoder import ENCODER_NAME, load_encoder, load_tokenizer, tokenize
from leanlens.text.token_explanation import TokenExplanation
from leanlens.text.training import pooled_features, train_head

__all__ = [
    "ENCODER_NAME", "TextClassifier", "TokenExplanation", "is_text_classifier", "load_encoder", "load_tokenizer", "pooled_features",
    "tokenize", "train_head",
]
