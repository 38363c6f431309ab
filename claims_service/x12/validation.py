"""The implementation guides' grammar, checked by pyx12 (pinned in pyproject.toml; why pyx12:
docs/X12.md): every segment's place in its loop, usage, repeats, element types, lengths and code
values, and the envelope's counts and control numbers. `validate(text)` returns what pyx12 found,
by interchange, functional group, transaction set, segment (position within its transaction set)
and element (position, component, data element number): what a 999 and a TA1 report.

pyx12's own entry point (`x12n_document`) parses its XML maps again on every call (a quarter of
a second each); this module runs the same loop over pyx12's parts with each map loaded once (the
map objects are read-only while a document is walked, so threads share them), and remembers the
result of validating a segment against its map node (pyx12's pure `is_valid_errors`), and counts
loops by their paths' text (`_PathCounter`): a file takes a third of the time `x12n_document`'s
loop takes. tests/unit/x12/test_validation.py holds the two to the same findings. pyx12 logs every
error with the offending value: its logger is kept quiet here, because a value may be PHI.
A group whose version has no map (an 837 of 4010, an unknown GS08) is not walked: it is reported
as a version pyx12 cannot check ("2"), and the caller decides.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import pyx12.error_handler
import pyx12.errors
import pyx12.map_if
import pyx12.map_index
import pyx12.params
import pyx12.x12file
from pyx12.map_walker import apply_walk_errors, walk_tree

logging.getLogger("pyx12").setLevel(logging.CRITICAL)  # its messages quote the data

_PARAMS = pyx12.params.params()
_LOCK = threading.Lock()
# pyx12's segment validation (`segment_if.is_valid_errors`: every element's type, length and code,
# the segment's syntax rules) is a pure function of the map node and the segment, and files repeat
# segments (addresses, the payer, service lines, dates): its results are kept, keyed by both.
_SEGMENT_RESULTS: dict[tuple[int, str], tuple[bool, list[Any]]] = {}
MAX_KEPT_RESULTS = 100_000

# What pyx12 reports on ISA/IEA elements, as TA1 error codes (TA105); on GS/GE and ST/SE elements,
# as AK9 and IK5 codes (pyx12's own 999 writer maps them the same way).
ISA_ELEMENT_CODES = {1: "010", 2: "011", 3: "012", 4: "013", 5: "005", 6: "006", 7: "007", 8: "008", 9: "014",
                     10: "015", 11: "016", 12: "017", 13: "018", 14: "019", 15: "020", 16: "027"}
IEA_ELEMENT_CODES = {1: "021", 2: "018"}
GS_ELEMENT_CODES = {6: "6", 8: "2"}
TRANSACTION_ELEMENT_CODES = {1: "6", 2: "7"}
IK3_CODES = frozenset({"1", "2", "3", "4", "5", "6", "7", "8", "I4", "I6", "I7", "I8", "I9"})
_ELEMENT_NUMBER = re.compile(r"[0-9]{1,4}")
IK4_CODES = frozenset({"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "12", "13", "I10", "I11", "I12", "I13",
                       "I6", "I9"})


@dataclass(frozen=True)
class ElementError:
    position: int  # IK401-1
    component: int | None  # IK401-2
    repeat: int | None  # IK401-3
    reference: str | None  # IK402: the data element's number
    code: str  # IK403


@dataclass
class SegmentError:
    segment_id: str  # IK301
    position: int  # IK302: within the transaction set, ST = 1
    codes: list[str]  # IK304 (one IK3 each)
    elements: list[ElementError] = field(default_factory=list)


@dataclass
class TransactionReport:
    code: str  # ST01
    control: str  # ST02
    version: str  # ST03
    errors: list[str] = field(default_factory=list)  # IK502..: transaction-set errors
    segments: list[SegmentError] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.errors and not self.segments


@dataclass
class GroupReport:
    functional_id: str  # GS01
    control: str  # GS06
    version: str  # GS08
    declared: int = 0  # GE01
    received: int = 0
    errors: list[str] = field(default_factory=list)  # AK905..
    transactions: list[TransactionReport] = field(default_factory=list)
    checked: bool = True  # False: no map for this version, not walked

    @property
    def clean(self) -> bool:
        return self.checked and not self.errors and all(t.clean for t in self.transactions)


@dataclass
class InterchangeReport:
    control: str  # ISA13
    date: str  # ISA09
    time: str  # ISA10
    ack_requested: str  # ISA14
    usage: str  # ISA15
    sender: tuple[str, str]  # ISA05, ISA06
    receiver: tuple[str, str]  # ISA07, ISA08
    errors: list[str] = field(default_factory=list)  # TA105 codes
    groups: list[GroupReport] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.errors and all(g.clean for g in self.groups)

    def problems(self) -> list[str]:
        """Every error in one line each (what a test prints when a file it made is not clean)."""
        found = [f"interchange: {code}" for code in self.errors]
        for g in self.groups:
            found += [f"group {g.control}: {code}" for code in g.errors]
            if not g.checked:
                found.append(f"group {g.control}: no map for {g.functional_id} {g.version}")
            for t in g.transactions:
                found += [f"transaction {t.control}: {code}" for code in t.errors]
                for s in t.segments:
                    found.append(f"transaction {t.control} segment {s.segment_id} at {s.position}: {s.codes} "
                                 + " ".join(f"{s.segment_id}{e.position:02d}{'-' + str(e.component) if e.component else ''}"
                                            f" ({e.reference}) {e.code}" for e in s.elements))
        return found


@functools.cache
def _map(name: str) -> Any:
    with _LOCK:
        return pyx12.map_if.load_map_file(name, _PARAMS)


@functools.cache
def _index() -> Any:
    with _LOCK:
        return pyx12.map_index.map_index()


def _map_for(version: str, functional_id: str, icvn: str) -> Any | None:
    name = _index().get_filename(icvn, version, functional_id)
    return _map(name) if name else None


def validate(text: str) -> list[InterchangeReport]:
    """pyx12's findings for each interchange in `text` (which must begin with an ISA: see
    interchange.read). Anything pyx12 itself trips over is reported as invalid interchange content
    (TA1 code 024), never raised."""
    try:
        return _walk(text)
    except Exception:  # pyx12 raises assorted errors on input it cannot follow
        return [_unreadable(text)]


def _unreadable(text: str) -> InterchangeReport:
    isa = text.lstrip()[:106]
    sep = isa[3:4] or "*"
    parts = (isa.split(sep) + [""] * 17)[:17]
    return InterchangeReport(control=parts[13], date=parts[9], time=parts[10], ack_requested=parts[14],
                             usage=parts[15] or "P", sender=(parts[5], parts[6].strip()),
                             receiver=(parts[7], parts[8].strip()), errors=["024"])


def _walk(text: str) -> list[InterchangeReport]:
    errh = pyx12.error_handler.err_handler()
    src = pyx12.x12file.X12Reader(io.StringIO(text))
    control = _map("x12.control.00501.xml" if src.icvn == "00501" else "x12.control.00401.xml")
    node = control.getnodebypath("/ISA_LOOP/ISA")
    walker = walk_tree()
    walker.counter = _PathCounter()
    icvn = ""
    order: list[tuple[Any, GroupReport | None]] = []  # every group in file order: (its err_isa node, None
    # when pyx12 walks it, else the report of a group it cannot walk)
    skipping: GroupReport | None = None
    for seg in src:
        seg_id = seg.get_seg_id()
        if skipping is not None:
            src.pop_errors()
            if seg_id == "ST":
                skipping.received += 1
            if seg_id == "GE":
                skipping.declared = _int(seg.get_value("GE01"))
                skipping = None
                node = control.getnodebypath("/ISA_LOOP/GS_LOOP/GE")
            if seg_id not in ("ISA", "IEA", "GS"):
                continue
            skipping = None
        previous = node
        if seg_id == "ISA":
            node = control.getnodebypath("/ISA_LOOP/ISA")
            walker.forceWalkCounterToLoopStart("/ISA_LOOP", "/ISA_LOOP/ISA")
        elif seg_id == "GS":
            node = control.getnodebypath("/ISA_LOOP/GS_LOOP/GS")
            walker.forceWalkCounterToLoopStart("/ISA_LOOP/GS_LOOP", "/ISA_LOOP/GS_LOOP/GS")
        else:
            node, _pop, _push, walk_errors = walker.walk_errors(node, seg, src.get_seg_count(), src.get_cur_line(),
                                                               src.get_ls_id())
            apply_walk_errors(errh, walk_errors)
        if node is None:
            node = previous
            continue
        if seg_id == "ISA":
            errh.add_isa_loop(seg, src)
            icvn = seg.get_value("ISA12") or ""
            errh.handle_errors(src.pop_errors())
        elif seg_id == "IEA":
            errh.handle_errors(src.pop_errors())
            errh.close_isa_loop(node, seg, src)
        elif seg_id == "GS":
            functional_id, version = seg.get_value("GS01") or "", seg.get_value("GS08") or ""
            mapped = _map_for(version, functional_id, icvn)
            if mapped is None:
                skipping = GroupReport(functional_id=functional_id, control=seg.get_value("GS06") or "",
                                       version=version, errors=["2"], checked=False)
                order.append((errh.cur_isa_node, skipping))
                src.pop_errors()
                node = control.getnodebypath("/ISA_LOOP/GS_LOOP/GS")
                continue
            src.check_837_lx = mapped.id == "837"
            node = mapped.getnodebypath("/ISA_LOOP/GS_LOOP/GS")
            errh.add_gs_loop(seg, src)
            order.append((errh.cur_isa_node, None))
            errh.handle_errors(src.pop_errors())
        elif seg_id == "GE":
            errh.handle_errors(src.pop_errors())
            errh.close_gs_loop(node, seg, src)
        elif seg_id == "ST":
            errh.add_st_loop(seg, src)
            errh.handle_errors(src.pop_errors())
        elif seg_id == "SE":
            errh.handle_errors(src.pop_errors())
            errh.close_st_loop(node, seg, src)
        else:
            errh.add_seg(node, seg, src.get_seg_count(), src.get_cur_line(), src.get_ls_id())
            errh.handle_errors(src.pop_errors())
        _apply_segment_errors(node, seg, errh)
    src.cleanup()
    errh.handle_errors(src.pop_errors())
    return [_interchange(isa, [group for node, group in order if node is isa]) for isa in errh.children]


class _PathCounter:
    """The walker's loop and segment counts (pyx12's `NodeCounter`: reset_to_node, increment,
    get_count), keyed by each path's text rather than by the path objects, whose hash formats the
    path on every lookup: that formatting was a third of the walk. Paths are the map nodes'
    (kept for good, so their ids stay theirs) or strings."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._texts: dict[int, tuple[Any, str]] = {}

    def _text(self, path: Any) -> str:
        if isinstance(path, str):
            return path
        known = self._texts.get(id(path))
        if known is None or known[0] is not path:
            known = (path, path.format())
            self._texts[id(path)] = known
        return known[1]

    def reset_to_node(self, path: Any) -> None:
        """Forget the counts of every path below `path` (pyx12's `X12Path.is_child_path`)."""
        text = self._text(path)
        if text and not text.endswith("/"):  # then a child's text is the path's and "/" and more
            below = [k for k in self._counts if k.startswith(text + "/")]
        else:
            root = text.split("/")
            below = [k for k in self._counts if k.count("/") >= len(root) and k.split("/")[: len(root)] == root]
        for key in below:
            del self._counts[key]

    def increment(self, path: Any) -> None:
        key = self._text(path)
        self._counts[key] = self._counts.get(key, 0) + 1

    def setCount(self, path: Any, count: int) -> None:  # noqa: N802 - pyx12's name
        self._counts[self._text(path)] = count

    def get_count(self, path: Any) -> int:
        return self._counts.get(self._text(path), 0)

    def getState(self) -> dict[str, int]:  # noqa: N802 - pyx12's name
        return self._counts


def _apply_segment_errors(node: Any, seg: Any, errh: Any) -> None:
    """pyx12's `apply_segment_errors` (the same loop), with `is_valid_errors` remembered."""
    key = (id(node), seg.format())
    result = _SEGMENT_RESULTS.get(key)
    if result is None:
        result = node.is_valid_errors(seg)
        if len(_SEGMENT_RESULTS) >= MAX_KEPT_RESULTS:
            _SEGMENT_RESULTS.clear()
        _SEGMENT_RESULTS[key] = result
    cursor = None
    for error in result[1]:
        if error.map_node is None:
            errh.seg_error("8", error.err_str, error.err_val)
            continue
        if error.map_node is not cursor:
            errh.add_ele(error.map_node)
            cursor = error.map_node
        errh.ele_error(error.err_cde, error.err_str, error.err_val, error.refdes)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _interchange(isa: Any, order: list[GroupReport | None]) -> InterchangeReport:
    """The interchange's report; `order` has its groups in file order, None for each one pyx12
    walked (its err_gs node, in turn), else the report of a group it could not walk."""
    seg = isa.seg_data
    codes = [str(code) for code, *_ in isa.errors]
    for element in isa.elements:
        for _code, message, _value in element.errors:
            table = IEA_ELEMENT_CODES if "IEA" in message else ISA_ELEMENT_CODES
            codes.append(table.get(element.ele_pos, "024"))
    report = InterchangeReport(
        control=seg.get_value("ISA13") or "", date=seg.get_value("ISA09") or "", time=seg.get_value("ISA10") or "",
        ack_requested=seg.get_value("ISA14") or "", usage=seg.get_value("ISA15") or "P",
        sender=(seg.get_value("ISA05") or "", (seg.get_value("ISA06") or "").strip()),
        receiver=(seg.get_value("ISA07") or "", (seg.get_value("ISA08") or "").strip()),
        errors=list(dict.fromkeys(codes)),
    )
    walked = iter(isa.children)
    report.groups = [group if group is not None else _group(next(walked)) for group in order]
    report.groups += [_group(gs) for gs in walked]
    return report


def _group(gs: Any) -> GroupReport:
    codes = [str(code) for code, *_ in gs.errors]
    for element in gs.elements:
        for _code, message, _value in element.errors:
            if "GS" in message:
                codes.append(GS_ELEMENT_CODES.get(element.ele_pos, "1"))
            else:  # GE
                codes.append("6" if element.ele_pos == 2 else "1")
    group = GroupReport(functional_id=gs.fic or "", control=gs.gs_control_num or "", version=gs.vriic or "",
                        declared=gs.st_count_orig or 0, received=gs.st_count_recv or 0,
                        errors=sorted(set(codes)))
    if not gs.is_closed():
        group.errors = sorted(set(group.errors) | {"3"})
    group.transactions = [_transaction(st) for st in gs.children]
    return group


def _transaction(st: Any) -> TransactionReport:
    codes = [str(code) for code, *_ in st.errors]
    for element in st.elements:
        for _code, _message, _value in element.errors:
            codes.append(TRANSACTION_ELEMENT_CODES.get(element.ele_pos, "6"))
    report = TransactionReport(code=st.trn_set_id or "", control=(st.trn_set_control_num or "").strip(),
                               version=st.vriic or "", errors=sorted(set(codes)))
    for seg in st.children:
        codes = [str(code) for code, *_ in seg.errors]
        if "SEG1" in codes:  # pyx12's own code for a segment with a bad syntax rule: "has data element errors"
            codes = [c for c in codes if c != "SEG1"] + ["8"]
        elements = []
        for element in seg.elements:
            for code, _message, _value in element.errors:
                if str(code) in IK4_CODES:
                    # IK402 is a data element's number (N0, up to four digits): an envelope segment
                    # sent inside a transaction (a TA1) has element ids like "I12", left out then.
                    reference = element.ele_ref_num if _ELEMENT_NUMBER.fullmatch(element.ele_ref_num or "") else None
                    elements.append(ElementError(position=element.ele_pos, component=element.subele_pos,
                                                 repeat=element.repeat_pos, reference=reference, code=str(code)))
        if elements and "8" not in codes:
            codes.append("8")
        codes = [c for c in dict.fromkeys(codes) if c in IK3_CODES]
        if codes or elements:
            report.segments.append(SegmentError(segment_id=seg.seg_id or "", position=seg.seg_count,
                                                codes=codes or ["8"], elements=elements))
    return report
