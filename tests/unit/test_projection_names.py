"""A projection's progress has one name whether the hub hears it in a NOTIFY or reads it from the
projection's tracking row (a rebuild's too)."""

from __future__ import annotations

import pytest

from projections.store import REBUILD_SUFFIX, notice_name, progress_notice, tracking_name


@pytest.mark.parametrize("suffix", ["", REBUILD_SUFFIX])
@pytest.mark.parametrize("projection", ["claim_status", "payments", "dispute_timeline"])
def test_a_tracking_rows_name_is_the_name_its_notice_gives(projection, suffix):
    _, payload = progress_notice(f"{projection}{suffix}", 42)
    assert notice_name(tracking_name(projection, suffix)) == payload.rpartition(" ")[0]
