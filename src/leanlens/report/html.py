"""Rendering the page from its template: Jinja2 with autoescaping on."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).parent / "templates"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    # a folder next to this module works both from a source checkout and an
    # installed wheel (pyproject ships report/templates/*.html as package data)
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        # version names, paths and titles are user text: escape them everywhere
        autoescape=True,
        # a misspelt variable should fail loudly, not render as an empty string
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(context: dict, template: str = "index.html") -> str:
    """The filled-in page as one string."""
    return _environment().get_template(template).render(**context)
