"""The check every refusal test makes: a leanlens error, on one line, with a hint naming the fix."""

import pytest

from leanlens.errors import LeanlensError


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert isinstance(error.value, LeanlensError) and "\n" not in message and "hint:" in message, message
    return message


def refused_in_one_line(run, message: str) -> None:
    """A command (typer's CliRunner result) refused with exit 2 and one non-blank line saying `message`."""
    lines = [line for line in run.output.splitlines() if line.strip()]
    assert run.exit_code == 2 and len(lines) == 1 and message in lines[0], run.output
