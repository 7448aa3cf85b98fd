"""Boxes on a screen: one definition for the window blackout, OCR words and the regions read by OCR."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Box:
    """A rectangle of pixels: ``left <= x < right``, ``top <= y < bottom``."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def area(self) -> int:
        return max(0, self.width) * max(0, self.height)

    @property
    def empty(self) -> bool:
        return self.right <= self.left or self.bottom <= self.top

    def intersects(self, other: Box) -> bool:
        return (
            self.left < other.right
            and other.left < self.right
            and self.top < other.bottom
            and other.top < self.bottom
        )

    def contains(self, other: Box) -> bool:
        return (
            self.left <= other.left
            and self.top <= other.top
            and other.right <= self.right
            and other.bottom <= self.bottom
        )

    def intersection(self, other: Box) -> Box:
        return Box(
            max(self.left, other.left),
            max(self.top, other.top),
            min(self.right, other.right),
            min(self.bottom, other.bottom),
        )

    def minus(self, other: Box) -> list[Box]:
        """This box with ``other`` cut out, as up to four disjoint boxes."""
        cut = self.intersection(other)
        if cut.empty:
            return [self]
        pieces = [
            Box(self.left, self.top, self.right, cut.top),  # above the cut
            Box(self.left, cut.bottom, self.right, self.bottom),  # below it
            Box(self.left, cut.top, cut.left, cut.bottom),  # left of it
            Box(cut.right, cut.top, self.right, cut.bottom),  # right of it
        ]
        return [piece for piece in pieces if not piece.empty]

    def expanded(self, margin: int, width: int, height: int) -> Box:
        """Grown by ``margin`` on every side, clipped to a ``width`` x ``height`` image."""
        return Box(
            max(0, self.left - margin),
            max(0, self.top - margin),
            min(width, self.right + margin),
            min(height, self.bottom + margin),
        )

    def shifted(self, dx: int, dy: int) -> Box:
        """Moved by ``dx`` right and ``dy`` down."""
        return Box(self.left + dx, self.top + dy, self.right + dx, self.bottom + dy)

    def as_tuple(self) -> tuple[int, int, int, int]:
        return self.left, self.top, self.right, self.bottom


__all__ = ["Box"]
