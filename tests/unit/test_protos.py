"""The public API contract: generated code is fresh, `buf lint` passes, conventions hold.

The .proto files under protos/claims/v1 are the only contract with clients, and the Python code
generated from them is committed. These tests regenerate it with exactly the command `make proto`
runs and fail if anything differs, so a .proto edit without regeneration (or a hand edit of
generated code) cannot be merged.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor as _descriptor

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
PACKAGE_DIR = PROTOS / "claims" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
STALE = "generated code is stale: run make proto"


def _tool(name: str) -> str:
    """A console script of this virtualenv (beside the interpreter), else one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found beside {sys.executable} or on PATH: install the dev extras")
    return found


def _grpc_tools_include() -> str:
    spec = importlib.util.find_spec("grpc_tools")
    assert spec is not None and spec.origin is not None, "grpcio-tools is not installed"
    return str(Path(spec.origin).parent / "_proto")


def _proto_files() -> list[str]:
    # Relative to the repository root, sorted like the shell glob in the Makefile.
    return sorted(str(p.relative_to(ROOT)) for p in PACKAGE_DIR.glob("*.proto"))


def _generated(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)
    }


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    out.mkdir()
    command = [
        sys.executable, "-m", "grpc_tools.protoc",
        "-I", "protos",
        "-I", _grpc_tools_include(),
        f"--plugin=protoc-gen-mypy={_tool('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_tool('protoc-gen-mypy_grpc')}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *_proto_files(),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"protoc failed:\n{result.stderr}"

    fresh = _generated(out)
    committed = _generated(PROTOS)
    assert fresh, "protoc generated nothing"
    assert sorted(committed) == sorted(fresh), STALE
    for name, content in fresh.items():
        assert committed[name] == content, f"{STALE} ({name} differs)"
    for package in (PROTOS / "claims", PACKAGE_DIR):
        assert (package / "__init__.py").is_file(), f"{package}/__init__.py is missing"


def test_buf_lint_passes(tmp_path: Path) -> None:
    env = {**os.environ, "BUF_CACHE_DIR": str(tmp_path / "buf-cache")}
    result = subprocess.run(
        [_tool("buf"), "lint"], cwd=ROOT, capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, f"buf lint failed:\n{result.stdout}{result.stderr}"


# --- conventions buf does not check ------------------------------------------------------

EXPECTED_RPCS = {
    "provider": (
        "ProviderService",
        {"RecordVisit", "SubmitClaim", "CorrectClaim", "VoidClaim", "GetClaim", "ListClaims",
         "WatchClaims", "GetRemittance", "SubmitX12", "GetMemberHistory", "UploadAttachment"},
    ),
    "payer": (
        "PayerService",
        {"SubscribeAdjudications", "ListPendedClaims", "ResolvePendedClaim", "IssuePayments", "ListEmergencyAccesses",
         "GetMemberAccumulators", "GetRemittance835"},
    ),
    "dispute": (
        "DisputeService",
        {"OpenDispute", "GetClaimHistory", "ReplayAdjudication", "ResolveDispute", "VerifyLedger"},
    ),
    "admin": (
        "AdminService",
        {"EnrollMember", "TerminateCoverage", "RecordPriorAuthorization", "RegisterProvider",
         "RecordCredential", "JoinNetwork", "PublishFeeSchedule", "DeployRuleSet", "CreateApiKey",
         "RevokeApiKey", "ListApiKeys", "EraseMember"},
    ),
    "member": (
        "MemberService",
        {"GetOwnClaim", "ListOwnClaims", "GetExplanationOfBenefit", "ListExplanationsOfBenefit", "GetOwnAccumulators",
         "GrantConsent", "RevokeConsent", "ListConsents", "ListAccessLog"},
    ),
    "attachment": (
        "AttachmentService",
        {"GetClaimAttachments", "GetAttachment"},
    ),
    "ledger": (
        "LedgerService",
        {"GetCheckpoint", "GetInclusionProof", "GetConsistencyProof", "ExportClaimBundle",
         "GetPublicKey"},
    ),
}
SERVER_STREAMING = {"WatchClaims", "SubscribeAdjudications", "GetAttachment"}
CLIENT_STREAMING = {"UploadAttachment"}
DATE_SUFFIXES = ("_date", "_on", "_from", "_to")
DATE_NAMES = {"date_of_service"}


def _module(name: str):  # type: ignore[no-untyped-def]
    try:
        return importlib.import_module(f"claims.v1.{name}_pb2")
    except ImportError:
        # Not installed as a package in this environment: import from the source tree.
        sys.path.insert(0, str(PROTOS))
        return importlib.import_module(f"claims.v1.{name}_pb2")


def _messages(file: _descriptor.FileDescriptor):  # type: ignore[no-untyped-def]
    def walk(message: _descriptor.Descriptor):  # type: ignore[no-untyped-def]
        yield message
        for nested in message.nested_types:
            yield from walk(nested)

    for message in file.message_types_by_name.values():
        yield from walk(message)


@pytest.mark.parametrize("name", sorted(EXPECTED_RPCS))
def test_services_offer_the_agreed_rpcs(name: str) -> None:
    module = _module(name)
    service_name, rpcs = EXPECTED_RPCS[name]
    service = module.DESCRIPTOR.services_by_name[service_name]
    assert {m.name for m in service.methods} == rpcs
    for method in service.methods:
        assert method.client_streaming == (method.name in CLIENT_STREAMING), method.full_name
        assert method.server_streaming == (method.name in SERVER_STREAMING), method.full_name
    importlib.import_module(f"claims.v1.{name}_pb2_grpc")


@pytest.mark.parametrize("name", ["common", *sorted(EXPECTED_RPCS)])
def test_money_dates_and_pages_follow_the_conventions(name: str) -> None:
    FD = _descriptor.FieldDescriptor
    for message in _messages(_module(name).DESCRIPTOR):
        if message.GetOptions().map_entry:
            continue
        for field in message.fields:
            where = f"{message.full_name}.{field.name}"
            if field.name.endswith("_cents"):
                assert field.type == FD.TYPE_INT64, f"{where}: money is int64 cents"
            if field.name in DATE_NAMES or field.name.endswith(DATE_SUFFIXES):
                assert field.type == FD.TYPE_STRING, f"{where}: dates are YYYY-MM-DD strings"
            if field.name == "page_size":
                assert field.type == FD.TYPE_INT32, where
            if field.name in {"page_token", "next_page_token"} or field.name.endswith("_id"):
                assert field.type == FD.TYPE_STRING, f"{where}: ids and tokens are strings"
            if "hash" in field.name and field.name != "ruleset_hash":
                assert field.type == FD.TYPE_BYTES, f"{where}: hashes are bytes"
        if message.name.startswith("List") and message.name.endswith("Request"):
            assert {"page_size", "page_token"} <= set(message.fields_by_name), message.full_name
        if message.name.startswith("List") and message.name.endswith("Response"):
            assert "next_page_token" in message.fields_by_name, message.full_name
