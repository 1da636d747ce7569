"""A self-contained HTML page: sections of text, tables and images, every image embedded as base64.

Nothing on the page refers to another file or a URL, so the page can be mailed or archived alone. A
small inline script checks on load that every image decoded (complete, naturalWidth > 0) and writes
the outcome to the page's title and to `<html data-report-status>`, so a browser (or a headless one
in a test) shows at once whether any image is broken.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: 12px; }
table { border-collapse: collapse; margin: .5em 0; font-size: 13px; }
td, th { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #eee; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; } figure { display: inline-block; margin: .4em; vertical-align: top; }
figcaption { font-size: 12px; max-width: 260px; }
.note { color: #666; font-size: 13px; }
"""

# Sets the title and data-report-status once every image has loaded (or failed to).
CHECK_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !i.complete || i.naturalWidth === 0; });
  var status = broken.length ? "broken " + broken.length + " of " + images.length + " images"
                             : "ok " + images.length + " images";
  document.documentElement.setAttribute("data-report-status", status);
  document.title = document.title + " [" + status + "]";
});
"""


def esc(value: Any) -> str:
    """`value` as text, escaped for HTML (quotes included)."""
    return html.escape(str(value), quote=True)


def png_data_uri(data: bytes, mime: str = "image/png") -> str:
    """`data` as a base64 `data:` URI (a PNG unless `mime` says otherwise)."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def figure_png(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def pil_png(image: Any) -> bytes:
    """A PIL image as PNG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def img(data: bytes, alt: str, caption: str = "", width: int | None = None) -> str:
    """An embedded image of PNG bytes; inside a `<figure>` with its caption when `caption` is given."""
    size = f' width="{width}"' if width else ""
    tag = f'<img src="{png_data_uri(data)}" alt="{esc(alt)}"{size}>'
    return f"<figure>{tag}<figcaption>{esc(caption)}</figcaption></figure>" if caption else tag


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """An HTML table of `rows` under `header`, every cell escaped; a missing value (None, NaN) shows as
    a dash and a float to 6 significant digits (a run's seconds had shown as 174.61417915499987)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(_cell(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def mapping_table(data: Mapping[str, Any]) -> str:
    """A key/value table of `data`: floats to 4 significant digits, long values cut to 160 characters."""
    return table([(k, _short(v)) for k, v in data.items()], ("key", "value"))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _cell(value: Any) -> Any:
    if _missing(value):
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 1e6 else f"{value:.6g}"
    return value


def _short(value: Any) -> str:
    if _missing(value):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 160 else text[:157] + "..."


def pre(text: str) -> str:
    """`text`, escaped, as a `<pre>` block."""
    return f"<pre>{esc(text)}</pre>"


def markdown_table(text: str) -> str:
    """A markdown pipe table (as ablation.md holds) as HTML; other lines become paragraphs."""
    out: list[str] = []
    rows: list[list[str]] = []

    def flush() -> None:
        if rows:
            out.append(table(rows[1:], rows[0]))
            rows.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
            continue
        flush()
        if line.startswith("#"):
            out.append(f"<h3>{esc(line.lstrip('#').strip())}</h3>")
        elif line.strip():
            out.append(f'<p class="note">{esc(line)}</p>')
    flush()
    return "\n".join(out)


# Marks a page as `googlenet report`'s, so a later report may replace it and nothing else.
GENERATOR = '<meta name="generator" content="googlenet report">'


class Page:
    """Sections appended in order, rendered by `html()`."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.sections: list[tuple[str, str]] = []

    def add(self, heading: str, body: str) -> None:
        self.sections.append((heading, body))

    def html(self) -> str:
        """The whole page: the title, links to the sections, the sections, and the image check script."""
        toc = "".join(f'<li><a href="#s{i}">{esc(h)}</a></li>' for i, (h, _) in enumerate(self.sections))
        parts = [f'<h2 id="s{i}">{esc(h)}</h2>\n{body}' for i, (h, body) in enumerate(self.sections)]
        return (
            f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n{GENERATOR}\n'
            f"<title>{esc(self.title)}</title>\n<style>{STYLE}</style>\n<script>{CHECK_SCRIPT}</script>\n"
            f"</head>\n<body>\n<h1>{esc(self.title)}</h1>\n<ul>{toc}</ul>\n"
            + "\n".join(parts)
            + "\n</body>\n</html>\n"
        )


__all__ = [
    "GENERATOR",
    "Page",
    "esc",
    "figure_png",
    "img",
    "mapping_table",
    "markdown_table",
    "pil_png",
    "pre",
    "table",
]
