"""Report sections for a version's attachments: one renderer a kind, looked up in one registry.

A renderer takes an attachment's payload (a dict) and returns escaped HTML (`Markup`). A kind
without a renderer, or a payload without the form its renderer reads, is shown as a note
rather than breaking the page: attachments can be written by anyone with the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from markupsafe import Markup

from leanlens.report.importance import importance_html
from leanlens.report.reasons import reasons_html
from leanlens.report.surrogate import surrogate_html
from leanlens.report.tokens import tokens_html


@dataclass(frozen=True)
class Section:
    title: str
    render: Callable[[dict], Markup]


SECTIONS: dict[str, Section] = {
    "importance": Section("Feature importance", importance_html),
    "surrogate": Section("Surrogate tree", surrogate_html),
    "reasons": Section("Reason codes", reasons_html),
    # payload {"rows": token_rows(explanation)}; tokens_html escapes every token and caption itself
    "tokens": Section("Token attributions", lambda payload: Markup(tokens_html(payload["rows"]))),
}


def attachment_sections(store, versions) -> list[dict]:
    """One entry a attachment of each version, in the order recorded: version, kind, title, html."""
    shown = []
    for version in versions:
        for attachment in store.attachments(version.name):
            section = SECTIONS.get(attachment.kind)
            shown.append({"version": version.name, "kind": attachment.kind,
                          "title": section.title if section else attachment.kind,
                          "html": _render(section, attachment)})
    return shown


def _render(section: Section | None, attachment) -> Markup:
    if section is None:
        return Markup('<p class="note">No view for attachments of kind {} in this leanlens.</p>').format(attachment.kind)
    try:
        return section.render(attachment.payload)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return Markup('<p class="note">This {} attachment does not have the form its view reads.</p>').format(
            attachment.kind)
