"""The plain-text table every script in ``benchmarks/`` prints (one printer for all)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

__all__ = ["text_table"]


def text_table(header: Sequence[str], rows: Sequence[Sequence[str] | str],
               right: Collection[int] = ()) -> str:
    """Columns aligned under ``header`` and a rule of dashes; the columns whose index is
    in ``right`` right-aligned.  A ``str`` among ``rows`` is a heading line, printed as
    it is and not counted in the widths.  Trailing spaces are stripped."""
    cells = [tuple(header), *(tuple(r) for r in rows if not isinstance(r, str))]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]

    def line(cols: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cols, widths, strict=True))).rstrip()

    return "\n".join([line(cells[0]), line(tuple("-" * w for w in widths)),
                      *(r if isinstance(r, str) else line(r) for r in rows)])
