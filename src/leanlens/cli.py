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
from rich.table import Table

from leanlens.errors import LeanlensError

app = typer.Typer(add_completion=False, help="Compress a model and prove it still decides for the same reasons.")
# Wide enough for the summary table when output goes to a file or a CI log.
console = Console(width=None if Console().is_terminal else 140)


@app.callback()
def main() -> None:
    """leanlens command line."""


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="folder for the store and the report")] = Path("leanlens-demo"),
    quick: Annotated[bool, typer.Option("--quick", help="a smaller run (about a minute)")] = False,
) -> None:
    """Run the whole loop on the built-in lesions set: train, prune, quantize, audit, report."""
    from leanlens.demo import run_demo

    with _progress() as progress:
        try:
            result = run_demo(out, quick=quick, stage=_stage(progress))
        except LeanlensError as error:
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(2) from None
    console.print(summary_table(result.rows))
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


COLUMNS = (  # header, metric key, format
    ("version", "version", "{}"),
    ("accuracy", "accuracy", "{:.1%}"),
    ("params", "params", "{:,.0f}"),
    ("MACs", "macs", "{:,.0f}"),
    ("bytes", "bytes", "{:,.0f}"),
    ("ms/32", "latency_ms", "{:.1f}"),
    ("speed-up", "speedup", "{:.2f}×"),
    ("agree", "agreement", "{:.1%}"),
    ("Spearman", "spearman[gradcam++]", "{:.3f}"),
    ("top-10%", "top10[gradcam++]", "{:.2f}"),
    ("pointing", "pointing[gradcam++]", "{:.0%}"),
)


def summary_table(rows: list[dict]) -> Table:
    table = Table(title="leanlens demo: versions (explanations: Grad-CAM++ on the probe set)")
    for header, _, _ in COLUMNS:
        table.add_column(header, justify="left" if header == "version" else "right")
    for row in rows:
        table.add_row(*(fmt.format(row[key]) if row.get(key) is not None else "—" for _, key, fmt in COLUMNS))
    return table


if __name__ == "__main__":  # pragma: no cover
    app()
