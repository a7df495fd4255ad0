"""Timing, the results table and the JSON report."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Figure:
    suite: str
    engine: str
    name: str
    unit: str  # "ms" (lower is better) or "rows/s" (higher is better)
    boughs: float
    reference: float
    max_ratio: float | None = None
    absolute_limit: float | None = None
    notes: str = ""

    @property
    def ratio(self) -> float:
        """How many times slower than the raw reference Boughs is."""
        if self.unit == "ms":
            return self.boughs / self.reference if self.reference else float("inf")
        return self.reference / self.boughs if self.boughs else float("inf")

    @property
    def targeted(self) -> bool:
        """Whether the figure has a target; one without is shown for what it explains."""
        return self.max_ratio is not None or self.absolute_limit is not None

    @property
    def passed(self) -> bool:
        ok = self.max_ratio is None or self.ratio <= self.max_ratio
        if self.absolute_limit is not None:
            if self.unit == "ms":
                ok = ok and self.boughs <= self.absolute_limit
            else:
                ok = ok and self.boughs >= self.absolute_limit
        return ok


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        print(_row(figure), flush=True)

    def print_table(self) -> None:
        print()
        print(_header())
        for figure in self.figures:
            print(_row(figure))
        targeted = [f for f in self.figures if f.targeted]
        met = sum(f.passed for f in targeted)
        print(f"\n{met} of {len(targeted)} figures with a target meet it.")

    def write(self, name: str, extra: dict[str, Any]) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{name}.json"
        payload = {
            **extra,
            "figures": [{**asdict(f), "ratio": f.ratio, "passed": f.passed} for f in self.figures],
        }
        path.write_text(json.dumps(payload, indent=2))
        return path


def _header() -> str:
    return (
        f"{'suite':<10} {'engine':<9} {'figure':<34} {'boughs':>12} {'raw':>12} "
        f"{'ratio':>6} {'target':>18}  ok"
    )


def _fmt(value: float, unit: str) -> str:
    return f"{value:,.2f} ms" if unit == "ms" else f"{value:,.0f}/s"


def _row(f: Figure) -> str:
    target = []
    if f.max_ratio is not None:
        target.append(f"≤{f.max_ratio:g}x")
    if f.absolute_limit is not None:
        target.append(("<" if f.unit == "ms" else ">") + _fmt(f.absolute_limit, f.unit))
    return (
        f"{f.suite:<10} {f.engine:<9} {f.name:<34} {_fmt(f.boughs, f.unit):>12} "
        f"{_fmt(f.reference, f.unit):>12} {f.ratio:>5.2f}x {' '.join(target):>18}  "
        f"{('yes' if f.passed else 'NO') if f.targeted else '-'}"
    )


async def median_ms(work: Callable[[], Awaitable[Any]], repeat: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        await work()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await work()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def paired_ms(
    boughs: Callable[[], Awaitable[Any]],
    raw: Callable[[], Awaitable[Any]],
    repeat: int,
    warmup: int = 2,
) -> tuple[float, float]:
    """Alternate the two so drift on a noisy machine hits both alike; medians of each."""
    for _ in range(warmup):
        await boughs()
        await raw()
    ours, theirs = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        await boughs()
        ours.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        await raw()
        theirs.append((time.perf_counter() - started) * 1000)
    return statistics.median(ours), statistics.median(theirs)
