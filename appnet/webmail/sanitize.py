"""
Mail HTML made safe to show inside the webmail page, and mail HTML as
plain text (for replies and the "as text" view).

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from html.parser import HTMLParser

from attrs import frozen

__all__ = ["SanitizedHTML", "htmlToText", "sanitize", "safeLink"]

#: Elements kept (without their attributes, unless listed in L{_ATTRIBUTES}).
ALLOWED = frozenset(
    """
    a abbr address article aside b bdi bdo big blockquote br caption center
    cite code col colgroup dd del details dfn div dl dt em figcaption figure
    font footer h1 h2 h3 h4 h5 h6 header hr i img ins kbd li main mark nav ol
    p pre q s samp section small span strike strong sub summary sup table
    tbody td tfoot th thead time tr tt u ul var wbr
    """.split()
)

#: Elements dropped together with everything inside them.
DROPPED = frozenset(
    """
    applet audio base basefont button canvas embed frame frameset head
    iframe link map math meta noembed noframes noscript object option param
    plaintext script select source style svg template textarea title track
    video xmp
    """.split()
)

#: Elements without an end tag.
VOID = frozenset(
    "area base br col embed hr img input link meta param source wbr".split()
)

#: Deeper nesting than this is flattened (its elements dropped, text kept).
MAX_DEPTH = 64

_ALIGN = re.compile(r"^(left|right|center|justify)$", re.I)
_VALIGN = re.compile(r"^(top|middle|bottom|baseline)$", re.I)
_NUMBER = re.compile(r"^[0-9]{1,4}$")
_LENGTH = re.compile(r"^[0-9]{1,4}%?$")
_DIR = re.compile(r"^(ltr|rtl|auto)$", re.I)
_LANG = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$")
_LIST_TYPE = re.compile(r"^[1aAiI]$")

Rules = dict[str, "re.Pattern[str] | None"]

_COMMON: Rules = {"title": None, "lang": _LANG, "dir": _DIR}
_CELL: Rules = {
    "colspan": _NUMBER,
    "rowspan": _NUMBER,
    "align": _ALIGN,
    "valign": _VALIGN,
}
_ALIGNED: Rules = {"align": _ALIGN}

#: Attributes kept per element: name to a pattern its value must match
#: (C{None}: any text). C{href} and C{src} are checked separately.
_ATTRIBUTES: dict[str, Rules] = {
    "td": _CELL,
    "th": _CELL,
    "tr": {"align": _ALIGN, "valign": _VALIGN},
    "table": {"align": _ALIGN, "width": _LENGTH},
    "col": {"span": _NUMBER},
    "colgroup": {"span": _NUMBER},
    "ol": {"start": _NUMBER, "type": _LIST_TYPE},
    "img": {"alt": None, "width": _LENGTH, "height": _LENGTH},
    "p": _ALIGNED,
    "div": _ALIGNED,
    **{f"h{n}": _ALIGNED for n in range(1, 7)},
}

_LINK_SCHEMES = ("http", "https", "mailto")
_IMAGE_DATA = re.compile(r"^data:image/(png|gif|jpeg|webp);base64,[A-Za-z0-9+/=\s]+$")
_IGNORED_IN_URL = re.compile(r"[\x00-\x20\x7f]+")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def safeLink(url: str) -> str | None:
    """
    C{url} if it may be a link target (C{http}, C{https}, C{mailto}),
    else C{None}.
    """
    compact = _IGNORED_IN_URL.sub("", url)
    match = _SCHEME.match(compact)
    if match is None or match.group(1).lower() not in _LINK_SCHEMES:
        return None
    return url.strip()


@frozen
class SanitizedHTML:
    """
    The result of L{sanitize}.

    @ivar html: the safe markup (a fragment, no C{<html>} or C{<body>}).
    @ivar blockedRemote: remote images removed (always).
    @ivar blockedInline: images carried in the message that were not
        shown (C{cid:} and C{data:}); the reader may ask for them.
    """

    html: str
    blockedRemote: int = 0
    blockedInline: int = 0


#: Turns a C{cid:} reference (without the scheme) into a URL on this
#: server, or C{None} if the message has no such part.
CidResolver = Callable[[str], str | None]


class _Sanitizer(HTMLParser):
    def __init__(self, images: bool, cid: CidResolver | None) -> None:
        super().__init__(convert_charrefs=True)
        self._images = images
        self._cid = cid
        self.out: list[str] = []
        self._open: list[str] = []
        self._dropping: list[str] = []
        self.blockedRemote = 0
        self.blockedInline = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, selfClosing=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, selfClosing=True)

    def _start(
        self, tag: str, attrs: list[tuple[str, str | None]], selfClosing: bool
    ) -> None:
        if self._dropping:
            if tag == self._dropping[-1] and tag not in VOID and not selfClosing:
                self._dropping.append(tag)
            return
        if tag in DROPPED:
            if tag not in VOID and not selfClosing:
                self._dropping.append(tag)
            return
        if tag not in ALLOWED or len(self._open) >= MAX_DEPTH:
            return
        if tag == "img":
            self._image(attrs)
            return
        kept = self._attributes(tag, attrs)
        if tag == "a":
            href = next((v for k, v in attrs if k == "href" and v), None)
            target = safeLink(href) if href is not None else None
            if target is not None:
                kept += [
                    ("href", target),
                    ("rel", "noopener noreferrer nofollow"),
                    ("target", "_blank"),
                ]
        self.out.append(_tag(tag, kept))
        if tag not in VOID:
            self._open.append(tag)

    def _attributes(
        self, tag: str, attrs: list[tuple[str, str | None]]
    ) -> list[tuple[str, str]]:
        allowed = _ATTRIBUTES.get(tag, {})
        kept: list[tuple[str, str]] = []
        seen: set[str] = set()
        for name, value in attrs:
            if value is None or name in seen:
                continue
            rules = allowed if name in allowed else _COMMON
            if name not in rules:
                continue
            pattern = rules[name]
            if pattern is not None and not pattern.match(value.strip()):
                continue
            seen.add(name)
            kept.append((name, value.strip() if pattern is not None else value))
        return kept

    def _image(self, attrs: list[tuple[str, str | None]]) -> None:
        src = next((v for k, v in attrs if k == "src" and v), "")
        compact = _IGNORED_IN_URL.sub("", src)
        match = _SCHEME.match(compact)
        scheme = match.group(1).lower() if match else ""
        alt = next((v for k, v in attrs if k == "alt" and v), "")
        shown: str | None = None
        if scheme == "cid":
            url = self._cid(compact[4:]) if self._cid is not None else None
            if url is None:
                pass
            elif self._images:
                shown = url
            else:
                self.blockedInline += 1
        elif scheme == "data" and _IMAGE_DATA.match(src.strip()):
            if self._images:
                shown = src.strip()
            else:
                self.blockedInline += 1
        elif scheme in ("http", "https") or compact.startswith("//"):
            self.blockedRemote += 1
        if shown is None:
            if alt.strip():
                self.out.append(f"[{html.escape(alt.strip(), quote=False)}]")
            return
        kept = self._attributes("img", attrs)
        self.out.append(_tag("img", [("src", shown), *kept]))

    def handle_endtag(self, tag: str) -> None:
        if self._dropping:
            if tag == self._dropping[-1]:
                self._dropping.pop()
            return
        if tag not in self._open:
            return
        while self._open:
            top = self._open.pop()
            self.out.append(f"</{top}>")
            if top == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self._dropping:
            self.out.append(html.escape(data, quote=False))

    def close(self) -> None:
        super().close()
        while self._open:
            self.out.append(f"</{self._open.pop()}>")


def _tag(name: str, attrs: list[tuple[str, str]]) -> str:
    text = "".join(f' {k}="{html.escape(v, quote=True)}"' for k, v in attrs)
    return f"<{name}{text}>"


def sanitize(
    markup: str, *, images: bool = False, cid: CidResolver | None = None
) -> SanitizedHTML:
    """
    Make mail HTML safe to insert into the webmail page.

    @param images: show the images the message carries (C{cid:} and
        C{data:}); remote images are removed regardless.
    @param cid: maps a content id to this server's URL of that part.
    """
    parser = _Sanitizer(images, cid)
    parser.feed(markup)
    parser.close()
    return SanitizedHTML(
        "".join(parser.out), parser.blockedRemote, parser.blockedInline
    )


#: Elements after which text continues on a new line.
_BLOCK = frozenset(
    """
    address article aside blockquote caption center dd details div dl dt
    figcaption figure footer h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre
    section summary table tbody tfoot thead tr ul
    """.split()
)


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._line: list[str] = []
        self._dropping = 0
        self._pre = 0
        self._links: list[str | None] = []

    def _break(self) -> None:
        text = "".join(self._line)
        if self._pre == 0:
            text = " ".join(text.split())
        self.lines.append(text.rstrip())
        self._line = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DROPPED and tag not in VOID:
            self._dropping += 1
            return
        if self._dropping:
            return
        if tag == "br":
            self._break()
        elif tag in _BLOCK:
            if self._line:
                self._break()
            if tag == "pre":
                self._pre += 1
            if tag == "li":
                self._line.append("- ")
        elif tag == "td" or tag == "th":
            self._line.append(" ")
        if tag == "a":
            href = next((v for k, v in attrs if k == "href" and v), None)
            self._links.append(safeLink(href) if href else None)

    def handle_endtag(self, tag: str) -> None:
        if tag in DROPPED and tag not in VOID:
            self._dropping = max(0, self._dropping - 1)
            return
        if self._dropping:
            return
        if tag == "a" and self._links:
            href = self._links.pop()
            shown = "".join(self._line)
            if href and not href.startswith("mailto:") and href not in shown:
                self._line.append(f" <{href}>")
        if tag in _BLOCK:
            self._break()
            if tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._dropping:
            return
        if self._pre:
            parts = data.split("\n")
            for part in parts[:-1]:
                self._line.append(part)
                self._break()
            self._line.append(parts[-1])
        else:
            self._line.append(data)


def htmlToText(markup: str) -> str:
    """
    The readable text of mail HTML: paragraphs and line breaks as new
    lines, list items with a dash, link targets after their text, no
    markup and nothing from scripts or styles.
    """
    parser = _Text()
    parser.feed(markup)
    parser.close()
    if parser._line:
        parser._break()
    text = "\n".join(parser.lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n")
