"""Token attributions for text classifiers: leanlens' TextClassifier and a transformers model.

The models are the bundled pretrained MiniLM cut to its first encoder layer (the same operators
at a sixth of the cost), with a fresh, seeded two-class head: the properties tested hold for
any weights, and no head training is spent here.
"""

import copy
import functools
import itertools
import json
import math

import numpy as np
import pytest
import torch
from errors_support import one_line
from text_support import pretrained
from torch import nn

import leanlens as ll
from leanlens.errors import BadInput, BadOption, MissingCapability, UnknownMethod
from leanlens.report.tokens import shade, token_rows, tokens_html
from leanlens.text.encoder import _quiet_transformers, _text_packages
from leanlens.text.token_explanation import TokenExplanation

pytestmark = pytest.mark.usefixtures("one_thread")  # small inputs: a second thread only contends

TEXTS = ["a truly wonderful day", "terribly bad", "unbelievably fine food"]
SHORT = "the film was not very good at all"  # 8 word pieces: 2^8 coalitions by brute force


@functools.lru_cache(maxsize=1)
def classifier():
    """leanlens' TextClassifier on the encoder's first layer, with a seeded head."""
    model = copy.deepcopy(pretrained())
    model.encoder.encoder.layer = nn.ModuleList(model.encoder.encoder.layer[:1])
    torch.manual_seed(0)
    model.head = nn.Linear(model.head.in_features, 2)
    return model.eval()


@functools.lru_cache(maxsize=1)
def hugging_face():
    """A plain transformers AutoModelForSequenceClassification from the bundled weights and its tokenizer."""
    transformers, folder = _text_packages()
    torch.manual_seed(1)
    with _quiet_transformers(transformers):
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            folder, num_labels=2, num_hidden_layers=1, attn_implementation="eager")
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    nn.init.normal_(model.classifier.weight)  # the library's fresh head (std 0.02) scores near zero
    return model.eval(), tokenizer


def scores(model, ids, mask=None):
    """The transformers model's class scores for ids (no leanlens code on the way)."""
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids) if mask is None else mask).logits


def pad_baseline_gap(model, tokenizer, text: str, target: int) -> float:
    """f(x) - f(baseline) by hand: [CLS] and [SEP] stay, the text's tokens become [PAD], and every
    position stays attended (the baseline keeps the sentence's length)."""
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    base = ids.clone()
    base[0, 1:-1] = tokenizer.pad_token_id
    if isinstance(model, ll.text.TextClassifier):  # its own forward would mask the pads out
        mask = torch.ones_like(ids, dtype=torch.bool)
        with torch.no_grad():
            ends = [model.forward_embeddings(model.embed(x), mask) for x in (ids, base)]
    else:
        ends = [scores(model, x) for x in (ids, base)]
    return float(ends[0][0, target] - ends[1][0, target])


@pytest.mark.parametrize("kind", ["leanlens", "transformers"])
def test_ig_token_values_add_up_to_the_score_gap_to_the_pad_baseline(kind):
    model, tokenizer = (classifier(), ll.text.load_tokenizer()) if kind == "leanlens" else hugging_face()
    explanation = ll.explain(model, TEXTS, method="ig", steps=32, tokenizer=tokenizer)
    for i, text in enumerate(TEXTS):
        gap = pad_baseline_gap(model, tokenizer, text, explanation.target[i])
        total = explanation.token_values(i).sum()
        assert abs(total - gap) < 0.01 * abs(gap), (text, total, gap)  # the issue's |delta| < 1 % of the gap
        assert explanation.delta[i] == pytest.approx(total - gap, abs=1e-5)
    assert explanation.error.kind == "completeness"


def test_special_tokens_and_padding_get_no_values():
    model, tokenizer = hugging_face()
    explanation = ll.explain(model, TEXTS, method="occlusion", tokenizer=tokenizer)
    for i, text in enumerate(TEXTS):
        assert explanation.tokens[i] == tuple(tokenizer.tokenize(text))  # no [CLS], [SEP] or [PAD]
        assert not np.any(explanation.values[i, len(explanation.tokens[i]):])
    assert explanation.values.shape == (3, max(len(t) for t in explanation.tokens))
    assert explanation.tokens[2][:2] == ("un", "##bel")  # word pieces, as the tokenizer cuts them
    cut = ll.explain(model, TEXTS[:1], method="occlusion", tokenizer=tokenizer, max_length=4)
    assert cut.tokens == (("a", "truly"),)  # [CLS] a truly [SEP]: max_length counts the special tokens


def brute_force_shapley(model, ids: torch.Tensor, target: int, off_id: int) -> np.ndarray:
    """Shapley values of the tokens between [CLS] and [SEP], from every subset, by the textbook formula."""
    players = list(range(1, len(ids) - 1))
    d = len(players)
    value = {}
    subsets = [s for k in range(d + 1) for s in itertools.combinations(players, k)]
    rows = ids.repeat(len(subsets), 1)
    for row, kept in zip(rows, subsets):
        row[[p for p in players if p not in kept]] = off_id
    for kept, score in zip(subsets, scores(model, rows)[:, target].double()):
        value[kept] = float(score)
    phi = np.zeros(d)
    for j, player in enumerate(players):
        for kept in subsets:
            if player not in kept:
                weight = math.factorial(len(kept)) * math.factorial(d - len(kept) - 1) / math.factorial(d)
                phi[j] += weight * (value[tuple(sorted(kept + (player,)))] - value[kept])
    return phi


def test_kernelshap_and_shapley_over_tokens_equal_brute_force_shapley_values():
    model, tokenizer = hugging_face()
    ids = torch.tensor(tokenizer(SHORT)["input_ids"])
    assert len(ids) == 10  # 8 tokens and [CLS], [SEP]
    exact = brute_force_shapley(model, ids, 1, tokenizer.mask_token_id)
    for method in ("kernelshap", "shapley"):
        explanation = ll.explain(model, [SHORT], method=method, target=1, tokenizer=tokenizer)
        np.testing.assert_allclose(explanation.token_values(0), exact, rtol=1e-4, atol=1e-6, err_msg=method)
    assert abs(exact).max() > 1e-3  # the tokens matter: a zero vector would not pass for equal


def test_a_batch_of_unequal_lengths_equals_one_text_at_a_time():
    model, tokenizer = hugging_face()
    for method, options in (("ig", {"steps": 4}), ("kernelshap", {"samples": 24})):
        batch = ll.explain(model, TEXTS, method=method, tokenizer=tokenizer, **options)
        for i, text in enumerate(TEXTS):
            alone = ll.explain(model, [text], method=method, tokenizer=tokenizer, **options)
            np.testing.assert_allclose(batch.token_values(i), alone.token_values(0), atol=2e-5, err_msg=method)
            np.testing.assert_allclose(batch.predictions[i], alone.predictions[0], atol=2e-5)
            assert batch.tokens[i] == alone.tokens[0]


def test_words_sum_their_pieces_and_are_spelt_as_in_the_text():
    model = classifier()
    pieces = ll.explain(model, TEXTS, method="occlusion")
    words = ll.explain(model, TEXTS, method="occlusion", level="word")
    assert words.tokens[2] == ("unbelievably", "fine", "food")
    assert words.token_values(2)[0] == pytest.approx(pieces.token_values(2)[:-2].sum(), abs=1e-6)
    np.testing.assert_allclose(words.token_values(2)[1:], pieces.token_values(2)[-2:], atol=1e-7)


def test_a_forward_only_model_of_token_ids_is_explained_like_the_module():
    model, tokenizer = hugging_face()

    def black_box(ids):  # e.g. a quantized graph: ids in, scores out, the padding masked from the ids
        ids = torch.as_tensor(ids).long()
        return scores(model, ids, (ids != tokenizer.pad_token_id).long()).numpy()

    module = ll.explain(model, TEXTS[:2], method="occlusion", tokenizer=tokenizer)
    box = ll.explain(black_box, TEXTS[:2], method="occlusion", tokenizer=tokenizer)
    np.testing.assert_allclose(box.values, module.values, atol=1e-5)
    with pytest.raises(MissingCapability) as error:
        ll.explain(black_box, TEXTS[:1], method="ig", tokenizer=tokenizer)
    assert "embeddings" in one_line(error)


def test_an_int8_graph_explained_on_its_own_ranks_the_tokens_as_the_float_model(tmp_path, monkeypatch):
    from scipy.stats import spearmanr

    monkeypatch.chdir(tmp_path)  # ORT's quantization tools write beside the working directory
    model = classifier()
    graph = ll.quantize(model, ll.text.tokenize(TEXTS, max_length=8), scheme="int8-dynamic")
    fp32 = ll.explain(model, TEXTS, method="occlusion")
    int8 = ll.explain(graph, TEXTS, method="occlusion", tokenizer=ll.text.load_tokenizer())
    assert int8.tokens == fp32.tokens
    rho = [spearmanr(fp32.token_values(i), int8.token_values(i))[0] for i in range(len(TEXTS))]
    assert min(rho) > 0.7, rho  # measured 0.86-1.0: int8 rounding moves values by about 0.01
    np.testing.assert_allclose(int8.values, fp32.values, atol=0.03)


def test_the_explanation_prints_saves_and_loads_without_pickle(tmp_path):
    model = classifier()
    explanation = ll.explain(model, TEXTS[:2], method="kernelshap", samples=10, level="word")
    assert "truly(" in str(explanation) and "terribly(" in str(explanation)
    loaded = TokenExplanation.from_json(explanation.to_json(tmp_path / "tokens.json"))
    assert loaded.tokens == explanation.tokens and loaded.texts == tuple(TEXTS[:2])
    np.testing.assert_array_equal(loaded.values, explanation.values)
    np.testing.assert_array_equal(loaded.error.values, explanation.error.values)
    assert loaded.error.values.shape == explanation.values.shape and loaded.level == "word"
    with pytest.raises(BadOption) as error:
        explanation.to_npz(tmp_path / "x.npz")
    assert "to_json" in one_line(error)
    (tmp_path / "bad.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(BadInput):
        TokenExplanation.from_json(tmp_path / "bad.json")


@pytest.mark.parametrize(("texts", "options", "error", "words"), [
    ([""], {}, BadInput, "text 0 is empty"),
    (["fine", 3], {}, BadInput, "text 1 is a int"),
    ("one string", {}, BadInput, "wrap it in a list"),
    (["fine"], {"method": "gradcam"}, UnknownMethod, "does not explain text"),
    (["fine"], {"target": 2}, BadInput, "out of range"),
    (["fine"], {"baseline": 0}, BadOption, "baseline="),
    (["fine"], {"level": "sentence"}, BadOption, "level="),
    (["fine"], {"max_length": 2}, BadOption, "max_length=2"),
    (["fine"], {"target": [0, 1]}, BadInput, "for 1 samples"),
])
def test_bad_text_input_is_refused_in_one_line(texts, options, error, words):
    with pytest.raises(error) as raised:
        ll.explain(classifier(), texts, **{"method": "occlusion", **options})
    assert words in one_line(raised)


def test_a_transformers_model_needs_its_tokenizer():
    with pytest.raises(BadOption) as error:
        ll.explain(hugging_face()[0], ["fine"], method="occlusion")
    assert "tokenizer=" in one_line(error)


ROWS = [{"text": "a <b>", "target": 1, "score": 0.5, "method": "ig", "level": "token",
         "tokens": [{"token": "<b>", "value": -2.0}, {"token": "a", "value": 1.0}, {"token": "x", "value": 0.0}]}]


def test_highlighted_tokens_are_escaped_and_shaded_by_sign_and_share_of_the_sentence():
    page = tokens_html(ROWS)
    assert "&lt;b&gt;" in page and "<b>" not in page  # a token is text, never markup
    assert "rgba(31,119,180,1.000)" in page  # the largest |value|, negative: full blue
    assert "rgba(214,39,40,0.500)" in page  # half of it, positive: half red
    assert "raises" in page and "lowers" in page  # the legend
    assert shade(1.0, 0.0) == ((214, 39, 40), 0.0)  # a sentence of zeros is not coloured


def test_token_rows_are_plain_json():
    explanation = ll.explain(classifier(), TEXTS[:1], method="occlusion")
    rows = json.loads(json.dumps(token_rows(explanation)))
    assert [t["token"] for t in rows[0]["tokens"]] == ["a", "truly", "wonderful", "day"]
    assert rows[0]["tokens"][3]["value"] == pytest.approx(float(explanation.values[0, 3]))
    assert "wonderful" in tokens_html(rows)


@pytest.fixture
def cli_model(monkeypatch):
    """The command line's model loading stood in for: saving and rebuilding MiniLM costs ~20 s,
    and ll.save/ll.load are tested on their own; the command is what is tested here."""
    monkeypatch.setattr("leanlens.models.modelfile.resolve_model", lambda *args: classifier())


def test_explain_text_writes_what_the_api_computes(cli_model, tmp_path):
    from typer.testing import CliRunner

    from leanlens.cli import app

    (tmp_path / "reviews.csv").write_text('id,review\n1,"a truly wonderful day"\n2,terribly bad\n3,unused\n')
    out = tmp_path / "tokens.json"
    run = CliRunner().invoke(app, ["explain-text", "model.leanlens", str(tmp_path / "reviews.csv"), "--column", "review",
                                   "--method", "occlusion", "--n", "2", "--out", str(out)])
    assert run.exit_code == 0, run.output
    written = TokenExplanation.from_json(out)
    expected = ll.explain(classifier(), TEXTS[:2], method="occlusion")
    assert written.tokens == expected.tokens
    np.testing.assert_allclose(written.values, expected.values, atol=1e-6)
    assert "wonderful(" in run.output


@pytest.mark.parametrize(("name", "content", "args", "message"), [
    ("texts.csv", "review\nfine\n", [], "--column goes with a .csv file"),
    ("texts.csv", "review\nfine\n", ["--column", "text"], "has no column 'text'"),
    ("texts.txt", "\n\n", [], "holds no texts"),
    ("texts.txt", "fine\n", ["--method", "saliency"], "does not explain text"),
])
def test_explain_text_refuses_in_one_line_and_writes_nothing(cli_model, tmp_path, name, content, args, message):
    from errors_support import refused_in_one_line
    from typer.testing import CliRunner

    from leanlens.cli import app

    (tmp_path / name).write_text(content)
    out = tmp_path / "tokens.json"
    run = CliRunner().invoke(app, ["explain-text", "m", str(tmp_path / name), "--out", str(out), *args])
    refused_in_one_line(run, message)
    assert not out.exists()


def test_ig_refined_to_a_tolerance_keeps_its_error_bar_over_texts(tmp_path):
    model = classifier()
    explanation = ll.explain(model, TEXTS[:2], method="ig", tol=1e-2, tokenizer=ll.text.load_tokenizer())
    error = explanation.error
    assert error.tol == 1e-2 and error.met.all() and len(error.change) == len(error.evaluations) == 2
    assert (error.change > 0).all()  # what the last refinement moved each text's values, per text
    loaded = TokenExplanation.from_json(explanation.to_json(tmp_path / "ig.json")).error
    np.testing.assert_array_equal(loaded.change, error.change)
