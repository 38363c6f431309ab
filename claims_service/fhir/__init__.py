"""FHIR R4, read-only: each claim's ExplanationOfBenefit (CARIN Blue Button professional /
non-clinician shape) and ClaimResponse, built from the read models (``resources``: pure functions
from rows to resources; ``reads``: the rows a caller may see), served over HTTP (``http``: the
Starlette app; ``server``: uvicorn in a thread of the server process). docs/FHIR.md describes it.
"""
