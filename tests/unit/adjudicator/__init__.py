"""Unit tests of the adjudicator: pure, no I/O; `kit.py` builds claims and facts for them."""
