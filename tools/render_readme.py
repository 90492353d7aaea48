"""Render README.md from nbs/index.ipynb (nbdev's `nbdev_readme` needs Quarto, which these
machines cannot install). Markdown cells are copied; code cells become python blocks;
cells with `#| hide` are left out.

Usage: python tools/render_readme.py [--check]   (--check: exit 1 if README.md is stale)
"""
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
HEADER = "<!-- Generated from nbs/index.ipynb by tools/render_readme.py; edit the notebook. -->\n\n"


def render() -> str:
    nb = nbformat.read(ROOT / "nbs" / "index.ipynb", as_version=4)
    parts = []
    for cell in nb.cells:
        src = cell.source.strip()
        lines = src.splitlines()
        if any(l.strip().startswith("#| hide") for l in lines):
            continue
        if cell.cell_type == "markdown":
            parts.append(src)
        elif cell.cell_type == "code" and src:
            body = "\n".join(l for l in lines if not l.startswith("#|"))
            parts.append(f"```python\n{body}\n```")
    return HEADER + "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    text, readme = render(), ROOT / "README.md"
    if "--check" in sys.argv:
        if not readme.exists() or readme.read_text() != text:
            sys.exit("README.md is out of date with nbs/index.ipynb: run `python tools/render_readme.py`")
        print("README.md is up to date")
    else:
        readme.write_text(text)
        print(f"wrote {readme}")
