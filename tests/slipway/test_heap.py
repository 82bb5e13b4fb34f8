"""A settled process keeps what start-up made out of the collector's walks."""

from __future__ import annotations

import gc

from slipway import heap


def test_settle_freezes_start_up_objects_and_makes_full_collections_rare():
    before = gc.get_threshold()
    try:
        alive = [object() for _ in range(100)]
        heap.settle()
        assert gc.get_freeze_count() >= len(alive)
        assert gc.get_threshold() == heap.THRESHOLDS
        assert heap.THRESHOLDS[:2] == before[:2]  # young generations as often as before
        assert heap.THRESHOLDS[2] > before[2]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
