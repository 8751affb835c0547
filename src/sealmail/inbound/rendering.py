"""Sanitise customer HTML for staff with nh3, with remote content blocked."""

from __future__ import annotations

import nh3

# Attributes that make a browser fetch something as soon as the HTML is shown.
_FETCHING_ATTRIBUTES = {
    "src",
    "srcset",
    "background",
    "poster",
    "lowsrc",
    "dynsrc",
    "style",
}
_TAGS = set(nh3.ALLOWED_TAGS) - {"img", "picture", "source", "video", "audio", "iframe"}


def _drop_fetching(tag: str, attribute: str, value: str) -> str | None:
    if attribute in _FETCHING_ATTRIBUTES:
        return None
    return value


def sanitise_html(html: str) -> str:
    """Return ``html`` as a closed fragment with scripts, styles and remote loads removed.

    Each part is cleaned on its own, so markup left open in one part cannot
    swallow the text of the next one (the EFAIL direct exfiltration).
    """
    return nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags={"script", "style", "title", "head"},
        attribute_filter=_drop_fetching,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
