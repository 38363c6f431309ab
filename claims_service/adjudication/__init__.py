"""Adjudication: the worker that decides every submitted claim, and the money every decision moves.

follower.py      the loop: reads the ledger in order, decides each submitted claim, commits a batch
unit_of_work.py  the aggregates a batch reads and changes, and the cache kept between batches
facts.py         what the rules see: the claim as engine input, the facts gathered for it
effects.py       a decision change's money effects, as pure functions (accumulators, payments)
settlement.py    load, call effects, change aggregates: shared by the follower and the commands

Imports: adjudicator, claims_service.domain, claims_service.application; nothing of projections,
the API or the CLI.
"""

from claims_service.adjudication.follower import TRACKING_NAME, AdjudicationFollower

__all__ = ["TRACKING_NAME", "AdjudicationFollower"]
