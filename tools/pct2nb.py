"""Turn a jupytext percent-format draft (`# %%` cells) into a clean nbdev notebook.

Usage: python tools/pct2nb.py draft.py nbs/05_model.ipynb [more pairs ...]

The .ipynb is the source of truth once written; the draft is a convenience for
writing many cells at once and is not committed. After converting, run
`nbdev_export && nbdev_clean`.
"""
import sys
from pathlib import Path

import jupytext
import nbformat

KERNEL = {"display_name": "python3", "language": "python", "name": "python3"}


def convert(src: str, dst: str) -> None:
    nb = jupytext.read(src, fmt="py:percent")
    nb.metadata = {"kernelspec": KERNEL}
    for cell in nb.cells:
        tags = cell.metadata.get("tags")
        cell.metadata = {"tags": tags} if tags else {}
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dst)
    print(f"wrote {dst} ({len(nb.cells)} cells)")


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or len(args) % 2:
        sys.exit(__doc__)
    for src, dst in zip(args[::2], args[1::2]):
        convert(src, dst)
