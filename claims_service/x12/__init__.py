"""X12 5010 as the field speaks it: 837P claims in (intake.py), 999 and 277CA acknowledgements out
(acks.py), 835 remittance advice out (remittance.py). interchange.py reads and writes segments and
envelopes and converts amounts and dates exactly; validation.py runs pyx12 over an interchange
(the implementation guides' grammar) and reports its errors by segment and element position.
"""
