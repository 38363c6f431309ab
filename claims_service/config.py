"""Configuration from the environment: one frozen value, read once at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Config:
    # A PostgreSQL URL; None means "start the embedded server under data_dir".
    database_url: str | None
    data_dir: Path
    grpc_addr: str

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        return cls(
            database_url=env.get("CLAIMS_DATABASE_URL") or None,
            data_dir=Path(env.get("CLAIMS_DATA_DIR") or ".data"),
            grpc_addr=env.get("CLAIMS_GRPC_ADDR") or "127.0.0.1:50051",
        )
