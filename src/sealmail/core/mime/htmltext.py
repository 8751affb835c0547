"""Convert an HTML mail body to readable plain text."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK_TAGS = frozenset(
    "address article aside blockquote dd div dl dt fieldset figcaption figure footer "
    "form h1 h2 h3 h4 h5 h6 header hr main nav ol p pre section table tr ul".split()
)
_SKIPPED_TAGS = frozenset({"script", "style", "head", "title", "template"})


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.skip_depth = 0
        self.pre_depth = 0
        self.link_targets: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self.skip_depth += 1
        elif tag == "br":
            self.chunks.append("\n")
        elif tag == "li":
            self.chunks.append("\n* ")
        elif tag in _BLOCK_TAGS:
            self.chunks.append("\n\n")
        if tag == "pre":
            self.pre_depth += 1
        elif tag == "a":
            self.link_targets.append(dict(attrs).get("href"))
        elif tag in ("td", "th"):
            self.chunks.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.chunks.append("\n")
        elif tag == "hr":
            self.chunks.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag == "a" and self.link_targets:
            href = self.link_targets.pop()
            # Show the target unless the link text already is the address.
            if href and not href.startswith(("#", "mailto:")):
                text_so_far = "".join(self.chunks[-3:])
                if href not in text_so_far:
                    self.chunks.append(f" <{href}>")
        elif tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)
            self.chunks.append("\n\n")
        elif tag in _BLOCK_TAGS:
            self.chunks.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        if self.pre_depth:
            # Placeholders keep the line breaks and indentation of <pre> text.
            self.chunks.append(data.replace("\n", "\x00").replace(" ", "\x01"))
        else:
            self.chunks.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """Return the text of ``html`` with paragraphs, list items and link targets kept."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    text = "".join(extractor.chunks)
    lines = [line.strip(" \t") for line in text.split("\n")]
    text = "\n".join(lines).replace("\x00", "\n").replace("\x01", " ")
    text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")
    return text + "\n" if text else ""
