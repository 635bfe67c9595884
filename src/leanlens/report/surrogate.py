"""The surrogate section: how faithfully a shallow tree imitates the model, and the tree as rules."""

from __future__ import annotations

from markupsafe import Markup


def surrogate_html(payload: dict) -> Markup:
    """Fidelity on held-out and training rows, the tree's size, and its rules in a <pre>."""
    return Markup('<p class="surrogate">A depth-{} tree with {} leaves decides as the model does on '
                  '<strong>{}</strong> of held-out rows ({} of the rows it was fit to).</p>'
                  '<pre class="rules">{}</pre>').format(
        int(payload["depth"]), int(payload["leaves"]), f"{float(payload['fidelity']):.1%}",
        f"{float(payload['train_fidelity']):.1%}", payload["rules"])
