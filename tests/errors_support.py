"""The check every refusal test makes: a leanlens error, on one line, with a hint naming the fix."""

import pytest

from leanlens.errors import LeanlensError


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert isinstance(error.value, LeanlensError) and "\n" not in message and "hint:" in message, message
    return message
