"""Highest and lowest values over a bounded horizon: a ring of per-block extremes.

The horizon is `blocks` x `block` values, kept as `blocks` (high, low) pairs, so the memory
is fixed however long the stream runs, and old extremes are forgotten a block at a time.
"""

from __future__ import annotations

import math

BIG = 1e9  # the ratio reported when the horizon has no spread yet


class Extremes:
    __slots__ = ("block", "blocks", "count", "cur_hi", "cur_lo", "hi", "highs", "lo", "lows")

    def __init__(self, block: int, blocks: int) -> None:
        self.block, self.blocks = block, blocks
        self.highs: list[float] = []
        self.lows: list[float] = []
        self.count = 0
        self.cur_hi, self.cur_lo = -math.inf, math.inf
        self.hi, self.lo = -math.inf, math.inf  # over the closed blocks

    @property
    def empty(self) -> bool:
        return not self.highs and self.count == 0

    def excess(self, x: float) -> float:
        """How far `x` lies beyond the horizon's range, as a share of that range (0 inside)."""
        hi = self.hi if self.hi > self.cur_hi else self.cur_hi
        lo = self.lo if self.lo < self.cur_lo else self.cur_lo
        beyond = x - hi if x > hi else lo - x
        if beyond <= 0:
            return 0.0
        span = hi - lo
        return beyond / span if span > 0 else BIG

    def above(self, x: float) -> float:
        """Like `excess`, counting only new highs."""
        hi = self.hi if self.hi > self.cur_hi else self.cur_hi
        if x <= hi:
            return 0.0
        lo = self.lo if self.lo < self.cur_lo else self.cur_lo
        span = hi - lo
        return (x - hi) / span if span > 0 else BIG

    def add(self, x: float) -> None:
        if x > self.cur_hi:
            self.cur_hi = x
        if x < self.cur_lo:
            self.cur_lo = x
        self.count += 1
        if self.count >= self.block:
            self.highs.append(self.cur_hi)
            self.lows.append(self.cur_lo)
            if len(self.highs) > self.blocks:
                del self.highs[0], self.lows[0]
            self.hi, self.lo = max(self.highs), min(self.lows)
            self.count = 0
            self.cur_hi, self.cur_lo = -math.inf, math.inf

    def span(self) -> tuple[float, float]:
        """(low, high) over the whole horizon, the open block included."""
        return min(self.lo, self.cur_lo), max(self.hi, self.cur_hi)

    def to_floats(self) -> list[float]:
        return [float(self.count), self.cur_hi, self.cur_lo, *self.highs, *self.lows]

    @classmethod
    def from_floats(cls, block: int, blocks: int, data: list[float]) -> Extremes:
        ring = cls(block, blocks)
        ring.count, ring.cur_hi, ring.cur_lo = int(data[0]), data[1], data[2]
        n = (len(data) - 3) // 2
        ring.highs, ring.lows = list(data[3 : 3 + n]), list(data[3 + n :])
        if ring.highs:
            ring.hi, ring.lo = max(ring.highs), min(ring.lows)
        return ring
