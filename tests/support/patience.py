"""How long a test waits for an effect it expects before it fails.

Tests wait on conditions, never on the clock: a wait ends as soon as its condition
holds, so a generous deadline costs nothing when things work and only bounds how long
a broken build keeps the suite waiting. The deadline is sized for a 2-core machine whose
cores are busy with other work (a CI runner, a laptop compiling): there a card may take
many seconds to appear. How fast things are is measured by ``bench/`` (``python -m
bench.run``), never asserted by a test.
"""

from __future__ import annotations

PATIENCE = 120.0  # seconds
