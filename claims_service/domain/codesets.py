"""The code sets that intake checks codes against, and the constrained type built on them.

Diagnoses: ICD-10-CM as CDC/NCHS release it (public domain), shipped by the pinned package
``simple-icd-10-cm`` (MIT licence; version 1.5.0 carries the April 1, 2026 release, fiscal year
2026). Its plain code list (one code a line, chapters, blocks, categories and subcategories with
their codes in the classification's order, no descriptions) is read as a file of the installed
distribution, without importing the library: the library parses its 10 MB tabular XML at import,
which costs 1.7 s and 200 MB, where the list takes a few tens of milliseconds and 10 MB. A code is
billable when it is a leaf: no code of the list extends it (children follow their parent). That
gives 74,719 billable codes, the count CDC publishes for the release, and exactly the library's own
``is_leaf`` (tests/unit/domain/test_codesets.py compares the two).

A category or subcategory (``E11``, ``E116``) is a known code but not a billable one: it is refused
like an unknown code, with its own message, as a payer's front-end edit refuses it (a 277CA A7).

One release judges every date of service: a code added in a later release is unknown until the
pin moves, and a code deleted before this release is refused for earlier dates of service too.

Procedures have no code set here, only their shape (formats.py): CPT is the AMA's and may not be
shipped, and no maintained package carries the HCPCS Level II list. A procedure that the payer's
fee schedule does not price is held for a reviewer in adjudication (pend reason N448), never paid
by the rules alone.

Messages never repeat the offending code: it says something of the patient and goes back to the
caller.

Imports: the standard library and pydantic only.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import metadata
from typing import Annotated

from pydantic import AfterValidator

from claims_service.domain.formats import Icd10Cm

ICD10CM_DISTRIBUTION = "simple-icd-10-cm"
_CODE_LIST = re.compile(r"^simple_icd_10_cm/data/code-list-(?P<release>[A-Za-z]+-[0-9]{4})\.txt$")

NOT_IN_CODE_SET = "is not in the ICD-10-CM code set"
NOT_BILLABLE = "is an ICD-10-CM category or subcategory, not a billable code: send the complete code"


@dataclass(frozen=True, slots=True)
class DiagnosisCodeSet:
    """One ICD-10-CM release: its billable codes and the categories and subcategories above them."""

    release: str
    """The release's month and year as the package names it, e.g. "April-2026"."""
    billable: frozenset[str]
    headers: frozenset[str]

    def problem(self, code: str) -> str | None:
        """Why `code` (a well-formed ICD-10-CM code without the dot) is refused, or None."""
        if code in self.billable:
            return None
        return NOT_BILLABLE if code in self.headers else NOT_IN_CODE_SET


def parse_code_list(release: str, text: str) -> DiagnosisCodeSet:
    """The code set of a code list: one code a line in the classification's order; chapters
    (numbers) and blocks ("A00-A09") are skipped, and so is a block of one category, which bears
    the category's name on the line above it ("P84" twice); a code the next code extends is a
    header."""
    codes = []
    for line in text.splitlines():
        code = line.strip()
        if code and not code.isdigit() and "-" not in code and (not codes or codes[-1] != code):
            codes.append(code)
    billable = set()
    headers = set()
    for code, after in zip(codes, [*codes[1:], ""], strict=True):
        (headers if after.startswith(code) else billable).add(code)
    return DiagnosisCodeSet(release, frozenset(billable), frozenset(headers))


@functools.cache
def diagnoses() -> DiagnosisCodeSet:
    """The ICD-10-CM code set of the installed, pinned package (read once per process)."""
    try:
        distribution = metadata.distribution(ICD10CM_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        msg = f"the ICD-10-CM code set needs the package {ICD10CM_DISTRIBUTION} (pip install -e .)"
        raise RuntimeError(msg) from None
    lists = [(path, match["release"]) for path in distribution.files or ()
             if (match := _CODE_LIST.match(str(path).replace("\\", "/")))]
    if len(lists) != 1:
        msg = f"{ICD10CM_DISTRIBUTION} {distribution.version}: expected one ICD-10-CM code list, found {len(lists)}"
        raise RuntimeError(msg)
    path, release = lists[0]
    return parse_code_list(release, path.read_text(encoding="utf-8"))


def diagnosis_problem(code: str) -> str | None:
    """Why a well-formed ICD-10-CM code is refused (unknown, or not billable), or None."""
    return diagnoses().problem(code)


def _billable(code: str) -> str:
    problem = diagnosis_problem(code)
    if problem is not None:
        raise ValueError(problem)
    return code


BillableIcd10Cm = Annotated[Icd10Cm, AfterValidator(_billable)]
"""A billable code of the ICD-10-CM release in force, without the dot (shape checked first)."""
