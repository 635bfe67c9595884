"""leanlens.text: the bundled encoder, a one-input classifier on it, the VADER task and head training."""

import sys

import numpy as np
import pytest
import torch
from errors_support import one_line
from text_support import TEST_WORDS, pretrained, sentiment_model, sentiment_task

import leanlens as ll
from leanlens import text
from leanlens.data.sentiment import MARGIN, STEM, _lexicon
from leanlens.errors import BadInput, MissingCapability


def test_the_head_learns_the_sentiment_of_held_out_words():
    _, test = sentiment_task()
    scores = ll.wrap(sentiment_model()).predict(test.x)
    accuracy = (scores.argmax(1) == test.y).mean()
    majority = max(test.y.mean(), 1 - test.y.mean())
    # frozen MiniLM + logistic regression on 400 words: ~0.85 here; chance (the majority class) ~0.55
    assert accuracy >= 0.75 and accuracy >= majority + 0.2, (accuracy, majority)


def test_training_leaves_its_input_untouched_and_changes_only_the_head():
    model, before = sentiment_model(), pretrained()
    assert torch.equal(before.head.weight, pretrained().head.weight)  # the cached input is as it was built
    assert not torch.equal(model.head.weight, before.head.weight)
    for (name, trained), untouched in zip(model.encoder.state_dict().items(), before.encoder.state_dict().values()):
        assert torch.equal(trained, untouched), name


def test_the_sentiment_task_is_the_lexicon_with_a_split_by_stem():
    words, ratings = _lexicon()
    rating = dict(zip(words, ratings))
    train, test = ll.data.load("vader-sentiment-train"), ll.data.load("vader-sentiment-test")
    everything = ll.data.load("vader-sentiment")
    assert len(everything) == len(train) + len(test) == int((np.abs(ratings) >= MARGIN).sum())
    assert len(set(everything.texts)) == len(everything)  # one label a text
    for data in (train, test):
        labels = np.array([rating[t] > 0 for t in data.texts])
        np.testing.assert_array_equal(data.y, labels)
        assert min(abs(rating[t]) for t in data.texts) >= MARGIN and data.classes == ("negative", "positive")
    assert not {t[:STEM].lower() for t in train.texts} & {t[:STEM].lower() for t in test.texts}
    assert 0.15 < len(test) / len(everything) < 0.25
    # the ids are the tokenizer's: "good" is [CLS] good [SEP], then padding
    good = everything.texts.index("good")
    np.testing.assert_array_equal(everything.x[good][:4], text.tokenize(["good"])[0][:4])


def test_a_sample_of_the_task_keeps_each_text_with_its_ids():
    data = ll.data.load("vader-sentiment-test", n=TEST_WORDS)
    full = ll.data.load("vader-sentiment-test")
    rows = [full.texts.index(t) for t in data.texts]
    np.testing.assert_array_equal(full.x[rows], data.x)
    half, rest = data.split(0.5, seed=1)
    assert sorted(half.texts + rest.texts) == sorted(data.texts)


def test_scores_are_the_masked_mean_of_the_encoder_outputs_whatever_the_padding():
    model = sentiment_model()
    ids = text.tokenize(["wonderful", "not bad at all", "awful"], max_length=12)
    with torch.no_grad():
        ours = model(torch.as_tensor(ids))
        # an independent oracle: transformers' own forward with the explicit mask, pooled by hand
        mask = torch.as_tensor(ids != 0)
        hidden = model.encoder(input_ids=torch.as_tensor(ids), attention_mask=mask.long()).last_hidden_state
        pooled = torch.stack([h[m].mean(0) for h, m in zip(hidden, mask)])
        longer = model(torch.as_tensor(text.tokenize(["wonderful", "not bad at all", "awful"], max_length=24)))
        as_floats = model(torch.as_tensor(ids, dtype=torch.float32))
        split = model.forward_embeddings(model.embed(torch.as_tensor(ids)), mask)
    torch.testing.assert_close(ours, model.head(pooled), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(longer, ours, atol=1e-5, rtol=1e-5)  # padding is masked out
    assert torch.equal(as_floats, ours) and torch.equal(split, ours)


def test_cutting_unused_padding_columns_changes_no_pooled_value():
    from leanlens.text.training import pooled_features

    model = pretrained()
    ids = text.tokenize(["happy", "sad day"], max_length=16)
    with torch.no_grad():
        whole = model.pooled(torch.as_tensor(ids))
    torch.testing.assert_close(pooled_features(model, ids), whole, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("ids, message", [
    (torch.full((2, 5), 0.5), "whole numbers"),
    (torch.zeros(2, 5, 3, dtype=torch.long), "2 axes"),
    (torch.tensor([[101, 40_000, 102]]), "vocabulary"),
    (torch.tensor([[101, -1, 102]]), "vocabulary"),
    (torch.ones(2, 5, dtype=torch.bool), "integers"),
])
def test_what_is_not_token_ids_is_refused_in_one_line(ids, message):
    with pytest.raises(BadInput, match=message) as error:
        sentiment_model()(ids)
    one_line(error)


def test_predict_on_images_is_refused_in_one_line():
    with pytest.raises(BadInput) as error:
        ll.wrap(sentiment_model()).predict(np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32))
    assert "2 axes" in one_line(error)


def test_gradient_methods_are_refused_in_one_line_and_occlusion_runs():
    ids = text.tokenize(["good", "bad"], max_length=6)
    with pytest.raises(MissingCapability, match="token ids have no gradients") as error:
        ll.explain(sentiment_model(), ids, method="saliency")
    one_line(error)
    occlusion = ll.explain(sentiment_model(), ids, method="occlusion")
    assert occlusion.values.shape == ids.shape


def test_a_missing_text_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now raises ImportError
    for call in (text.load_encoder, lambda: text.tokenize(["good"]), lambda: ll.data.load("vader-sentiment")):
        with pytest.raises(MissingCapability, match="transformers") as error:
            call()
        assert "leanlens[text]" in one_line(error)


def test_tokenize_refuses_a_bare_string():
    with pytest.raises(BadInput) as error:
        text.tokenize("good")
    one_line(error)
