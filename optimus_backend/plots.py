"""Matplotlib for every plot the project writes: a headless backend, and PNGs stored with a 256-colour palette
(line plots and heat maps look the same, at a third of the bytes of full-colour ones)."""

from __future__ import annotations

import io
from pathlib import Path

DPI = 110


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed), imported only when a plot is made."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path | str) -> Path:
    """Writes ``fig`` to ``path`` as a palette PNG, creating the folder, and closes it."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    pyplot().close(fig)
    buffer.seek(0)
    Image.open(buffer).convert("RGB").quantize(colors=256).save(path, optimize=True)
    return path
