"""The check Done-when 1 of issue 14 makes on every data set: budget met, accuracy held, guard kept."""

from __future__ import annotations

from leanlens.audit.profile import cost


def accuracy(model, data) -> float:
    return float((model.predict(data.x).argmax(1) == data.y).mean())


def assert_budget_and_accuracy_held(original, result, test, share: float, *, least: float) -> None:
    """`result` keeps at most `share` of the original's MACs (counted again on both models, not read
    from the trajectory) and its held-out accuracy within 1 point; the original is worth keeping."""
    dense, small = cost(original, test.x[:1]).macs, cost(result.model, test.x[:1]).macs
    assert small <= share * dense
    assert accuracy(original, test) >= least
    assert accuracy(result.model, test) >= accuracy(original, test) - 0.01
    # the guard, as the result reports it: every step within 1 point of the original
    assert result.trajectory[0].accuracy == accuracy(original, test)
    assert result.trajectory[-1].accuracy == accuracy(result.model, test)
    assert all(100 * (result.trajectory[0].accuracy - step.accuracy) <= 1.0 for step in result.trajectory)
    assert result.accuracy_drop <= 1.0
    assert result.trajectory[-1].macs == small and result.trajectory[0].macs == dense
