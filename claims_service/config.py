"""Every setting of the service, read once from the environment at start-up (pydantic-settings).

Each field is the environment variable ``CLAIMS_<FIELD>`` (``CLAIMS_DATABASE_URL`` ...); an empty
value counts as unset (but for ``EMPTY_MEANS_OFF``'s, where it turns a feature off). A bad value
stops start-up with a message naming the variable. The payload cipher (``CIPHER_TOPIC``,
``CIPHER_KEY``, ``COMPRESSOR_TOPIC``) is the eventsourcing library's own setting, which it reads
itself; ``cipher_key`` here is the same key, for the readers of stored payloads outside the library
(``claims_service.ledger.payloads``).
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import AliasChoices, Field, PositiveFloat, PositiveInt, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from claims_service.blobs.store import BlobStore, DirectoryBlobStore
from claims_service.files import private_dir
from claims_service.keys.kek import KeyEncryptionKeys, load_keks
from claims_service.ledger.checkpointer import SigningSettings
from claims_service.ledger.note import DEFAULT_ORIGIN, CheckpointError, VerifierKey
from claims_service.ledger.signing_key import resolve_signing_key
from claims_service.ledger.witnessing import WitnessEndpoint, parse_witnesses
from claims_service.observability.metrics import parse_addr


DEFAULT_FHIR_ADDR = "127.0.0.1:8080"
# Settings whose empty value is a value (the feature is off) rather than "unset".
EMPTY_MEANS_OFF = {"CLAIMS_FHIR_ADDR": "fhir_addr", "CLAIMS_METRICS_ADDR": "metrics_addr"}
DEFAULT_METRICS_ADDR = "127.0.0.1:9464"
WORKER_ROLE = re.compile(r"adjudicator(\.\d+/\d+)?|projections|tree")  # CLAIMS_WORKERS' names (workers.py)


class Config(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLAIMS_", env_ignore_empty=True, frozen=True, extra="ignore")

    database_url: str | None = None
    """The service's PostgreSQL URL (a role that owns nothing: README, "Production database roles");
    None (and no migration_database_url) means "start the embedded server under data_dir"."""
    read_database_url: str | None = None
    """A streaming replica of database_url for the read side (read models, streams, FHIR); reads
    wait for it to have replayed the caller's position. None: the read side reads database_url."""
    migration_database_url: str | None = None
    """The schema owner's URL: migrations (claimsctl migrate, serve's first step) and projection
    rebuilds; None means database_url does those too (and serve warns if it could alter the ledger)."""
    data_dir: Path = Path(".data")
    """The embedded database, the development signing key, the demo keys."""
    grpc_addr: str = "127.0.0.1:50051"
    """Where the service listens, and where `claimsctl demo` connects."""
    unary_threads: PositiveInt = 64
    """Threads for unary calls (server streams take none: they are coroutines)."""
    max_streams: PositiveInt = 10_000
    """Open server streams (WatchClaims, SubscribeAdjudications) the server holds at most."""
    max_streams_per_key: PositiveInt = 1_000
    """Open server streams one API key holds at most; more are RESOURCE_EXHAUSTED."""
    server_processes: Annotated[int, Field(ge=1, le=256)] = 1
    """gRPC server processes on grpc_addr (SO_REUSEPORT), each with its own pools and limits."""
    adjudicator_partitions: Annotated[int, Field(ge=1, le=256)] = 1
    """Adjudicator processes, each deciding the claims of its share of the members (README)."""
    adjudicator_niceness: Annotated[int, Field(ge=0, le=19)] = 5
    """How much lower than the servers' the adjudicators' CPU priority is (``nice``): on cores
    the servers share, a request runs first and the adjudicator decides in larger batches."""
    background_niceness: Annotated[int, Field(ge=0, le=19)] = 10
    """The same for the projections' and the tree's processes, further from a client's wait."""
    workers: str = "all"
    """Which worker processes this `claimsctl serve` runs: "all", "none" (servers only), or a
    comma-separated choice of adjudicator (every partition), adjudicator.<i>/<M>, projections,
    tree — so that several machines share one ledger's workers (docs/SCALING.md)."""
    fhir_addr: str = DEFAULT_FHIR_ADDR
    """Where the read-only FHIR endpoint listens (HTTP, docs/FHIR.md); empty: not served."""

    # Observability (docs/OPERATIONS.md). Traces are on when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    metrics_addr: str = DEFAULT_METRICS_ADDR
    """Where `claimsctl serve` serves Prometheus metrics (/metrics) for every process; empty: off."""
    log_format: Literal["text", "json"] = "text"
    """Log lines: human-readable, or one JSON object per line (trace id, principal, RPC)."""
    trace_sample_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    """The fraction of calls traced when tracing is on (a caller's sampled traceparent is always followed)."""
    max_lag_seconds: PositiveFloat = 30.0
    """Health is NOT_SERVING while the adjudicator or a projection is further behind the ledger."""
    max_lag_events: Annotated[int, Field(ge=0)] = 0
    """The same in events (0: not judged in events)."""

    signing_key: SecretStr | None = None
    """The Ed25519 seed that signs checkpoints, base64; else signing_key_file."""
    signing_key_file: Path | None = None
    """A PEM file holding the signing key; else <data_dir>/signing-key.pem (made on first use)."""
    checkpoint_origin: str = DEFAULT_ORIGIN
    """The log's origin line in every signed note."""
    signing_key_name: str | None = None
    """The key's name in signatures; default: the origin."""
    signer_state_file: Path | None = None
    """The signer's memory of the last checkpoint it signed (never the database's); default: beside
    the key file (`<key file>.last-checkpoint`), else `<data dir>/signer.last-checkpoint`."""
    audit_every_seconds: PositiveFloat = 3600.0
    """How often the auditor begins a round over the whole ledger and the tree against the latest
    checkpoint (new events are audited as they arrive; a round also begins at start)."""
    audit_sweep_events_per_second: PositiveFloat = 20_000.0
    """How fast a round walks the history: its share of a core (about a third at the default)."""
    checkpoint_every_leaves: PositiveInt = 5000
    """As many leaves as between two updates of the stream map (`ledger.tree.MAP_EVERY`)."""
    checkpoint_every_seconds: PositiveFloat = 60.0
    witnesses: Annotated[tuple[WitnessEndpoint, ...], NoDecode] = ()
    """Witnesses asked to cosign each new checkpoint: `<URL> <witness verifier key>`, comma-separated
    (docs/LEDGER.md, "Witnesses"); a witness that is down never stops signing."""
    witness_timeout: PositiveFloat = 5.0
    """Seconds the signer waits for each witness's answer (the witnesses are asked in parallel)."""
    previous_verifier_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Retired verifier keys (comma-separated) that GetPublicKey still serves after a rotation."""
    demo_keys: bool = False
    """Create the demo API keys also on an external database (they are always made on the embedded one)."""

    # Member data keys (README, "Erasure"; claims_service/keys) and attachments ("Attachments").
    member_encryption: Literal["on", "off"] = "on"
    """Seal each member's data in new events under the member's own data key (off: written as
    before, plain or under CIPHER_KEY; sealed events are read either way)."""
    member_keks: SecretStr | None = None
    """Key-encryption keys of the member data keys: `id:base64,id:base64` (the last the newest)."""
    member_kek_file: Path | None = None
    """Else a file of `<id> <base64 key>` lines (the last the newest); else <data_dir>/member-keks."""
    member_kek_provider: str | None = None
    """Else (first, when set) `package.module:factory` of a KMS's KEKs (claims_service/keys/kek.py)."""
    member_key_cache_seconds: PositiveFloat = 2.0
    """How often at most a process reads the count of member-key erasures, which tells it whether
    to read its cached keys again (an erasure by another process takes effect within it)."""
    member_key_cache_entries: PositiveInt = 20_000
    """Member keys a process keeps unwrapped in memory at most."""
    blob_dir: Path | None = None
    """Where attachments' documents are kept (encrypted); default <data_dir>/blobs."""
    blob_store: str | None = None
    """`package.module:factory` of another BlobStore (claims_service/blobs/store.py: an S3 one)."""
    max_attachment_bytes: PositiveInt = 100 * 1024 * 1024
    """The largest attachment UploadAttachment takes (bytes); larger is RESOURCE_EXHAUSTED."""

    cipher_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("CIPHER_KEY"))
    """The eventsourcing library's CIPHER_KEY (base64 AES key), when payloads are encrypted."""

    @field_validator("workers")
    @classmethod
    def _known_workers(cls, value: str) -> str:
        value = value.replace(" ", "")
        if value not in ("all", "none") and not all(WORKER_ROLE.fullmatch(name) for name in value.split(",")):
            raise ValueError("must be all, none, or names among adjudicator, adjudicator.<i>/<M>, projections, tree")
        return value

    @field_validator("metrics_addr")
    @classmethod
    def _check_metrics_addr(cls, value: str) -> str:
        if value:
            parse_addr(value)  # a bad address stops start-up here, not when the endpoint binds
        return value

    @field_validator("witnesses", mode="before")
    @classmethod
    def _parse_witnesses(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return parse_witnesses(value)
            except CheckpointError as error:
                raise ValueError(str(error)) from None
        return value

    @field_validator("previous_verifier_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("previous_verifier_keys")
    @classmethod
    def _parse_keys(cls, keys: list[str]) -> list[str]:
        for key in keys:
            try:
                VerifierKey.parse(key)  # refuses a malformed key at start-up, not at the first call
            except CheckpointError as error:
                raise ValueError(str(error)) from None
        return keys

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """From the process environment, or (tests) from the mapping given in its place."""
        if environ is None:
            return cls(**{field: "" for name, field in EMPTY_MEANS_OFF.items() if os.environ.get(name) == ""})
        # Read the mapping as the environment would be: prefixed names, empty values unset.
        values: dict[str, Any] = {}
        for name, value in environ.items():
            if value == "":
                if name in EMPTY_MEANS_OFF:
                    values[EMPTY_MEANS_OFF[name]] = ""
                continue
            if name == "CIPHER_KEY":
                values["CIPHER_KEY"] = value
            elif name.startswith("CLAIMS_") and name[7:].lower() in cls.model_fields:
                values[name[7:].lower()] = value
        return cls.model_validate(values)

    def signing_settings(self) -> SigningSettings:
        return SigningSettings(origin=self.checkpoint_origin, key_name=self.signing_key_name or self.checkpoint_origin,
                               every_leaves=self.checkpoint_every_leaves, every_seconds=self.checkpoint_every_seconds,
                               state_file=self.signer_state_path(), witnesses=self.witnesses,
                               witness_timeout=self.witness_timeout)

    def signer_state_path(self) -> Path:
        if self.signer_state_file is not None:
            return self.signer_state_file
        if self.signing_key_file is not None:
            return self.signing_key_file.with_name(self.signing_key_file.name + ".last-checkpoint")
        return self.data_dir / "signer.last-checkpoint"

    def auditor_state_path(self) -> Path:
        """The auditor's memory of the head it verified (never the database's)."""
        return self.data_dir / "auditor.audited-head"

    def member_key_settings(self) -> dict[str, str]:
        """The member-key settings as the environment names them (what ``claims_service.keys``
        and the ledger application read)."""
        found = {"CLAIMS_MEMBER_ENCRYPTION": self.member_encryption, "CLAIMS_DATA_DIR": str(self.data_dir),
                 "CLAIMS_MEMBER_KEY_CACHE_SECONDS": str(self.member_key_cache_seconds),
                 "CLAIMS_MEMBER_KEY_CACHE_ENTRIES": str(self.member_key_cache_entries)}
        if self.member_keks is not None:
            found["CLAIMS_MEMBER_KEKS"] = self.member_keks.get_secret_value()
        if self.member_kek_file is not None:
            found["CLAIMS_MEMBER_KEK_FILE"] = str(self.member_kek_file)
        if self.member_kek_provider:
            found["CLAIMS_MEMBER_KEK_PROVIDER"] = self.member_kek_provider
        return found

    def load_member_keks(self) -> KeyEncryptionKeys:
        """The KEKs (the data directory's file is made on first use)."""
        if self.member_keks is None and self.member_kek_file is None and not self.member_kek_provider:
            private_dir(self.data_dir)
        return load_keks(self.member_key_settings())

    def open_blob_store(self) -> BlobStore:
        """Where attachments live: CLAIMS_BLOB_STORE's factory, else the directory store."""
        if self.blob_store:
            module, _, name = self.blob_store.partition(":")
            store: BlobStore = getattr(importlib.import_module(module), name)()
            return store
        return DirectoryBlobStore(self.blob_dir or self.data_dir / "blobs")

    def load_signing_key(self) -> Ed25519PrivateKey:
        seed = self.signing_key.get_secret_value() if self.signing_key is not None else None
        if not seed and self.signing_key_file is None:
            private_dir(self.data_dir)  # the development key is made (or read) there
        return resolve_signing_key(self.data_dir, seed=seed, key_file=self.signing_key_file)
