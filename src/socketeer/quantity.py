"""Counts written for people: ``1 second``, ``2 seconds``, ``0.5 seconds``, ``0 bytes``.

Sans-IO: no I/O, no clock.
"""

from __future__ import annotations

__all__ = ["quantity"]


def quantity(count: float, unit: str) -> str:
    """``count`` and ``unit``, the unit in the plural unless the count is exactly one.

    Whole numbers are written whole (``1048576``, never ``1.04858e+06``),
    others as briefly as they can be (``0.5``).
    """
    number = str(int(count)) if float(count).is_integer() else f"{count:g}"
    return f"{number} {unit if count == 1 else unit + 's'}"
