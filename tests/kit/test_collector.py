"""The collector settings a server or worker process takes once it has started."""

from __future__ import annotations

import subprocess
import sys

from boughs.kit.collector import YOUNGEST_THRESHOLD


def test_a_started_process_freezes_what_it_loaded_and_collects_the_young_less_often() -> None:
    # In a process of its own: frozen objects are never collected, which a test run
    # building app after app must not do to itself.
    script = (
        "import gc\n"
        "from boughs.app import create_app\n"
        "from boughs.kit.collector import settle_after_start\n"
        "before = gc.get_threshold()\n"
        "settle_after_start()\n"
        "print(before[0], gc.get_threshold()[0], gc.get_freeze_count())\n"
        "class Cycle: pass\n"
        "a = Cycle(); a.me = a; del a\n"
        "print(gc.collect())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    settings, collected = done.stdout.splitlines()
    before, after, frozen = (int(n) for n in settings.split())
    assert before == 700 and after == YOUNGEST_THRESHOLD
    # Everything imported (the app's modules, models and schemas) is out of the walks...
    assert frozen > 100_000
    # ...and cycles made afterwards are still collected.
    assert int(collected) >= 1
