"""Integer money arithmetic: the one rounding rule the engine uses.

Amounts are non-negative integer cents. Every division rounds half up to the cent
(`divide_half_up(1001 * 5000, 10_000)` is 501): exact integer arithmetic, so the same inputs give the
same cents on every machine, and no float ever touches money.

Imports: nothing.
"""


def divide_half_up(numerator: int, denominator: int) -> int:
    """`numerator / denominator` rounded half up, for numerator >= 0 and denominator > 0."""
    return (2 * numerator + denominator) // (2 * denominator)


def coinsurance(amount_cents: int, basis_points: int) -> int:
    """The member's coinsurance share of `amount_cents`: basis points (2000 = 20 %), half up."""
    return divide_half_up(amount_cents * basis_points, 10_000)
