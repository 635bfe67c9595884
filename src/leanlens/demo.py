"""The whole loop on the built-in hard lesions set: train, prune, quantize, audit, gate, store, report."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from leanlens.audit import Verdict, assess, audit, check, probe_set
from leanlens.compression import finetune, prune, quantize
from leanlens.data import lesions
from leanlens.errors import BadInput
from leanlens.models import SmallResNet
from leanlens.report import report
from leanlens.store import Store, Version, held_out_split

METHODS = ("gradcam++",)
# The pointing game's usual 15 px tolerance on 224 px images, scaled to our 64 px images.
POINTING_TOLERANCE = 4

# Progress hook: stage(description, total_steps) returns advance(done, total).
Stage = Callable[[str, int], Callable[[int, int], None]]


@dataclass(frozen=True)
class DemoConfig:
    images: int = 4000
    width: int = 32
    train_epochs: float = 2.0
    finetune_epochs: float = 1.0
    prune_ratio: float = 0.5


FULL = DemoConfig()
QUICK = DemoConfig(images=2000, train_epochs=2.0, finetune_epochs=1.0)


STORE, PAGE = "leanlens.db", "index.html"


@dataclass(frozen=True)
class DemoResult:
    versions: list[Version]  # as recorded, figures and scores included
    gates: dict[str, Verdict]  # each compressed version checked against v0 on the held-out probes
    report: Path
    store: Path


def prepare_out(out: Path, force: bool) -> None:
    """Make the output folder, refusing to replace a store or page that is already there unless forced."""
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {str(out)!r} is a file, not a folder", "choose a folder name")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BadInput(f"cannot create --out {str(out)!r}: {error.strerror}",
                       "choose a folder you can write to") from None
    if not os.access(out, os.W_OK):
        raise BadInput(f"--out {str(out)!r} is not writable", "choose a folder you can write to")
    taken = [name for name in (STORE, PAGE) if (out / name).exists() or (out / name).is_symlink()]
    if taken and not force:
        raise BadInput(f"--out {str(out)!r} already holds {' and '.join(taken)} from an earlier run",
                       "pass --force to replace them, or choose another --out")
    if force:  # with SQLite's side files: a stale journal would be replayed into the new store
        for name in (STORE, f"{STORE}-journal", f"{STORE}-wal", f"{STORE}-shm"):
            (out / name).unlink(missing_ok=True)


def run_demo(out_dir: str | Path = "leanlens-demo", quick: bool = False, stage: Stage | None = None, seed: int = 0,
             force: bool = False) -> DemoResult:
    """Run the demo, writing the store and the report under `out_dir`.

    An existing store or report there is replaced only when `force` is set.
    """
    config = QUICK if quick else FULL
    stage = stage or (lambda description, total: lambda done, total_: None)
    out = Path(out_dir)
    prepare_out(out, force)  # before minutes of training, not after
    torch.manual_seed(seed)

    # The hard set (faint lesions among distractor spots): compression can cost something there.
    train, test = lesions(config.images, seed=seed, difficulty="hard").split(0.25, seed=seed)
    probe = probe_set(test, n=64, seed=seed)
    v0 = finetune(SmallResNet(width=config.width), train, epochs=config.train_epochs, lr=3e-3,
                  seed=seed, on_step=stage("training v0", 0))
    store_path = out / STORE
    with Store(store_path) as store:
        store.set_probe(probe.x, probe.y, probe.masks, held_out=held_out_split(probe.y, seed=seed))
        advance = stage("auditing v0", 1)
        reference = assess(v0, test, probe, METHODS, pointing_tolerance=POINTING_TOLERANCE)
        advance(1, 1)
        store.record_assessment("v0", v0, reference)

        pruned = prune(v0, train, ratio=config.prune_ratio, criterion="taylor", round_to=8)
        v1 = finetune(pruned, train, epochs=config.finetune_epochs, lr=1e-3, seed=seed + 1,
                      on_step=stage("fine-tuning v1 (pruned)", 0))
        v2 = quantize(v1, train, scheme="int8")
        gates = {}
        for name, model, parent in (("v1-pruned", v1, "v0"), ("v2-int8", v2, "v1-pruned")):
            advance = stage(f"auditing and gating {name}", 2)
            result = audit(v0, model, test, METHODS, probe=probe, reference_assessment=reference,
                           pointing_tolerance=POINTING_TOLERANCE)
            advance(1, 2)
            store.record_assessment(name, model, result, parent=parent)
            gates[name] = check(store, model, "v0", data=test)
            advance(2, 2)
        versions = store.versions()
        page = report(store, out)
    return DemoResult(versions=versions, gates=gates, report=page, store=store_path)
