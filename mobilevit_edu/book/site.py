"""``book html``: the offline HTML book, one page per chapter plus a contents page (the book's tooling).

Each chapter (chapter 00 lists them) is rendered with nbconvert's ``lab`` template, extended with
previous / next / contents links; MathJax is copied beside the pages so formulas render offline,
``figures/`` is copied too, and links to ``NN_slug.ipynb`` become links to ``NN_slug.html``.
"""

from __future__ import annotations

import html as html_lib
import re
import shutil
import sys
from pathlib import Path

from mobilevit_edu.book.manifest import Book, Chapter

__all__ = ["build_html"]

# Extends nbconvert's "lab" template: no require.js, MathJax loaded only after the page has
# loaded (so a missing network never blocks it), and the book's navigation bars.
_PAGE_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
<script type="text/x-mathjax-config">
MathJax.Hub.Config({tex2jax: {inlineMath: [['$','$'], ['\\(','\\)']], processEscapes: true},
                    messageStyle: 'none'});
</script>
<script>
window.addEventListener('load', function () {
  var s = document.createElement('script');
  s.src = {{ resources.mathjax_url | tojson }};
  document.head.appendChild(s);
});
</script>
{%- endblock html_head_js_mathjax -%}
{%- block html_head_css -%}
<style>{{ resources.book_css }}</style>
{%- endblock html_head_css -%}
{%- block body_header -%}
{{ super() }}
{{ resources.book_nav_top }}
{%- endblock body_header -%}
{% block body_footer %}
{{ resources.book_nav_bottom }}
{{ super() }}
{% endblock body_footer %}
"""

_CSS = """
.book-nav { display: flex; gap: 1.5em; justify-content: space-between; align-items: center;
  max-width: 1100px; margin: 0.5em auto; padding: 0.6em 1em; border-bottom: 1px solid #ddd;
  font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 15px; }
.book-nav.bottom { border-bottom: none; border-top: 1px solid #ddd; }
.book-nav a { color: #0a58a6; text-decoration: none; }
.book-nav a:hover { text-decoration: underline; }
.book-nav .disabled { color: #aaa; }
"""

_INDEX_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 960px;
  margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.5; }
h1 { margin-bottom: 0.2em; } .authors { color: #555; margin-top: 0; }
table { border-collapse: collapse; width: 100%; margin-top: 1em; }
th, td { text-align: left; padding: 0.45em 0.6em; border-bottom: 1px solid #e3e3e3; vertical-align: top; }
th { background: #f5f7fa; } td.num { font-variant-numeric: tabular-nums; width: 3em; }
a { color: #0a58a6; } .missing { color: #999; }
"""


def _nav(book: Book, pages: list[Chapter], i: int, *, top: bool) -> str:
    esc = html_lib.escape
    ids = top  # ids only on the top bar so they stay unique

    def link(ch: Chapter | None, rel: str, arrow: str) -> str:
        if ch is None:
            return f'<span class="disabled">{arrow}</span>'
        id_attr = f' id="{rel}-link"' if ids else ""
        text = f"{arrow} {ch.tag} {esc(ch.title)}" if rel == "prev" else f"{ch.tag} {esc(ch.title)} {arrow}"
        return f'<a href="{ch.name}.html" rel="{rel}"{id_attr}>{text}</a>'

    prev_ch = pages[i - 1] if i > 0 else None
    next_ch = pages[i + 1] if i + 1 < len(pages) else None
    index_id = ' id="index-link"' if ids else ""
    cls = "book-nav" + ("" if top else " bottom")
    return (
        f'<nav class="{cls}">{link(prev_ch, "prev", "&larr;")}'
        f'<a href="index.html" rel="index"{index_id}>{esc(book.title)}: contents</a>'
        f"{link(next_ch, 'next', '&rarr;')}</nav>"
    )


def _rewrite_links(page: str, names: set[str]) -> str:
    """Point ``../figures/`` at the copied figures and ``NN_slug.ipynb`` links at HTML pages."""
    page = re.sub(r'(src|href)=(["\'])(?:\.\./)figures/', r"\1=\2figures/", page)

    def to_html(m: re.Match[str]) -> str:
        name = m.group(2)
        return f"{m.group(1)}{name}.html{m.group(3) or ''}" if name in names else m.group(0)

    return re.sub(r'(href=["\'](?:\./)?)(\d\d_[a-z0-9_]+)\.ipynb(#[^"\']*)?', to_html, page)


def _index_html(book: Book, present: set[str]) -> str:
    esc = html_lib.escape
    rows = []
    for ch in book.chapters:
        title = (
            f'<a href="{ch.name}.html">{esc(ch.title)}</a>'
            if ch.name in present
            else f'<span class="missing">{esc(ch.title)} (not written yet)</span>'
        )
        paper = ", ".join(esc(p) for p in ch.paper) or "&mdash;"
        rows.append(f'<tr><td class="num">{ch.tag}</td><td>{title}</td><td>{paper}</td></tr>')
    return f"""<!DOCTYPE html>
<html lang="{esc(book.language)}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(book.title)}</title><style>{_INDEX_CSS}</style></head>
<body>
<h1>{esc(book.title)}</h1>
<p class="authors">{esc(", ".join(book.authors))}</p>
<p class="description">{esc(book.description)}</p>
<h2>Contents</h2>
<table id="toc"><thead><tr><th>#</th><th>chapter</th><th>paper</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
</body></html>
"""


def _html_source(book: Book, ch: Chapter, build_dir: Path) -> Path:
    """The executed copy when it exists and is newer than the chapter, else the chapter."""
    src = book.notebook(ch)
    executed = build_dir / "executed" / f"{ch.name}.ipynb"
    if executed.is_file() and executed.stat().st_mtime > src.stat().st_mtime:
        return executed
    return src


def _local_mathjax(out_dir: Path) -> str:
    """Copy MathJax (from the ``jupyter-server-mathjax`` package) beside the pages so formulas
    render offline; fall back to nbconvert's CDN address where that package is missing."""
    try:
        import jupyter_server_mathjax
    except ImportError:  # pragma: no cover - it is in the book extra
        print("warning: jupyter-server-mathjax not installed; formulas need a network", file=sys.stderr)
        return "https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/MathJax.js?config=TeX-AMS_CHTML-full,Safe"
    static = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (out_dir / "mathjax" / "MathJax.js").is_file():
        shutil.copytree(static, out_dir / "mathjax", dirs_exist_ok=True)
    return "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def build_html(book: Book, out_dir: Path | None = None, *, build_dir: Path | None = None) -> Path:
    """Render the book to ``out_dir`` (default ``_build/html``); return the path of index.html.

    Chapters that do not exist yet are listed in the contents without a link and skipped by the
    previous/next links. Output images are embedded (base64); ``figures/`` is copied beside the
    pages and Markdown links to ``../figures/`` are rewritten to it.
    """
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    build_dir = build_dir or book.root / "_build"
    out_dir = out_dir or build_dir / "html"
    out_dir.mkdir(parents=True, exist_ok=True)
    pages = [ch for ch in book.chapters if book.notebook(ch).is_file()]
    for ch in book.chapters:
        if ch not in pages:
            print(f"warning: {ch.path} does not exist; left out of the HTML book", file=sys.stderr)
    names = {ch.name for ch in pages}

    figures = book.root / "figures"
    if figures.is_dir():
        shutil.copytree(figures, out_dir / "figures", dirs_exist_ok=True)

    exporter = HTMLExporter(
        mathjax_url=_local_mathjax(out_dir),
        template_name="lab",
        extra_loaders=[DictLoader({"mobilevit_book.html.j2": _PAGE_TEMPLATE})],
        template_file="mobilevit_book.html.j2",
    )
    for i, ch in enumerate(pages):
        nb = nbformat.read(_html_source(book, ch, build_dir), as_version=4)
        resources = {
            "metadata": {"name": f"{ch.tag} {ch.title} · {book.title}", "path": str(book.notebook(ch).parent)},
            "book_css": _CSS,
            "book_nav_top": _nav(book, pages, i, top=True),
            "book_nav_bottom": _nav(book, pages, i, top=False),
        }
        body, _ = exporter.from_notebook_node(nb, resources=resources)
        (out_dir / f"{ch.name}.html").write_text(_rewrite_links(body, names), encoding="utf-8")

    index = out_dir / "index.html"
    index.write_text(_index_html(book, names), encoding="utf-8")
    return index
