"""`leanlens reasons MODEL DATA.csv --target COLUMN`: reason codes from real model files, as CSV or JSON."""

import csv
import json
import os

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import torch
from errors_support import refused_in_one_line
from sklearn.compose import make_column_transformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder
from typer.testing import CliRunner

import leanlens as ll
from leanlens.cli import app
from leanlens.compression.onnx_export import to_onnx
from leanlens.insight import (
    credit_applications,
    global_surrogate,
    permutation_importance,
)
from leanlens.store import Store

runner = CliRunner()


class Rebuilt:
    """A class skops would have to import from this test module to load: code from the file's writer."""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reasons")
    frame = credit_applications(120, seed=0)
    frame.to_csv(folder / "credit.csv", index=False)
    numeric = frame.drop(columns="employment")
    numeric.to_csv(folder / "numeric.csv", index=False)
    features, y = numeric.drop(columns="defaulted"), numeric["defaulted"]
    boosted = GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=0).fit(features, y)
    sio.dump(boosted, folder / "boosted.skops")
    joblib.dump(boosted, folder / "boosted.pkl")
    pipe = make_pipeline(make_column_transformer((OneHotEncoder(), ["employment"]), remainder="passthrough"),
                         LogisticRegression(max_iter=2000)).fit(frame.drop(columns="defaulted"), frame["defaulted"])
    sio.dump(pipe, folder / "pipeline.skops")
    sio.dump(Rebuilt(), folder / "rebuilt.skops")
    sio.dump(make_pipeline(FunctionTransformer(os.system), LogisticRegression()), folder / "system.skops")
    linear = LogisticRegression(max_iter=5000).fit(features, y)
    (folder / "linear.onnx").write_bytes(to_onnx(softmax_of(linear), torch.zeros(1, features.shape[1])))
    return folder, {"boosted": boosted, "pipeline": pipe, "linear": linear, "features": features}


def softmax_of(linear: LogisticRegression) -> torch.nn.Module:
    """A torch module with the logistic regression's probabilities: softmax of (-z/2, z/2) is (1 - p, p)."""
    layer = torch.nn.Linear(linear.coef_.shape[1], 2).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(np.vstack([-linear.coef_, linear.coef_]) / 2))
        layer.bias.copy_(torch.tensor([-linear.intercept_[0], linear.intercept_[0]]) / 2)
    return torch.nn.Sequential(layer, torch.nn.Softmax(dim=1)).float()


def run(*args):
    return runner.invoke(app, ["reasons", *map(str, args)])


def run_to_json(model, data, background: int, out):
    """The command's printed output and the JSON it wrote (it must succeed)."""
    result = run(model, data, "--target", "defaulted", "--out", out, "--background", background)
    assert result.exit_code == 0, result.output
    return result.output, json.loads(out.read_text())


def test_a_skops_forest_gives_exact_treeshap_reasons_as_csv(files, tmp_path):
    folder, models = files
    out = tmp_path / "reasons.csv"
    result = run(folder / "boosted.skops", folder / "numeric.csv", "--target", "defaulted", "--top", "3", "--out", out)
    assert result.exit_code == 0, result.output
    assert "exact TreeSHAP" in result.output and "log-odds" in result.output and "120 rows" in result.output
    with out.open() as stream:
        lines = list(csv.DictReader(stream))
    expected = ll.reasons(models["boosted"], models["features"], top=3)  # the command is the API
    assert len(lines) == 120 and lines[0].keys() >= {"decision", "score", "reason_3", "value_3", "contribution_3"}
    assert [line["reason_1"] for line in lines] == list(np.array(expected.feature_names)[expected.features[:, 0]])
    np.testing.assert_allclose([float(line["contribution_2"]) for line in lines], expected.contributions[:, 1])


def test_a_pipeline_with_a_text_column_writes_json_with_category_values(files, tmp_path):
    folder, _ = files
    output, written = run_to_json(folder / "pipeline.skops", folder / "credit.csv", 8, tmp_path / "reasons.json")
    assert "KernelSHAP against a background" in output and "probability" in output
    assert written["method"] == "kernelshap" and len(written["rows"]) == 120
    employment = [r["value"] for row in written["rows"] for r in row["reasons"] if r["feature"] == "employment"]
    assert employment and set(employment) <= {"employed", "self-employed", "unemployed"}
    assert set(written["summary"]) <= {"0", "1"} and all(len(row["reasons"]) == 4 for row in written["rows"])


def test_an_onnx_model_is_explained_forward_only_and_says_so(files, tmp_path):
    folder, models = files
    output, written = run_to_json(folder / "linear.onnx", folder / "numeric.csv", 10, tmp_path / "reasons.json")
    assert "KernelSHAP (the model is forward-only)" in output
    # the same logistic regression through scikit-learn, with the same ten background rows
    rows = models["features"]
    background = rows.iloc[np.sort(np.random.default_rng(0).choice(len(rows), 10, replace=False))]
    expected = ll.reasons(models["linear"], rows, background=background)
    contributions = np.array([[r["contribution"] for r in row["reasons"]] for row in written["rows"]])
    np.testing.assert_allclose(contributions, expected.contributions, atol=1e-4)
    assert [row["decision"] for row in written["rows"]] == expected.decisions.tolist()


def test_a_pickle_needs_trust_pickle(files, tmp_path):
    folder, _ = files
    out = tmp_path / "reasons.csv"
    refused_in_one_line(run(folder / "boosted.pkl", folder / "numeric.csv", "--target", "defaulted", "--out", out),
                        "boosted.pkl is a pickle: loading it runs any code it holds")
    assert not out.exists()
    trusted = run(folder / "boosted.pkl", folder / "numeric.csv", "--target", "defaulted", "--out", out,
                  "--trust-pickle")
    assert trusted.exit_code == 0 and "exact TreeSHAP" in trusted.output, trusted.output


@pytest.mark.parametrize("model, data, extra, message", [
    ("rebuilt.skops", "numeric.csv", [], "asks to rebuild 'test_cli_reasons.Rebuilt', which is not a scikit-learn"),
    ("system.skops", "numeric.csv", [], "which is not a scikit-learn class"),
    ("boosted.skops", "numeric.csv", ["--target", "outcome"], "numeric.csv has no column 'outcome'"),
    ("boosted.skops", "credit.csv", [], "x has column(s) 'employment' that the model was not fit on"),
    ("credit.csv", "numeric.csv", [], "cannot tell what kind of model credit.csv holds"),
    ("linear.onnx", "credit.csv", [], "column 'employment' holds text, and linear.onnx holds no encoder"),
    ("linear.onnx", "narrow.csv", [], "the model cannot score these rows"),
    ("boosted.skops", "numeric.csv", ["--out", "reasons.txt"], "--out reasons.txt is neither .csv nor .json"),
    ("boosted.skops", "numeric.csv", ["--top", "0"], "top=0"),
    ("boosted.skops", "missing.csv", [], "no data file at"),
    ("boosted.skops", "numeric.csv", ["--store", "lens.db"], "--store and --name go together"),
])
def test_mistakes_are_refused_in_one_line_and_write_nothing(files, tmp_path, model, data, extra, message):
    folder, _ = files
    pd.read_csv(folder / "numeric.csv").drop(columns="income").to_csv(folder / "narrow.csv", index=False)
    out = tmp_path / "reasons.csv"
    options = ["--target", "defaulted", "--out", str(out)]
    for i in range(0, len(extra), 2):  # an option given in `extra` replaces the default one
        if extra[i] in options:
            options[options.index(extra[i]) + 1] = extra[i + 1]
        else:
            options += extra[i : i + 2]
    refused_in_one_line(run(folder / model, folder / data, *options), message)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_out_file_is_kept_without_force(files, tmp_path):
    folder, _ = files
    out = tmp_path / "reasons.csv"
    out.write_text("keep me")
    refused_in_one_line(run(folder / "boosted.skops", folder / "numeric.csv", "--target", "defaulted",
                            "--out", out), "exists")
    assert out.read_text() == "keep me"


def test_store_and_name_record_the_version_with_the_report_s_attachments(files, tmp_path):
    folder, models = files
    store = tmp_path / "lens.db"
    args = [folder / "boosted.skops", folder / "numeric.csv", "--target", "defaulted", "--store", store]
    result = run(*args, "--name", "credit-v1", "--out", tmp_path / "reasons.json")
    assert result.exit_code == 0, result.output
    with Store(store) as opened:
        (version,) = opened.versions()
        attachments = {a.kind: a.payload for a in opened.attachments("credit-v1")}
        page = ll.report(opened, tmp_path / "report").read_text()
    expected = ll.reasons(models["boosted"], models["features"])
    truth = pd.read_csv(folder / "numeric.csv")["defaulted"].to_numpy()
    accuracy = np.mean(expected.decisions == truth)
    assert version.name == "credit-v1" and version.metrics == {"accuracy": pytest.approx(accuracy)}
    assert list(attachments) == ["reasons", "importance", "surrogate"]
    assert attachments["reasons"]["rows"] == 120 and attachments["reasons"]["summary"] == json.loads(
        (tmp_path / "reasons.json").read_text())["summary"]  # the same summary as the --out file
    importance = permutation_importance(models["boosted"], models["features"], truth, n_repeats=5, random_state=0)
    np.testing.assert_allclose(attachments["importance"]["mean"], importance.importances_mean)
    assert attachments["surrogate"]["rules"] == global_surrogate(models["boosted"], models["features"]).rules()
    assert page.count('class="attachment"') == 3 and "credit-v1" in page
    again = run(*args, "--name", "credit-v1", "--out", tmp_path / "again.json")
    refused_in_one_line(again, "version 'credit-v1' already exists")
    assert not (tmp_path / "again.json").exists()


def test_a_refusal_with_a_new_store_leaves_no_store_behind(files, tmp_path):
    folder, _ = files
    store = tmp_path / "new.db"
    refused_in_one_line(run(folder / "boosted.pkl", folder / "numeric.csv", "--target", "defaulted", "--store", store,
                            "--name", "v1", "--out", tmp_path / "reasons.csv"), "is a pickle")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
def test_an_xgboost_model_file_gives_the_api_s_treeshap_reasons(files, tmp_path, suffix):
    xgboost = pytest.importorskip("xgboost", reason="xgboost is not installed here")
    folder, models = files
    model = xgboost.XGBClassifier(n_estimators=15, max_depth=2).fit(models["features"], models["boosted"].predict(
        models["features"]))
    model.save_model(tmp_path / f"credit{suffix}")
    out = tmp_path / "reasons.json"
    output, written = run_to_json(tmp_path / f"credit{suffix}", folder / "numeric.csv", 8, out)
    assert "exact TreeSHAP" in output
    expected = ll.reasons(model, models["features"], background=None)  # the in-memory model, same trees
    contributions = np.array([[r["contribution"] for r in row["reasons"]] for row in written["rows"]])
    np.testing.assert_allclose(contributions, expected.contributions, atol=1e-5)
    assert [row["decision"] for row in written["rows"]] == expected.decisions.tolist()


def test_a_damaged_xgboost_file_is_refused_in_one_line(files, tmp_path):
    pytest.importorskip("xgboost", reason="xgboost is not installed here")
    folder, _ = files
    (tmp_path / "broken.json").write_text('{"learner": ')
    refused_in_one_line(run(tmp_path / "broken.json", folder / "numeric.csv", "--target", "defaulted"),
                        "broken.json is not an XGBoost model file")
