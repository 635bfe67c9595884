"""ll.save / ll.load: one model file, no pickle, the same model back in another process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from errors_support import one_line
from onnx import numpy_helper
from safetensors.torch import save_file
from torch import nn

import leanlens as ll
from leanlens.compression.onnx_export import fold_batchnorm
from leanlens.errors import BadInput, BadOption, UnsafeFile
from leanlens.models import OnnxModel, SmallResNet, TorchModel
from leanlens.models.modelfile import resolve_model


@pytest.fixture(scope="module")
def lesions():
    return ll.data.load("lesions", n=160, seed=3)


@pytest.fixture(scope="module")
def pruned(lesions):
    torch.manual_seed(0)
    return ll.prune(SmallResNet(width=16), lesions, ratio=0.5, round_to=None)


@pytest.fixture(scope="module")
def int8(pruned, lesions):
    return ll.quantize(pruned, lesions, calibration_samples=64)


CHILD = textwrap.dedent("""
    import sys
    import numpy as np, torch
    import leanlens as ll
    folder, threads = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(threads)
    x = np.load(folder + "/x.npy")
    pruned, int8 = ll.load(folder + "/pruned.leanlens"), ll.load(folder + "/int8.leanlens")
    np.savez(folder + "/child.npz", pruned=pruned.predict(x), int8=int8.predict(x), twin=int8.twin.predict(x),
             cam=ll.explain(int8, x, method="gradcam++").values)
""")


def test_pruned_and_int8_models_round_trip_in_a_fresh_process(pruned, int8, lesions, tmp_path):
    x = lesions.x[:12]
    np.save(tmp_path / "x.npy", x)
    ll.save(pruned, tmp_path / "pruned.leanlens")
    ll.save(int8, tmp_path / "int8.leanlens")
    subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), str(torch.get_num_threads())], check=True)
    child = np.load(tmp_path / "child.npz")
    np.testing.assert_array_equal(child["pruned"], pruned.predict(x))
    np.testing.assert_array_equal(child["int8"], int8.predict(x))
    np.testing.assert_array_equal(child["twin"], int8.twin.predict(x))
    np.testing.assert_array_equal(child["cam"], ll.explain(int8, x, method="gradcam++").values)


def test_pruned_widths_come_back_where_the_factory_alone_fails(pruned, tmp_path):
    # The factory builds width 32: only the recorded widths let the pruned weights load.
    with pytest.raises(RuntimeError, match="size mismatch"):
        SmallResNet().load_state_dict(pruned.module.state_dict())
    back = ll.load(ll.save(pruned, tmp_path / "m.leanlens"))
    widths = {n: m.out_channels for n, m in back.module.named_modules() if isinstance(m, nn.Conv2d)}
    assert widths == {n: m.out_channels for n, m in pruned.module.named_modules() if isinstance(m, nn.Conv2d)}
    assert set(widths.values()) == {8, 16}
    assert all(torch.equal(a, b) for a, b in zip(back.module.state_dict().values(), pruned.module.state_dict().values()))
    assert not back.module.training


def test_int8_file_holds_both_graphs_and_rebuilds_the_same_twin(int8, tmp_path):
    path = ll.save(int8, tmp_path / "q.leanlens")
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["fp32.onnx", "meta.json", "model.onnx", "weights.safetensors"]
        meta = json.loads(archive.read("meta.json"))
    assert meta["kind"] == "onnx" and meta["twin"] == "int8"
    assert meta["architecture"]["factory"] == "leanlens.models.zoo:SmallResNet"
    back = ll.load(path)
    assert back.model_bytes == int8.model_bytes and back.fp32.model_bytes == int8.fp32.model_bytes
    twin, original = back.twin.module.state_dict(), int8.twin.module.state_dict()
    assert twin.keys() == original.keys() and all(torch.equal(twin[k], original[k]) for k in twin)
    assert back.twin.module.head.output == int8.twin.module.head.output


def test_exported_fp32_weights_equal_the_folded_torch_weights(int8):
    # Why the int8 twin can match layers by weight: the float graph holds the folded weights unchanged.
    graph = onnx.load_from_string(int8.fp32.model_bytes).graph
    exported = [numpy_helper.to_array(t) for t in graph.initializer if t.name.endswith("weight")]
    torch_weights = [m.weight.detach().numpy() for m in fold_batchnorm(int8.fp32.twin.module).modules()
                     if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(exported) == len(torch_weights) == 9
    assert all(any(w.shape == e.shape and np.array_equal(w, e) for e in exported) for w in torch_weights)


def test_plain_onnx_model_round_trips_without_twin(int8, tmp_path):
    plain = OnnxModel(int8.model_bytes)
    back = ll.load(ll.save(plain, tmp_path / "plain.leanlens"))
    assert back.twin is None and back.fp32 is None and back.model_bytes == int8.model_bytes


class NeedsWidth(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, x):
        return self.body(x)


def test_factory_kwargs_for_a_class_that_needs_arguments(tmp_path):
    torch.manual_seed(0)
    model = NeedsWidth(hidden=5).double()
    with pytest.raises(BadInput, match="factory_kwargs") as error:
        ll.save(model, tmp_path / "m.leanlens")
    one_line(error)
    back = ll.load(ll.save(model, tmp_path / "m.leanlens", factory_kwargs={"hidden": 5}))
    x = np.random.default_rng(0).normal(size=(3, 4))
    assert back.module.body[0].weight.dtype == torch.float64
    np.testing.assert_array_equal(back.predict(x), TorchModel(model).predict(x))


def test_save_refuses_what_no_other_process_could_rebuild(tmp_path):
    class Local(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(BadInput, match="importable module") as error:
        ll.save(Local(), tmp_path / "m.leanlens")
    one_line(error)
    with pytest.raises(BadInput, match="factory") as error:
        ll.save(nn.Sequential(nn.Linear(4, 2)), tmp_path / "m.leanlens")  # Sequential() builds an empty model
    one_line(error)
    with pytest.raises(BadOption, match="factory"):
        ll.save(SmallResNet(width=8), tmp_path / "m.leanlens", factory="not a path")
    assert not list(tmp_path.iterdir())  # nothing half-written


def rewrite(path, change) -> None:
    """Rewrite a model file's entries through `change(dict name -> bytes)`."""
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    change(entries)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def edit_meta(edit):
    def change(entries):
        meta = json.loads(entries["meta.json"])
        edit(meta)
        entries["meta.json"] = json.dumps(meta).encode()
    return change


def hostile_width(meta):
    meta["architecture"]["widths"]["stem.0"]["out_channels"] = 10**12


def other_width(meta):
    meta["architecture"]["widths"]["stem.0"]["out_channels"] = 12


CORRUPTIONS = {
    "not a zip": (BadInput, "not a readable", lambda p: p.write_bytes(b"hello")),
    "truncated": (BadInput, "not a readable", lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])),
    "no weights": (BadInput, "weights.safetensors", lambda p: rewrite(p, lambda e: e.pop("weights.safetensors"))),
    "no meta": (BadInput, "meta.json", lambda p: rewrite(p, lambda e: e.pop("meta.json"))),
    "damaged weights": (BadInput, "damaged", lambda p: rewrite(p, lambda e: e.update({"weights.safetensors": b"x" * 9}))),
    "wrong widths": (BadInput, "recorded widths imply", lambda p: rewrite(p, edit_meta(other_width))),
    "huge widths": (BadInput, "recorded widths imply", lambda p: rewrite(p, edit_meta(hostile_width))),
    "traversal": (UnsafeFile, r"\.\./evil", lambda p: rewrite(p, lambda e: e.update({"../evil.py": b"x"}))),
    "unknown factory": (BadInput, "cannot import", lambda p: rewrite(p, edit_meta(
        lambda m: m["architecture"].update(factory="nosuchpackage.models:Net")))),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_damaged_or_hostile_files_are_refused_in_one_line(pruned, tmp_path, case):
    error_type, match, damage = CORRUPTIONS[case]
    path = ll.save(pruned, tmp_path / "m.leanlens")
    damage(path)
    with pytest.raises(error_type, match=match) as error:
        ll.load(path)
    one_line(error)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.leanlens"]  # nothing extracted


def test_a_file_cannot_call_an_arbitrary_installed_function(pruned, tmp_path):
    marker = tmp_path / "ran"
    path = ll.save(pruned, tmp_path / "m.leanlens")
    rewrite(path, edit_meta(lambda m: m["architecture"].update(
        factory="subprocess:run", kwargs={"args": ["touch", str(marker)]})))
    with pytest.raises(UnsafeFile, match="subprocess:run") as error:
        ll.load(path)
    one_line(error)
    assert not marker.exists()


def test_a_file_naming_a_standard_module_is_refused_before_it_is_imported(pruned, tmp_path):
    import sys

    assert "this" not in sys.modules  # `import this` prints on import: the file must not get that far
    path = ll.save(pruned, tmp_path / "m.leanlens")
    rewrite(path, edit_meta(lambda m: m["architecture"].update(factory="this:s", kwargs={})))
    with pytest.raises(UnsafeFile, match="standard-library") as error:
        ll.load(path)
    one_line(error)
    assert "this" not in sys.modules


def test_compressed_entries_are_refused(pruned, tmp_path):
    path = ll.save(pruned, tmp_path / "m.leanlens")
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    with pytest.raises(UnsafeFile, match="compressed"):
        ll.load(path)


def test_resolve_model_accepts_each_documented_form(pruned, int8, tmp_path, lesions):
    x = lesions.x[:4]
    saved = ll.save(pruned, tmp_path / "model.leanlens")
    np.testing.assert_array_equal(resolve_model(str(saved)).predict(x), pruned.predict(x))
    graph = tmp_path / "model.ONNX"
    graph.write_bytes(int8.model_bytes)
    np.testing.assert_array_equal(resolve_model(graph).predict(x), int8.predict(x))
    torch.manual_seed(1)
    dense = SmallResNet()
    save_file(dense.state_dict(), tmp_path / "w.safetensors")
    built = resolve_model("leanlens.models.zoo:SmallResNet", weights=tmp_path / "w.safetensors")
    np.testing.assert_array_equal(built.predict(x), TorchModel(dense).predict(x))
    with pytest.raises(BadOption, match="--weights"):
        resolve_model(saved, weights=tmp_path / "w.safetensors")


def test_resolve_model_refuses_weights_of_another_width(pruned, tmp_path):
    save_file(pruned.module.state_dict(), tmp_path / "w.safetensors")
    with pytest.raises(BadInput, match="other shapes") as error:  # the factory builds width 32, the file has 8
        resolve_model("leanlens.models.zoo:SmallResNet", weights=tmp_path / "w.safetensors")
    one_line(error)
    with pytest.raises(BadInput, match="cannot import"):
        resolve_model("nosuchpackage.models:Net", weights=tmp_path / "w.safetensors")
    with pytest.raises(BadOption, match="needs its weights"):  # random weights are nothing to explain
        resolve_model("leanlens.models.zoo:SmallResNet")


def test_the_scores_output_travels_with_the_file(tmp_path, lesions):
    class Pair(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = SmallResNet(width=8)

        def forward(self, x):
            scores = self.net(x)
            return {"logits": scores, "flipped": -scores}

    torch.manual_seed(0)
    module = Pair()
    Pair.__module__, Pair.__qualname__ = "tests_pair_module", "Pair"  # importable under this name below
    sys.modules["tests_pair_module"] = types.SimpleNamespace(Pair=Pair)
    try:
        model = ll.wrap(module, output="flipped")
        back = ll.load(ll.save(model, tmp_path / "pair.leanlens"))
        np.testing.assert_array_equal(back.predict(lesions.x[:2]), model.predict(lesions.x[:2]))
        with pytest.raises(BadInput, match="function given as output") as error:
            ll.save(ll.wrap(module, output=lambda out: out["flipped"]), tmp_path / "f.leanlens")
        one_line(error)
    finally:
        del sys.modules["tests_pair_module"]


def test_saving_onto_a_folder_or_an_unwritable_place_is_one_line(pruned, tmp_path):
    with pytest.raises(BadInput, match="is a folder") as error:
        ll.save(pruned, tmp_path)
    one_line(error)
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc, a folder nobody can create files in")
    with pytest.raises(BadInput, match="cannot write") as error:
        ll.save(pruned, "/proc/model.leanlens")
    one_line(error)


def test_pickles_need_trust(tmp_path, lesions):
    path = tmp_path / "model.PT"
    module = SmallResNet(width=8).eval()
    torch.save(module, path)
    with pytest.raises(UnsafeFile, match="trust-pickle") as error:
        resolve_model(path)
    one_line(error)
    np.testing.assert_array_equal(resolve_model(path, trust_pickle=True).predict(lesions.x[:2]),
                                  TorchModel(module).predict(lesions.x[:2]))
    torch.save(module.state_dict(), tmp_path / "state.pth")
    with pytest.raises(BadInput, match="--weights"):
        resolve_model(tmp_path / "state.pth", trust_pickle=True)
    with pytest.raises(BadInput, match="no model file"):
        resolve_model(tmp_path / "missing.leanlens")
