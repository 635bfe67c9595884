"""`leanlens explain-text MODEL TEXTS`: token attributions for every text of a file, as JSON."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from leanlens.cli import (
    MODEL_HELP,
    ReplaceOut,
    TrustPickle,
    Weights,
    _progress,
    _refused,
    _stage,
    console,
    refuse_to_replace,
)
from leanlens.errors import BadInput, BadOption, LeanlensError

SHOWN_TEXTS = 5  # texts printed after the run; the file holds them all


def explain_text(
    model: Annotated[str, typer.Argument(help=f"a text classifier: {MODEL_HELP}")],
    texts: Annotated[Path, typer.Argument(help="a .txt file (one text a line) or a .csv file with --column")],
    column: Annotated[str | None, typer.Option("--column", help="the CSV column holding the texts")] = None,
    method: Annotated[str, typer.Option("--method", help="ig, occlusion, kernelshap, shapley or lime")] = "ig",
    level: Annotated[str, typer.Option("--level", help="'token' (word pieces) or 'word' (pieces summed)")] = "token",
    tokenizer: Annotated[str | None, typer.Option(
        "--tokenizer", help="a local transformers tokenizer folder, or 'bundled' (leanlens' MiniLM); "
                            "found by itself for a leanlens TextClassifier")] = None,
    out: Annotated[Path, typer.Option("--out", help="where to write the explanation (.json)")] = Path("tokens.json"),
    target: Annotated[str, typer.Option("--target", help="'predicted' or a class index")] = "predicted",
    option: Annotated[list[str] | None, typer.Option("--option", help="a method option, NAME=VALUE (repeatable)")] = None,
    n: Annotated[int | None, typer.Option("--n", help="explain only the first N texts")] = None,
    weights: Weights = None,
    trust_pickle: TrustPickle = False,
    force: ReplaceOut = False,
) -> None:
    """Explain a text classifier's decisions on texts: a value for every token, saved as JSON."""
    from leanlens.cli_inputs import method_options
    from leanlens.explain.errorbars import describe_error
    from leanlens.models.modelfile import resolve_model
    from leanlens.text.attributions import explain_text as run

    try:
        refuse_to_replace(out, force)
        if target != "predicted" and not target.isdigit():
            raise BadOption(f"--target {target!r}", "use 'predicted' or a class index such as 1")
        items = read_texts(texts, column, n)
        loaded, chosen_tokenizer = resolve_model(model, weights, trust_pickle), load_tokenizer(tokenizer)
        with _progress(transient=True, disable=not console.is_terminal) as progress:
            explanation = run(loaded, items, method, None if target == "predicted" else int(target),
                              tokenizer=chosen_tokenizer, level=level, on_step=_stage(progress)("explaining texts", len(items)),
                              **method_options(option or []))
        written = explanation.to_json(out)
    except LeanlensError as error:
        raise _refused(error) from None
    for line in str(explanation).splitlines()[: SHOWN_TEXTS + 1]:
        console.print(escape(line), soft_wrap=True)
    console.print(escape(describe_error(explanation.error, method)))
    console.print(f"written: {escape(str(written))} ({len(explanation)} texts)")


def read_texts(path: Path, column: str | None, n: int | None) -> list[str]:
    """The non-blank lines of a .txt file, or one column of a .csv file; the first `n` of them."""
    if n is not None and n < 1:
        raise BadOption(f"--n {n}", "pass a positive number of texts")
    if not path.is_file():
        raise BadInput(f"no text file at {str(path)!r}", "pass a .txt file (one text a line) or a .csv file")
    suffix = path.suffix.lower()
    if suffix not in (".txt", ".csv"):
        raise BadInput(f"cannot read {path.name} as texts", "pass a .txt file (one text a line) or a .csv file with --column")
    if (suffix == ".csv") != (column is not None):
        raise BadOption("--column goes with a .csv file, and a .csv file needs it",
                        "for a CSV pass --column NAME; for a .txt file drop --column")
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BadInput(f"cannot read {path.name}: {error}"[:200], "pass a UTF-8 text file") from None
    items = _column(content, column, path.name) if column is not None else [t for t in content.splitlines() if t.strip()]
    if not items:
        raise BadInput(f"{path.name} holds no texts", "put one text a line (or one a row in --column)")
    return items[:n] if n is not None else items


def _column(content: str, column: str, name: str) -> list[str]:
    reader = csv.DictReader(content.splitlines())
    if column not in (reader.fieldnames or []):
        shown = ", ".join(reader.fieldnames or []) or "none"
        raise BadInput(f"{name} has no column {column!r}", f"pass --column with one of its columns: {shown}")
    return [row[column] for row in reader]


def load_tokenizer(spec: str | None):
    """None, the bundled tokenizer ('bundled'), or a transformers tokenizer from a local folder."""
    if spec is None:
        return None
    from leanlens.text.encoder import load_tokenizer as bundled

    if spec == "bundled":
        return bundled()
    if not Path(spec).is_dir():
        raise BadInput(f"no tokenizer folder at {spec!r}", "pass a local folder saved by tokenizer.save_pretrained, or 'bundled'")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(spec, local_files_only=True)
    except (OSError, ValueError) as error:
        raise BadInput(f"cannot load a tokenizer from {spec!r}: {str(error).splitlines()[0][:200]}",
                       "pass a folder saved by tokenizer.save_pretrained, or 'bundled'") from None
