"""validation.py runs pyx12's own loop with its maps loaded once, segment results remembered and
a faster loop counter: its findings must be exactly what pyx12's entry point (`x12n_document`)
finds, on sound files and on broken ones (this also catches a pyx12 upgrade that changes what
the loop relies on)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import pyx12.params
import pyx12.x12n_document

from claims_service.x12.validation import validate

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "x12"
BATCH = (FIXTURES / "837p-batch.x12").read_text()
CORRECTIONS = (FIXTURES / "837p-replace-and-void.x12").read_text()

FILES = {
    "batch": BATCH,
    "corrections": CORRECTIONS,
    "both twice over (remembered segments)": BATCH + BATCH.replace("000004721", "000004722"),
    "SE01 off": BATCH.replace("SE*58*0001", "SE*57*0001"),
    "GE01 off": BATCH.replace("GE*1*4721", "GE*3*4721"),
    "IEA01 off": BATCH.replace("IEA*1*000004721", "IEA*2*000004721"),
    "cut short": BATCH[: BATCH.index("CLM*RFC-24003")],
    "unknown qualifier": BATCH.replace("XX*1234567893", "ZZ*1234567893"),
    "unknown segment": BATCH.replace("HI*ABK:M5450", "HI*XYZ:M5450"),
    "element too long": BATCH.replace("REF*EI*141234567", "REF*EI*" + "1" * 60),
    "missing element": BATCH.replace("DTP*472*D8*20261022", "DTP*472*D8"),
    "extra loop repeat": BATCH.replace("LX*3", "LX*3~\nLX*4"),
}


def pyx12_findings(text: str) -> list[tuple]:
    out = io.StringIO()
    pyx12.x12n_document.x12n_document(param=pyx12.params.params(), src_file=io.StringIO(text), fd_997=None,
                                      fd_html=None, fd_json=out)
    found = []
    for isa in json.loads(out.getvalue())["interchanges"]:
        found.append(("ISA", sorted(e["err_cde"] for e in isa["errors"])))
        for gs in isa["groups"]:
            found.append(("GS", sorted(e["err_cde"] for e in gs["errors"])))
            for st in gs["transactions"]:
                found.append(("ST", sorted(e["err_cde"] for e in st["errors"])))
                for seg in st["segments"]:
                    found.append(("SEG", seg["seg_id"], seg["seg_count"], sorted(e["err_cde"] for e in seg["errors"]),
                                  sorted((e["ele_pos"], e["subele_pos"], c["err_cde"]) for e in seg["elements"]
                                         for c in e["errors"])))
    return found


def our_findings(text: str) -> list[tuple]:
    found = []
    for isa in validate(text):
        found.append(("ISA", sorted(isa.errors)))
        for gs in isa.groups:
            found.append(("GS", sorted(gs.errors)))
            for st in gs.transactions:
                found.append(("ST", st.errors))
                for seg in st.segments:
                    found.append(("SEG", seg.segment_id, seg.position, seg.codes,
                                  sorted((e.position, e.component, e.code) for e in seg.elements)))
    return found


@pytest.mark.parametrize("name", sorted(FILES))
def test_the_loop_finds_what_pyx12s_own_entry_point_finds(name):
    theirs, ours = pyx12_findings(FILES[name]), our_findings(FILES[name])
    # Segments by id and position, with their element errors (the codes of the segment itself are
    # mapped to IK3 codes on our side, so they are compared through the 999 tests instead).
    assert [(f[1], f[2], f[4]) for f in ours if f[0] == "SEG"] == [(f[1], f[2], f[4]) for f in theirs if f[0] == "SEG"]
    assert [f for f in ours if f[0] in ("ISA", "GS", "ST")] == [f for f in theirs if f[0] in ("ISA", "GS", "ST")]
