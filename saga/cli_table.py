"""Plain text tables for a terminal: aligned columns, one line per row, fitted to the width.

A table wider than the terminal has its widest cells cut (ending in ``…``), never a row
wrapped: the first column (a saga id, say) is cut last, so rows stay one line each for
``grep`` and eyes alike. Scripts should read ``--json`` instead.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from typing import Any

ELLIPSIS = "…"
GAP = "  "
"""Between two columns."""
KEEP = 6
"""Cut other columns down to this before the first column is cut."""
FREE_TEXT = frozenset({"error", "last error", "reason", "why"})
"""Columns of words, cut first (down to ``FREE_TEXT_KEEP``): their start says the most."""
FREE_TEXT_KEEP = 12


def terminal_width(environ: Mapping[str, str] | None = None) -> int | None:
    """The width to fit: ``COLUMNS`` when set, else the terminal's, else None (output is
    piped into a file or a program: nothing is cut)."""
    env = os.environ if environ is None else environ
    columns = env.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout is not None and sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, ending in ``…`` when it was longer."""
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + ELLIPSIS if width > 0 else ""


def _shrink(widths: list[int], floors: list[int], budget: int, columns: Sequence[int]) -> None:
    """Take one character at a time from the widest of ``columns`` still above its floor,
    until the widths fit ``budget`` or none can give more."""
    while sum(widths) > budget:
        above = [i for i in columns if widths[i] > floors[i]]
        if not above:
            return
        widest = max(above, key=lambda i: (widths[i], i))
        widths[widest] -= 1


def fit(natural: list[int], headers: Sequence[str], width: int | None) -> list[int]:
    """Column widths that fit ``width`` (with the gaps): free text (an error, a reason) is cut
    first, then the widest other columns, then times (``… (utc)``: a cut date says little),
    the first column (the id) last."""
    widths = list(natural)
    if width is None or not widths:
        return widths
    budget = width - len(GAP) * (len(widths) - 1)
    free = [i for i, h in enumerate(headers) if h.lower() in FREE_TEXT]
    _shrink(widths, [min(n, FREE_TEXT_KEEP) for n in natural], budget, free)
    times = {i for i, h in enumerate(headers) if h.lower().endswith("(utc)")}
    others = [i for i in range(1, len(widths)) if i not in times]
    floors = [min(n, FREE_TEXT_KEEP if i in free else KEEP) for i, n in enumerate(natural)]
    _shrink(widths, floors, budget, others)
    _shrink(widths, [1] * len(widths), budget, range(len(widths)))
    return widths


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None = None) -> str:
    """Aligned columns, wide enough for every cell unless that would pass ``width``."""
    cells = [[_cell(v) for v in row] for row in rows]
    natural = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    widths = fit(natural, headers, width)
    lines = [GAP.join(cut(h.upper(), w).ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += [GAP.join(cut(c, w).ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return " ".join(str(value).split()) if "\n" in str(value) else str(value)
