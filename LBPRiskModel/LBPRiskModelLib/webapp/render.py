"""Server-side rendering helpers: the SHAP contribution bar plot as inline SVG and a safe Markdown subset.

No JavaScript and no external resources: the plot uses presentation attributes and CSS classes
only (allowed by the ``style-src 'self'`` policy), and every text is HTML-escaped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from markupsafe import Markup


def contribution_svg(
    rows: Sequence[tuple[str, str, float]],
    increases: str,
    decreases: str,
    width: int = 560,
    row_height: int = 26,
) -> Markup:
    """Horizontal bar plot of ``(label, value text, contribution)`` rows, bars centred on zero.

    Positive contributions (raising the risk) are drawn right in the ``pos`` class, negative ones
    left in ``neg``; the axis label names both directions in the page's language.
    """
    label_w, value_w = 190, 70
    plot_x0, plot_w = label_w + 8, width - label_w - value_w - 16
    centre = plot_x0 + plot_w / 2
    scale = max((abs(c) for _, _, c in rows), default=0.0) or 1.0
    top = 22
    height = top + row_height * len(rows) + 10
    esc = html.escape
    parts = [
        f'<svg class="contrib" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{esc(increases)} / {esc(decreases)}">',
        f'<text x="{centre - 6:.1f}" y="14" text-anchor="end" class="axis neg-text">◀ {esc(decreases)}</text>',
        f'<text x="{centre + 6:.1f}" y="14" class="axis pos-text">{esc(increases)} ▶</text>',
        f'<line x1="{centre:.1f}" y1="{top - 4}" x2="{centre:.1f}" y2="{height - 6}" class="zero"/>',
    ]
    for i, (label, value_text, contribution) in enumerate(rows):
        y = top + i * row_height
        bar = abs(contribution) / scale * (plot_w / 2 - 4)
        x = centre if contribution >= 0 else centre - bar
        cls = "pos" if contribution >= 0 else "neg"
        text = label if len(label) <= 28 else label[:27] + "…"
        parts.append(
            f'<text x="{label_w}" y="{y + row_height * 0.62:.1f}" text-anchor="end" class="lbl">'
            f"<title>{esc(label)} = {esc(value_text)}</title>{esc(text)}</text>"
        )
        parts.append(
            f'<rect x="{x:.1f}" y="{y + 4}" width="{max(bar, 1.0):.1f}" height="{row_height - 8}" class="{cls}"/>'
        )
        parts.append(
            f'<text x="{width - 4}" y="{y + row_height * 0.62:.1f}" text-anchor="end" class="val">'
            f"{contribution:+.3f}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


_INLINE = [
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![*\w])\*([^*]+)\*(?!\w)"), r"<em>\1</em>"),
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links: keep the text, drop the target
]


def _inline(text: str) -> str:
    """Escape, then apply code/bold/italic; link targets are dropped so no URL can be injected."""
    out = html.escape(text, quote=True)
    for pattern, repl in _INLINE:
        out = pattern.sub(repl, out)
    return out


def markdown_to_html(source: str) -> Markup:
    """Render a model card's Markdown (headings, lists, pipe tables, code blocks, paragraphs) safely.

    All text is escaped before formatting and raw HTML stays literal text, so a model card can
    never inject markup or scripts into the page.
    """
    out: list[str] = []
    para: list[str] = []
    lines = source.replace("\r\n", "\n").split("\n")
    i = 0

    def flush() -> None:
        if para:
            out.append("<p>" + " ".join(_inline(p) for p in para) + "</p>")
            para.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            flush()
            block = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                block.append(lines[i])
                i += 1
            out.append("<pre><code>" + html.escape("\n".join(block)) + "</code></pre>")
        elif m := re.match(r"^(#{1,6})\s+(.*)$", stripped):
            flush()
            level = min(len(m.group(1)) + 1, 6)  # the page owns <h1>
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
        elif re.match(r"^([-*+]|\d+[.)])\s+", stripped):
            flush()
            ordered = stripped[0].isdigit()
            items = []
            while i < len(lines) and re.match(r"^([-*+]|\d+[.)])\s+", lines[i].strip()):
                items.append("<li>" + _inline(re.sub(r"^([-*+]|\d+[.)])\s+", "", lines[i].strip())) + "</li>")
                i += 1
            tag = "ol" if ordered else "ul"
            out.append(f"<{tag}>" + "".join(items) + f"</{tag}>")
            continue
        elif stripped.startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c):
                    rows.append(cells)
                i += 1
            if rows:
                head = "".join(f"<th>{_inline(c)}</th>" for c in rows[0])
                body = "".join(
                    "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:]
                )
                out.append(
                    f'<table class="card-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
                )
            continue
        elif not stripped:
            flush()
        else:
            para.append(stripped)
        i += 1
    flush()
    return Markup("\n".join(out))
