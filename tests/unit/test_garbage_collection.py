"""The collector's settings for the long-running processes: the workers collect rarely, the gRPC
server more often (its per-call reference cycles make a rare collection a long pause for every
call in flight: claims_service/garbage_collection.py)."""

from __future__ import annotations

import gc

import pytest

from claims_service.garbage_collection import (
    OLDER_GENERATION_THRESHOLDS,
    SERVER_YOUNGEST_GENERATION_THRESHOLD,
    YOUNGEST_GENERATION_THRESHOLD,
    tune_garbage_collector,
)


@pytest.fixture
def restored_collector():
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored_collector")
@pytest.mark.parametrize("youngest", [YOUNGEST_GENERATION_THRESHOLD, SERVER_YOUNGEST_GENERATION_THRESHOLD])
def test_tuning_sets_the_thresholds_and_freezes_what_start_up_left(youngest):
    tune_garbage_collector(youngest)
    assert gc.get_threshold() == (youngest, *OLDER_GENERATION_THRESHOLDS)
    assert gc.get_freeze_count() > 0

