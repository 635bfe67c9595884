"""The command line: a thin layer over the public API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from leanlens.errors import LeanlensError

app = typer.Typer(add_completion=False, help="Compress a model and prove it still decides for the same reasons.")
# Wide enough for the summary table when output goes to a file or a CI log.
console = Console(width=None if Console().is_terminal else 200)
# measured on 2 idle CPU cores: 28 s (the full demo: 39 s); a busy machine can take twice that
QUICK_HELP = "a smaller run (about 30 s on 2 CPU cores)"
MODEL_HELP = "a file from ll.save, an .onnx or .keras file, or package.module:factory"
RAY_HELP = "run in shards on Ray: the cluster at RAY_ADDRESS, else a local one (needs leanlens[ray])"
# options several commands take, spelt once (cli_text and cli_reasons use them too)
Weights = Annotated[Path | None, typer.Option("--weights", help="safetensors weights for a factory MODEL")]
TrustPickle = Annotated[bool, typer.Option("--trust-pickle", help="load a pickled module (runs its code)")]
ReplaceOut = Annotated[bool, typer.Option("--force", help="replace an existing --out file")]
# what the commands exit with; `check`'s three are what CI pipelines read
HOLDS, DRIFTED, REFUSED = 0, 1, 2


@app.callback()
def main() -> None:
    """leanlens command line."""


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="folder for the store and the report")] = Path("leanlens-demo"),
    quick: Annotated[bool, typer.Option("--quick", help=QUICK_HELP)] = False,
    force: Annotated[bool, typer.Option("--force", help="replace the store and report of an earlier run in --out")] = False,
) -> None:
    """Run the whole loop on the built-in hard lesions set: train, prune, quantize, audit, gate, report."""
    from leanlens.demo import METHODS, run_demo

    with _progress() as progress:
        try:
            result = run_demo(out, quick=quick, stage=_stage(progress), force=force)
        except LeanlensError as error:
            progress.stop()
            raise _refused(error) from None
    console.print(summary_table(result.versions, METHODS[0]))
    for name, verdict in result.gates.items():
        console.print(f"gate {escape(name)} vs v0: {_verdict_line(verdict)}")
    console.print(f"report: [bold]{result.report}[/bold]")
    console.print(f"store:  {result.store}")


@app.command()
def methods() -> None:
    """List the attribution methods: family, what each needs from a model, and its options."""
    from leanlens.explain import methods as registered

    table = Table(title="attribution methods (ll.explain(model, x, method, **options))")
    for header in ("method", "family", "needs", "options (defaults)", "what it is"):
        table.add_column(header, overflow="fold")
    for name, spec in registered().items():
        options = ", ".join(f"{key}={value!r}" for key, value in spec.options.items())
        table.add_row(name, spec.family, ", ".join(sorted(spec.needs)) or "—", options or "—", spec.summary)
    console.print(table)


@app.command()
def explain(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    data: Annotated[str, typer.Argument(help="an .npz file (x, y) or a built-in dataset name")],
    method: Annotated[str, typer.Option("--method", help="an attribution method (see `leanlens methods`)")] = "ig",
    out: Annotated[Path, typer.Option("--out", help="where to write the explanation (.npz)")] = Path("attributions.npz"),
    target: Annotated[str, typer.Option("--target", help="'predicted', 'label' (the data's y) or a class index")] = "predicted",
    option: Annotated[list[str] | None, typer.Option("--option", help="a method option, NAME=VALUE (repeatable)")] = None,
    n: Annotated[int | None, typer.Option("--n", help="explain only the first N samples")] = None,
    weights: Weights = None,
    trust_pickle: TrustPickle = False,
    force: ReplaceOut = False,
    ray: Annotated[bool, typer.Option("--ray", help=RAY_HELP)] = False,
) -> None:
    """Explain a model's decisions on a dataset and save the attributions (.npz, no pickle)."""
    from leanlens.cli_inputs import method_options, read_data, targets_for
    from leanlens.explain import explain as run_explain
    from leanlens.explain.errorbars import describe_error
    from leanlens.explain.explanation import npz_path
    from leanlens.models.modelfile import resolve_model

    out = npz_path(out)  # the file to_npz will write, checked before minutes of explaining
    try:
        refuse_to_replace(out, force)
        dataset = read_data(data, n)
        with _progress(transient=True, disable=not (ray and console.is_terminal)) as progress:
            explanation = run_explain(resolve_model(model, weights, trust_pickle), dataset.x, method=method,
                                      target=targets_for(target, dataset), engine=_engine(ray, progress),
                                      **method_options(option or []))
        written = explanation.to_npz(out)
    except LeanlensError as error:
        raise _refused(error) from None
    console.print(f"{escape(method)}: {len(explanation)} samples, values {explanation.values.shape} → {escape(str(written))}")
    if explanation.delta is not None and explanation.error is None:
        console.print(f"completeness error |delta|: median {np.median(np.abs(explanation.delta)):.3g}, "
                      f"max {np.abs(explanation.delta).max():.3g}")
    console.print(escape(describe_error(explanation.error, method)))  # the error bar, or plainly none
    if explanation.stand_in_fidelity is not None:  # gradients came from the quantized graph's float twin
        console.print(str(explanation.stand_in_fidelity))


@app.command()
def compress(
    model: Annotated[str, typer.Argument(help=f"the trained float model: {MODEL_HELP}")],
    data: Annotated[str, typer.Argument(help="an .npz file (x, y) or a built-in dataset name to prune and recover on")],
    budget: Annotated[str, typer.Option(
        "--budget", help="shares of the original to reach, e.g. macs=0.3, params=0.5 or latency=0.4")],
    out: Annotated[Path, typer.Option("--out", help="a folder for model.leanlens and summary.json")],
    max_drop: Annotated[float, typer.Option("--max-drop", help="accuracy points the result may lose")] = 1.0,
    criterion: Annotated[str, typer.Option("--criterion", help="taylor, magnitude, attribution or random")] = "taylor",
    allocation: Annotated[str, typer.Option(
        "--allocation", help="uniform (every layer alike) or latency (from a latency table measured here)")] = "uniform",
    epochs_per_step: Annotated[float, typer.Option("--epochs-per-step", help="recovery fine-tuning a step")] = 2.0,
    distill: Annotated[bool, typer.Option("--distill", help="recover by distillation from the original")] = False,
    n: Annotated[int | None, typer.Option("--n", help="use only the first N samples of DATA")] = None,
    store: Annotated[Path | None, typer.Option(
        "--store", help="record the original (as v0 if new) and the compressed model in this store")] = None,
    name: Annotated[str | None, typer.Option("--name", help="the compressed model's version name in --store")] = None,
    weights: Weights = None,
    trust_pickle: TrustPickle = False,
    force: Annotated[bool, typer.Option("--force", help="replace what --out holds")] = False,
) -> None:
    """Prune a model in steps to a budget, recovering after each, within an accuracy guard."""
    from leanlens.cli_audit import check_fits, destination
    from leanlens.cli_compress import (
        HELD_OUT,
        check_out,
        record_in_store,
        trajectory_table,
        write,
    )
    from leanlens.cli_inputs import read_data
    from leanlens.compression import compress as run_compress
    from leanlens.models.modelfile import resolve_model

    try:
        check_out(out, force)
        where = destination(store, name, None)  # before the model loads: a mistake here costs nothing
        dataset = read_data(data, n)
        original = resolve_model(model, weights, trust_pickle)
        if where is not None:
            check_fits(where.probe, dataset, original)
        train, held = dataset.split(HELD_OUT, seed=0)
        with _progress(transient=True, disable=not console.is_terminal) as progress:
            advance = _stage(progress)("pruning and recovering", 0)
            result = run_compress(original, train, validation=held, budget=budget, max_drop=max_drop,
                                  criterion=criterion, epochs_per_step=epochs_per_step, distill=distill,
                                  allocation=None if allocation == "uniform" else allocation,
                                  on_step=lambda step, steps: advance(step.step, steps))
        recorded: list[str] = []
        # recorded last before --out is moved into place: a failure leaves neither half
        write(result, out, before_done=lambda: where and recorded.extend(record_in_store(where, original, result, held)))
    except LeanlensError as error:
        raise _refused(error) from None
    console.print(trajectory_table(result))
    console.print(f"written: {escape(str(out))} (model.leanlens, summary.json)")
    if recorded:
        console.print(f"recorded in {escape(str(store))}: {escape(', '.join(recorded))}")


@app.command()
def check(
    store: Annotated[Path, typer.Argument(help="the store that holds the reference version")],
    candidate: Annotated[str, typer.Option("--candidate", help=f"the model to gate: {MODEL_HELP}")],
    reference: Annotated[str, typer.Option("--reference", help="the recorded version to compare with")] = "v0",
    threshold: Annotated[float, typer.Option("--threshold", help="lowest mean Spearman a method may have")] = 0.92,
    data: Annotated[str | None, typer.Option("--data", help="an .npz file or built-in name to measure accuracy on")] = None,
    accuracy_threshold: Annotated[float | None, typer.Option(
        "--accuracy-threshold", help="lowest accuracy on --data (default: the reference's minus one point)")] = None,
    agreement_threshold: Annotated[float | None, typer.Option(
        "--agreement-threshold", help="lowest share of held-out probes predicted as the reference did")] = None,
    samples: Annotated[str, typer.Option(
        "--samples", help="'with_object': held-out probes whose mask holds an object; 'all'")] = "with_object",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check without recording the run")] = False,
    weights: Weights = None,
    trust_pickle: TrustPickle = False,
) -> None:
    """Gate a candidate: exit 0 when its explanations hold, 1 when they drifted, 2 when it cannot be checked."""
    from leanlens.audit import check as run_check
    from leanlens.cli_inputs import read_data
    from leanlens.models.modelfile import resolve_model

    try:
        verdict = run_check(store, resolve_model(candidate, weights, trust_pickle), reference,
                            data=None if data is None else read_data(data), threshold=threshold,
                            accuracy_threshold=accuracy_threshold, agreement_threshold=agreement_threshold,
                            samples=samples, dry_run=dry_run)
    except LeanlensError as error:
        raise _refused(error) from None
    except Exception:  # noqa: BLE001
        # a crash must not read as drift in a pipeline: it says why, and exits like any refusal
        console.print_exception()
        raise typer.Exit(REFUSED) from None
    console.print(verdict_table(verdict))
    recorded = "dry run, nothing recorded" if verdict.recorded is None else f"gate run #{verdict.recorded} recorded"
    console.print(f"{'holds' if verdict.holds else 'drifted'} ({recorded})")
    raise typer.Exit(HOLDS if verdict.holds else DRIFTED)


@app.command()
def audit(
    reference: Annotated[str, typer.Argument(help=f"the model compressed from: {MODEL_HELP}")],
    candidate: Annotated[str, typer.Argument(help=f"the compressed model: {MODEL_HELP}")],
    data: Annotated[str, typer.Argument(help="an .npz file (x, y[, masks]) or a built-in dataset name")],
    method: Annotated[list[str] | None, typer.Option(
        "--method", help="an attribution method to compare (repeatable; default gradcam++)")] = None,
    n: Annotated[int | None, typer.Option("--n", help="audit on the first N samples only")] = None,
    store: Annotated[Path | None, typer.Option(
        "--store", help="record the candidate in this store (made, with the reference as v0, if new)")] = None,
    name: Annotated[str | None, typer.Option("--name", help="the candidate's version name in --store")] = None,
    parent: Annotated[str | None, typer.Option(
        "--parent", help="the version the candidate was made from (default: the one holding REFERENCE)")] = None,
    pointing_tolerance: Annotated[int, typer.Option(
        "--pointing-tolerance", help="pixels around the mask that still count as a hit")] = 0,
    weights: Annotated[Path | None, typer.Option("--weights", help="safetensors weights for a factory REFERENCE")] = None,
    candidate_weights: Annotated[Path | None, typer.Option(
        "--candidate-weights", help="safetensors weights for a factory CANDIDATE")] = None,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="load pickled modules (runs their code)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as one JSON object")] = False,
) -> None:
    """Compare a candidate with its reference: accuracy, agreement, speed, size and explanations."""
    import json

    from leanlens.audit import audit as run_audit
    from leanlens.cli_audit import as_json as json_of
    from leanlens.cli_audit import methods_table, models_table, prepare, record

    try:
        job = prepare(reference, candidate, data, tuple(method or ("gradcam++",)), n=n, store=store, name=name,
                      parent=parent, weights=(weights, candidate_weights), trust_pickle=trust_pickle)
        # a bar only where someone watches: in a log it is noise, and a refusal must stay one line
        with _progress(transient=True, disable=as_json or not console.is_terminal) as progress:
            done = _stage(progress)(f"auditing ({', '.join(job.methods)})", 1)
            result = run_audit(*job.models, job.data, job.methods, probe=job.probe,
                               pointing_tolerance=pointing_tolerance)
            done(1, 1)
        written = None if job.where is None else record(job.where, *job.models, result, job.probe)
    except LeanlensError as error:
        raise _refused(error) from None
    except Exception:  # noqa: BLE001
        # as in `check`: a crash says why, and exits like a refusal (1 is the gate's "drifted")
        console.print_exception()
        raise typer.Exit(REFUSED) from None
    names = {"reference": reference, "candidate": candidate}
    recorded = None if job.where is None else {"store": str(job.where.path), "versions": written}
    if as_json:
        typer.echo(json.dumps(json_of(result, names, recorded)))
        return
    console.print(models_table(result, names))
    console.print(methods_table(result))
    if recorded is not None:
        console.print(f"recorded in {escape(recorded['store'])}: {escape(', '.join(written))}")


@app.command()
def report(
    store: Annotated[Path, typer.Argument(help="the store whose versions the page shows")],
    out: Annotated[Path, typer.Option("--out", help="folder for index.html")] = Path("leanlens-report"),
    method: Annotated[str, typer.Option("--method", help="the method whose maps and similarity are shown")] = "gradcam++",
) -> None:
    """Write an HTML report of a store's versions: figures, heatmaps, similarity to the reference."""
    from leanlens.report import report as write_report

    try:
        page = write_report(store, out, method=method)
    except LeanlensError as error:
        raise _refused(error) from None
    console.print(f"report: [bold]{escape(str(page))}[/bold]")


def verdict_table(verdict) -> Table:
    """One row a gated figure: its score, its threshold and whether it passed."""
    table = Table(title=f"leanlens check: candidate {verdict.candidate} vs {escape(verdict.reference)}")
    for header in ("check", "score", "threshold", "pass", "samples"):
        table.add_column(header, justify="left" if header == "check" else "right")
    for c in verdict.checks:
        table.add_row(escape(c.name), f"{c.score:.4f}", "—" if c.threshold is None else f"{c.threshold:.4f}",
                      "yes" if c.passed else "[red]NO[/red]", str(c.samples))
    return table


def refuse_to_replace(out: Path, force: bool) -> None:
    """An --out file that exists is kept, unless --force says to replace it."""
    if out.exists() and not force:
        raise LeanlensError(f"{out} exists", "pass --force to replace it, or choose another --out")


def _refused(error: LeanlensError) -> typer.Exit:
    """Say a user mistake in one line; the exit that goes with it (2, as `check` exits for any refusal)."""
    # soft_wrap: the message is one line however narrow the terminal
    console.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)
    return typer.Exit(REFUSED)


def _verdict_line(verdict) -> str:
    """'holds' or 'drifted', then each gated figure against its threshold."""
    figures = ", ".join(f"{escape(c.name)} {c.score:.3f}" + (f" {'≥' if c.passed else '<'} {c.threshold:.3f}"
                                                               if c.threshold is not None else "")
                        for c in verdict.checks)
    return ("[green]holds[/green]" if verdict.holds else "[red]drifted[/red]") + f" ({figures})"


def _progress(*, transient: bool = False, disable: bool = False) -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=transient, disable=disable,
    )


def _engine(ray: bool, progress: Progress):
    """`--ray`: the Ray engine, with a progress bar over its shards; else None (this process)."""
    if not ray:
        return None
    from leanlens.scale import Ray

    return Ray(on_progress=_stage(progress)("explaining on Ray (samples)", 0))


def _stage(progress: Progress):
    def stage(description: str, total: int):
        task = progress.add_task(description, total=total or None)

        def advance(done: int, total_: int) -> None:
            progress.update(task, completed=done, total=total_)

        return advance

    return stage


def summary_table(versions, method: str) -> Table:
    """The versions with the report's columns: every displayed figure that some version has."""
    from leanlens.metrics.record import formatted
    from leanlens.report.table import columns

    shown = [c for c in columns(method)
             if not c.shown.detail and any(formatted(c.value(v), c.shown.kind) for v in versions)]
    table = Table(title=f"leanlens demo: versions (explanations: {method} on the probe set)")
    table.add_column("version")
    for col in shown:
        table.add_column(col.shown.label, justify="right")
    for v in versions:
        table.add_row(escape(v.name), *(escape(formatted(c.value(v), c.shown.kind) or "—") for c in shown))
    return table


# commands in their own modules, registered here (they import the helpers above)
from leanlens.cli_reasons import reasons as _reasons

app.command(name="reasons")(_reasons)

from leanlens.cli_quantize import quantize as _quantize

app.command(name="quantize")(_quantize)

from leanlens.cli_text import explain_text as _explain_text

app.command(name="explain-text")(_explain_text)

if __name__ == "__main__":  # pragma: no cover
    app()
