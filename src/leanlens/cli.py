"""The command line: a thin layer over the public API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.markup import escape
from rich.table import Table

from leanlens.errors import LeanlensError

app = typer.Typer(add_completion=False, help="Compress a model and prove it still decides for the same reasons.")
# Wide enough for the summary table when output goes to a file or a CI log.
console = Console(width=None if Console().is_terminal else 200)
# measured on 2 shared CPU cores: 69 s with light load from other jobs (training is 56 s of it)
QUICK_HELP = "a smaller run (about a minute on 2 CPU cores)"


@app.callback()
def main() -> None:
    """leanlens command line."""


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="folder for the store and the report")] = Path("leanlens-demo"),
    quick: Annotated[bool, typer.Option("--quick", help=QUICK_HELP)] = False,
    force: Annotated[bool, typer.Option("--force", help="replace the store and report of an earlier run in --out")] = False,
) -> None:
    """Run the whole loop on the built-in lesions set: train, prune, quantize, audit, report."""
    from leanlens.demo import METHODS, run_demo

    with _progress() as progress:
        try:
            result = run_demo(out, quick=quick, stage=_stage(progress), force=force)
        except LeanlensError as error:
            progress.stop()
            # soft_wrap: the message is one line however narrow the terminal
            console.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)
            raise typer.Exit(2) from None
    console.print(summary_table(result.versions, METHODS[0]))
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


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )


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

    shown = [c for c in columns(method) if any(formatted(c.value(v), c.shown.kind) for v in versions)]
    table = Table(title=f"leanlens demo: versions (explanations: {method} on the probe set)")
    table.add_column("version")
    for col in shown:
        table.add_column(col.shown.label, justify="right")
    for v in versions:
        table.add_row(escape(v.name), *(escape(formatted(c.value(v), c.shown.kind) or "—") for c in shown))
    return table


if __name__ == "__main__":  # pragma: no cover
    app()
