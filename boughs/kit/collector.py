"""Python's cyclic garbage collector, set for a long-running server or worker process.

A usage batch alone makes tens of thousands of short-lived objects (parsed events,
their checks, rows), and with the default thresholds the collector ran a hundred times
per batch, each older-generation pass walking everything the process had loaded (mapped
models, schemas, routes): a tenth of a batch's time. Those are loaded once and live as
long as the process, so they are frozen out of the collector's walks, and the youngest
generation is collected once per many more allocations. Cycles are still collected.
"""

from __future__ import annotations

import gc

# Allocations (net of frees) between collections of the youngest generation; Python's
# default is 700.
YOUNGEST_THRESHOLD = 20_000


def settle_after_start() -> None:
    """Call once the process has loaded what it keeps (the app, its workers), just
    before it starts serving or working. Not for a process that builds apps over and
    over (a test run): frozen objects are never collected."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNGEST_THRESHOLD, middle, oldest)
