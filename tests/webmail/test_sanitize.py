"""
Tests for the HTML sanitizer and the HTML-to-text conversion of the
webmail.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from appnet.webmail.sanitize import htmlToText, safeLink, sanitize


def clean(markup: str, **kw: object) -> str:
    return sanitize(markup, **kw).html  # type: ignore[arg-type]


class AllowlistTests(SynchronousTestCase):
    def test_formattingKept(self) -> None:
        """Plain formatting, lists and tables survive as they were."""
        markup = (
            "<p>Hi <b>bold</b> <i>it</i></p><ul><li>one</li></ul>"
            '<table><tr><td colspan="2">cell</td></tr></table>'
        )
        self.assertEqual(clean(markup), markup)

    def test_textEscaped(self) -> None:
        """Text, entities included, is written back escaped."""
        self.assertEqual(
            clean("<p>a &lt;script&gt; &amp; b</p>"),
            "<p>a &lt;script&gt; &amp; b</p>",
        )

    def test_scriptAndStyleDroppedWithContent(self) -> None:
        """Scripts, styles and their content vanish."""
        self.assertEqual(
            clean("<p>a<script>alert(1)</script><style>p{}</style>b</p>"),
            "<p>ab</p>",
        )

    def test_dangerousContainersDropped(self) -> None:
        """Frames, objects, SVG, MathML, templates and forms' controls vanish."""
        markup = (
            '<iframe srcdoc="<script>x</script>">i</iframe>'
            "<object data=x>o</object><svg><script>s</script></svg>"
            "<math><mi>m</mi></math><template><p>t</p></template>"
            "<textarea>ta</textarea><select><option>op</option></select>ok"
        )
        self.assertEqual(clean(markup), "ok")

    def test_unknownTagsUnwrapped(self) -> None:
        """Unknown elements (forms, custom ones) go; their text stays."""
        self.assertEqual(
            clean('<form action="http://evil"><x-thing>text</x-thing></form>'),
            "text",
        )

    def test_headAndMetaDropped(self) -> None:
        """A whole document keeps only its body's content; meta refresh goes."""
        markup = (
            '<html><head><meta http-equiv="refresh" content="0;url=http://e">'
            "<title>T</title><base href=http://evil/></head>"
            "<body><p>body</p></body></html>"
        )
        self.assertEqual(clean(markup), "<p>body</p>")

    def test_attributesDropped(self) -> None:
        """Event handlers, style, class and id never survive."""
        self.assertEqual(
            clean(
                '<div onclick="x()" style="position:fixed" class="c" id="status"'
                " onmouseover=y>t</div>"
            ),
            "<div>t</div>",
        )

    def test_attributeValuesChecked(self) -> None:
        """Kept attributes must have plausible values."""
        self.assertEqual(
            clean('<td colspan="2 onmouseover=x" rowspan="3" align="evil">c</td>'),
            '<td rowspan="3">c</td>',
        )
        self.assertEqual(
            clean('<p title="a &quot;quoted&quot; <b>">t</p>'),
            '<p title="a &quot;quoted&quot; &lt;b&gt;">t</p>',
        )

    def test_commentsDropped(self) -> None:
        """Comments (and conditional comments) go."""
        self.assertEqual(
            clean("a<!-- <script>x</script> -->b<!--[if IE]>c<![endif]-->"), "ab"
        )

    def test_unclosedClosed(self) -> None:
        """Every element opened is closed; stray end tags are ignored."""
        self.assertEqual(clean("<b><i>x</b></u>y"), "<b><i>x</i></b>y")
        self.assertEqual(clean("<div><p>open"), "<div><p>open</p></div>")

    def test_deepNestingFlattened(self) -> None:
        """Nesting beyond the limit is flattened, keeping the text."""
        result = clean("<div>" * 500 + "deep" + "</div>" * 500)
        self.assertEqual(result.count("<div>"), 64)
        self.assertIn("deep", result)


class LinkTests(SynchronousTestCase):
    def test_webLinksKept(self) -> None:
        """http, https and mailto links open apart, without a referrer."""
        self.assertEqual(
            clean('<a href="https://example.org/x?a=1&amp;b=2">x</a>'),
            '<a href="https://example.org/x?a=1&amp;b=2"'
            ' rel="noopener noreferrer nofollow" target="_blank">x</a>',
        )
        self.assertIn(
            'href="mailto:bob@example.org"',
            clean('<a href="mailto:bob@example.org">b</a>'),
        )

    def test_scriptURLsDropped(self) -> None:
        """javascript:, vbscript:, data: and disguised forms lose their href."""
        for href in (
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            " javascript:alert(1)",
            "java&#09;script:alert(1)",
            "java\nscript:alert(1)",
            "&#106;avascript:alert(1)",
            "vbscript:msgbox",
            "data:text/html,<script>alert(1)</script>",
            "/api/v1/delete",
            "//evil.example/",
        ):
            result = clean(f'<a href="{href}">x</a>')
            self.assertEqual(result, "<a>x</a>", href)

    def test_safeLink(self) -> None:
        """safeLink accepts web and mail links only."""
        self.assertEqual(safeLink(" http://a.example/ "), "http://a.example/")
        self.assertIsNone(safeLink("j\tavascript:x"))
        self.assertIsNone(safeLink("relative/path"))


class ImageTests(SynchronousTestCase):
    def test_remoteImagesRemoved(self) -> None:
        """A remote image is never loaded: its alt text stands in, counted."""
        result = sanitize(
            '<img src="https://tracker.example/p.gif" alt="logo">'
            '<img src="//tracker.example/q.gif"><img src=" http://x/y">',
            images=True,
        )
        self.assertEqual(result.html, "[logo]")
        self.assertEqual(result.blockedRemote, 3)

    def test_cidBlockedByDefault(self) -> None:
        """A cid: image is hidden unless asked for, and counted."""
        result = sanitize(
            '<img src="cid:logo@x" alt="L">',
            cid=lambda c: f"/part/{c}",
        )
        self.assertEqual((result.html, result.blockedInline), ("[L]", 1))

    def test_cidShown(self) -> None:
        """With images, a cid: image points at this server's URL of its part."""
        result = sanitize(
            '<img src="cid:logo@x" alt="L" width="20" onerror="x()">',
            images=True,
            cid=lambda c: "/api/v1/attachment?uid=1&part=2" if c == "logo@x" else None,
        )
        self.assertEqual(
            result.html,
            '<img src="/api/v1/attachment?uid=1&amp;part=2" alt="L" width="20">',
        )
        self.assertEqual(result.blockedInline, 0)

    def test_unknownCid(self) -> None:
        """A cid: naming no part shows nothing (and counts as nothing)."""
        result = sanitize('<img src="cid:missing">', images=True, cid=lambda c: None)
        self.assertEqual((result.html, result.blockedInline), ("", 0))

    def test_dataImages(self) -> None:
        """Raster data: images only when asked; other data: never."""
        png = "data:image/png;base64,iVBORw0KGgo="
        self.assertEqual(sanitize(f'<img src="{png}">').blockedInline, 1)
        self.assertEqual(clean(f'<img src="{png}">', images=True), f'<img src="{png}">')
        self.assertEqual(
            clean('<img src="data:image/svg+xml;base64,PHN2Zz4=">', images=True), ""
        )

    def test_otherSchemesDropped(self) -> None:
        """An image with any other source is dropped."""
        self.assertEqual(clean('<img src="javascript:x">', images=True), "")
        self.assertEqual(clean('<img src="/api/v1/raw">', images=True), "")


class TextTests(SynchronousTestCase):
    def test_blocksBecomeLines(self) -> None:
        """Paragraphs, breaks and list items become lines; scripts vanish."""
        markup = (
            "<p>Hello  <b>there</b></p><p>line<br>break</p>"
            "<ul><li>one</li><li>two</li></ul><script>x()</script><style>p{}</style>"
        )
        self.assertEqual(htmlToText(markup), "Hello there\nline\nbreak\n- one\n- two")

    def test_links(self) -> None:
        """A link's target follows its text, unless the text is the target."""
        self.assertEqual(
            htmlToText(
                '<a href="https://x.example/">site</a> and '
                '<a href="https://y.example/">https://y.example/</a>'
            ),
            "site <https://x.example/> and https://y.example/",
        )

    def test_pre(self) -> None:
        """Preformatted text keeps its spaces and lines."""
        self.assertEqual(htmlToText("<pre>a  b\n  c</pre>"), "a  b\n  c")
