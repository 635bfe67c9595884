"""`leanlens.scale`: explanations and reason codes in shards on Ray equal the single-process run.

One local Ray cluster (2 CPUs) serves the whole module; shards are deliberately small and
uneven (3 rows, the last shorter) so that a result put back out of order, a per-sample
option cut wrongly, or a draw that depends on the batch shows up as a difference.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import torch
from errors_support import one_line
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

import leanlens as ll
from leanlens.cli import app
from leanlens.compression.onnx_export import to_onnx
from leanlens.errors import BadInput, BadOption, MissingCapability
from leanlens.insight import credit_applications
from leanlens.models import SmallResNet
from leanlens.models.onnx_model import OnnxModel
from leanlens.scale import Ray
from leanlens.scale.engine import cluster
from leanlens.scale.shards import join, plan, sample_options

ray = pytest.importorskip("ray")
SHARDS = Ray(shard_size=3)


@pytest.fixture(scope="module")
def local_ray():
    # the workers import the leanlens this test imports (a worktree's src/ when PYTHONPATH names it)
    source = str(Path(ll.__file__).parents[1])
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [source, before]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    if before is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = before


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return SmallResNet(width=4).eval()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(7, 1, 8, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def credit():
    frame = credit_applications(40, seed=1).drop(columns="employment")
    features, y = frame.drop(columns="defaulted"), frame["defaulted"]
    return features, y


def assert_same(ours, theirs) -> None:
    """Every field of two results (Explanation, ReasonCodes, error bars) equal: arrays to 1e-6, the rest exactly."""
    assert type(ours) is type(theirs)
    for field in dataclasses.fields(ours):
        a, b = getattr(ours, field.name), getattr(theirs, field.name)
        if dataclasses.is_dataclass(a):
            assert_same(a, b)
        elif isinstance(a, np.ndarray) and a.dtype != object:
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6, err_msg=field.name)
        elif isinstance(a, np.ndarray):
            assert a.tolist() == b.tolist(), field.name
        elif field.name != "options":
            assert a == b, field.name


@pytest.mark.parametrize(("method", "options"), [
    ("occlusion", {"window": (1, 2, 2)}),
    ("ig", {"steps": 8}),
    ("kernelshap", {"superpixel": 4, "samples": 40, "seed": 3}),
    ("kernelshap", {"superpixel": 2, "tol": 0.05, "seed": 3}),  # each sample stops on its own, as alone
    ("smoothgrad", {"nt_samples": 3, "seed": 5}),
    ("ig", {"steps": 8, "baseline": "uniform", "seed": 2}),
])
def test_explain_on_ray_equals_one_process(local_ray, net, images, method, options):
    progress = []
    engine = dataclasses.replace(SHARDS, on_progress=lambda done, total: progress.append((done, total)))
    ours = ll.explain(net, images, method, engine=engine, **options)
    assert_same(ours, ll.explain(net, images, method, **options))
    # one report a shard, in whatever order they finish: shards of 3, 3 and 1 rows
    done = [0] + [d for d, total in progress if total == 7]
    assert sorted(np.diff(done)) == [1, 3, 3] and done[-1] == 7


def test_per_sample_targets_and_baselines_are_cut_with_their_rows(local_ray, net, images):
    target = np.array([0, 1, 1, 0, 1, 0, 1])
    baseline = np.linspace(-1, 1, images.size, dtype=np.float32).reshape(images.shape)
    ours = ll.explain(net, images, "ig", target=target, engine=SHARDS, steps=8, baseline=baseline)
    assert_same(ours, ll.explain(net, images, "ig", target=target, steps=8, baseline=baseline))
    np.testing.assert_array_equal(ours.target, target)
    assert ours.options["baseline"] is baseline  # the whole batch's option, not the last shard's


def test_a_random_method_draws_the_same_for_a_sample_in_any_batch(net, images):
    """The contract the Ray path rests on, in one process: sample i alone or in the batch, same noise."""
    whole = ll.explain(net, images, "smoothgrad", nt_samples=3, seed=5)
    alone = ll.explain(net, images[4:5], "smoothgrad", nt_samples=3, seed=5)
    np.testing.assert_allclose(alone.values[0], whole.values[4], rtol=0, atol=1e-7)  # a batch of 1: other conv sums
    other_seed = ll.explain(net, images[4:5], "smoothgrad", nt_samples=3, seed=6)
    assert not np.allclose(other_seed.values, alone.values)


def test_an_onnx_model_and_a_dataframe_pipeline_travel_as_files(local_ray, credit):
    features, y = credit
    linear = LogisticRegression(max_iter=3000).fit(features, y)
    layer = torch.nn.Linear(features.shape[1], 2)
    onnx = OnnxModel(to_onnx(torch.nn.Sequential(layer).eval(), torch.zeros(1, features.shape[1])))
    rows = features.to_numpy(np.float32)[:8]
    assert_same(ll.explain(onnx, rows, "occlusion", engine=SHARDS), ll.explain(onnx, rows, "occlusion"))
    kernel = {"background": features.iloc[:5], "samples": 30, "seed": 1}
    ours = ll.explain(linear, features.iloc[:8], "kernelshap", engine=SHARDS, **kernel)
    assert ours.feature_names == tuple(features.columns)
    assert_same(ours, ll.explain(linear, features.iloc[:8], "kernelshap", **kernel))


def test_reason_codes_on_ray_equal_one_process(local_ray, credit):
    features, y = credit
    boosted = GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=0).fit(features, y)
    assert_same(ll.reasons(boosted, features, engine=SHARDS), ll.reasons(boosted, features))  # exact TreeSHAP
    linear = LogisticRegression(max_iter=3000).fit(features, y)
    # KernelSHAP against the 20 background rows the single-process run draws from the whole data
    ours = ll.reasons(linear, features, samples=40, engine=SHARDS)
    assert ours.method == "kernelshap" and len(ours) == len(features)
    assert_same(ours, ll.reasons(linear, features, samples=40))
    # a function is the caller's own code: Ray ships it as it ships any task
    assert_same(ll.reasons(linear.predict_proba, features.to_numpy(), samples=40, engine=SHARDS),
                ll.reasons(linear.predict_proba, features.to_numpy(), samples=40))


def test_cli_explain_and_reasons_with_ray(local_ray, net, images, credit, tmp_path):
    runner = CliRunner()
    model = ll.save(net, tmp_path / "net.leanlens")
    np.savez(tmp_path / "probes.npz", x=images, y=np.zeros(len(images), dtype=int))
    run = runner.invoke(app, ["explain", str(model), str(tmp_path / "probes.npz"), "--method", "ig",
                              "--option", "steps=8", "--out", str(tmp_path / "ig.npz"), "--ray"])
    assert run.exit_code == 0, run.output
    saved = ll.Explanation.from_npz(tmp_path / "ig.npz")
    np.testing.assert_allclose(saved.values, ll.explain(net, images, "ig", steps=8).values, rtol=0, atol=1e-6)
    features, y = credit
    sio.dump(GradientBoostingClassifier(n_estimators=5, random_state=0).fit(features, y), tmp_path / "gb.skops")
    features.assign(defaulted=y).to_csv(tmp_path / "credit.csv", index=False)
    for flags in ([], ["--ray"]):
        run = runner.invoke(app, ["reasons", str(tmp_path / "gb.skops"), str(tmp_path / "credit.csv"), "--target",
                                  "defaulted", "--out", str(tmp_path / f"reasons{len(flags)}.csv"), *flags])
        assert run.exit_code == 0, run.output
    assert (tmp_path / "reasons0.csv").read_text() == (tmp_path / "reasons1.csv").read_text()


def test_a_workers_refusal_comes_back_as_the_same_one_line_error(local_ray, net, images):
    with pytest.raises(BadOption) as error:
        ll.explain(net, images, "ig", engine=SHARDS, steps=-1)
    assert "steps=-1" in one_line(error)


@pytest.mark.parametrize(("call", "expected", "error_type"), [
    (lambda m, x: ll.explain(m, x, "ig", engine="spark"), "engine='spark'", BadOption),
    (lambda m, x: ll.explain(_local(), x, "ig", engine="ray"), "engine='ray' sends the model", BadInput),
    (lambda m, x: ll.explain(m, x, "ig", engine=Ray(shard_size=0)), "shard_size=0", BadOption),
])
def test_mistakes_are_refused_in_one_line(local_ray, net, images, call, expected, error_type):
    with pytest.raises(error_type) as error:
        call(net, images)
    assert expected in one_line(error)


def _local():
    class Local(torch.nn.Module):
        """Defined in a function: no model file can name it, so no worker could build it."""

        def forward(self, x):
            return x.flatten(1)[:, :2]

    return Local()


def test_ray_not_installed_is_one_line_naming_the_extra(monkeypatch, net, images):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(MissingCapability) as error:
        ll.reasons(lambda rows: np.c_[rows[:, :1], -rows[:, :1]], images[:, 0, 0], engine="ray")
    assert "leanlens[ray]" in one_line(error)


class FakeRay:
    """What `cluster()` asks of the ray module, recorded."""

    def __init__(self, initialized: bool):
        self.initialized, self.calls = initialized, []

    def is_initialized(self):
        return self.initialized

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))

    def shutdown(self):
        self.calls.append(("shutdown", {}))


@pytest.mark.parametrize(("initialized", "address", "env", "expected"), [
    (True, None, None, []),  # the user's own cluster: used, left running
    (False, "ray://head:10001", None, [("init", {"address": "ray://head:10001"}), ("shutdown", {})]),
    (False, None, "10.0.0.1:6379", [("init", {"address": "10.0.0.1:6379"}), ("shutdown", {})]),
    (False, None, None, [("init", {"num_cpus": 3, "include_dashboard": False}), ("shutdown", {})]),
])
def test_which_cluster_and_who_shuts_it_down(monkeypatch, initialized, address, env, expected):
    fake = FakeRay(initialized)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setenv("RAY_ADDRESS", env or "")
    with cluster(Ray(address=address, num_cpus=3)) as connected:
        assert connected is fake
    assert [(name, {k: v for k, v in kwargs.items() if k != "log_to_driver"}) for name, kwargs in fake.calls] == expected


def test_shards_cover_the_rows_in_order_and_join_back():
    cut = plan(7, 3, cpus=2)
    assert [(s.start, s.stop) for s in cut] == [(0, 3), (3, 6), (6, 7)]
    assert [(s.start, s.stop) for s in plan(10, None, cpus=2)] == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
    frame = pd.DataFrame({"a": np.arange(7.0)}, index=np.arange(7)[::-1])
    codes = [ll.reasons(lambda rows: np.c_[rows["a"], -rows["a"]], frame.iloc[s], samples=4) for s in cut]
    joined = join(codes)
    np.testing.assert_array_equal(joined.scores, np.concatenate([c.scores for c in codes]))
    assert joined.feature_names == ("a",) and len(joined) == 7
    baseline, mask = np.zeros((7, 2)), np.zeros(2)
    cut_options = sample_options({"baseline": baseline, "feature_mask": mask, "background": np.ones((7, 2))},
                                 (7, 2), cut[2])
    assert cut_options["baseline"].shape == (1, 2) and cut_options["feature_mask"] is mask
    assert cut_options["background"].shape == (7, 2)  # rows standing for "typical" are never cut


def test_errors_keep_problem_and_hint_through_pickling():
    copy = pickle.loads(pickle.dumps(BadOption("steps=-1", "use a positive int")))
    assert (type(copy), copy.problem, copy.hint, str(copy)) == (BadOption, "steps=-1", "use a positive int",
                                                                 "steps=-1 (hint: use a positive int)")
