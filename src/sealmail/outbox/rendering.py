"""Render the per-category templates into a subject, a text body and an HTML body.

Templates live in ``outbox/NAME.subject.txt``, ``outbox/NAME.txt`` and
``outbox/NAME.html``; the provider overrides any of them by putting a file of
the same name under ``DATA_DIR/templates/outbox/``. Text templates render
without HTML autoescaping, HTML templates with it. Each process caches the
compiled templates, so restart the web and worker processes after changing
an override.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.template import (
    Context,
    Engine,
    TemplateDoesNotExist,
    TemplateSyntaxError,
    engines,
)
from django.template.loader import get_template

TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class TemplateError(ValueError):
    """A template is missing, invalid or failed to render."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str | None
    html: str | None


@functools.cache
def _text_engine() -> Engine:
    """Build an engine with the project's template directories and no autoescaping."""
    config = settings.TEMPLATES[0]
    return Engine(
        dirs=[str(path) for path in config.get("DIRS", [])],
        app_dirs=config.get("APP_DIRS", False),
        autoescape=False,
    )


def reset_caches() -> None:
    """Forget compiled templates, so changed overrides take effect (used by tests)."""
    _text_engine.cache_clear()
    for engine in engines.all():
        for loader in getattr(engine, "engine", engine).template_loaders:
            reset = getattr(loader, "reset", None)
            if reset is not None:
                reset()


def _render_text(path: str, context: dict[str, Any]) -> str | None:
    try:
        template = _text_engine().get_template(path)
    except TemplateDoesNotExist:
        return None
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template {path!r} is invalid: {exc}") from exc
    return template.render(Context(context, autoescape=False))


def _render_html(path: str, context: dict[str, Any]) -> str | None:
    try:
        template = get_template(path)
    except TemplateDoesNotExist:
        return None
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template {path!r} is invalid: {exc}") from exc
    return template.render(context)


def render(name: str, context: dict[str, Any], *, subject: str = "") -> Rendered:
    """Render template ``name`` with ``context``; ``subject`` overrides the template's.

    Raises :class:`TemplateError` when the name is invalid, no body template
    exists, or rendering fails.
    """
    if not TEMPLATE_NAME.match(name):
        raise TemplateError(
            f"template name {name!r} is invalid; use lower-case letters, digits, "
            "'_' and '-', for example 'invoice'"
        )
    try:
        text = _render_text(f"outbox/{name}.txt", context)
        html = _render_html(f"outbox/{name}.html", context)
        if not subject:
            rendered_subject = _render_text(f"outbox/{name}.subject.txt", context)
            subject = " ".join((rendered_subject or "").split())
    except TemplateError:
        raise
    except Exception as exc:  # a template tag or filter raised while rendering
        raise TemplateError(f"template {name!r} failed to render: {exc}") from exc
    if text is None and html is None:
        raise TemplateError(
            f"no template named {name!r}; create outbox/{name}.txt or "
            f"outbox/{name}.html under DATA_DIR/templates"
        )
    return Rendered(subject=subject, text=text, html=html)
