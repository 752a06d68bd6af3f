"""Response bodies of audit's API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class EntryOut(BaseModel):
    index: int
    source: str
    event_id: str
    type: str
    subject: str | None
    agency: str | None
    actor: str | None
    time: datetime
    recorded_at: datetime
    leaf_hash: str = Field(description="base64 RFC 9162 leaf hash of the record's canonical JSON")
    record: dict[str, Any]


class EntryPage(BaseModel):
    items: list[EntryOut]
    next: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class CheckpointOut(BaseModel):
    size: int
    root: str = Field(description="base64 root hash")
    note: str = Field(description="the signed C2SP checkpoint note, verbatim")
    created_at: datetime


class CheckpointPage(BaseModel):
    items: list[CheckpointOut]
    next: str | None


class KeyOut(BaseModel):
    origin: str
    algorithm: str = "Ed25519"
    verifier_key: str = Field(description="C2SP/signed-note verifier key <name>+<key id>+<base64 key>")


class InclusionProofOut(BaseModel):
    index: int
    size: int
    leaf_hash: str
    proof: list[str] = Field(description="RFC 9162 §2.1.3 audit path, base64 hashes, leaf side first")
    checkpoint: str = Field(description="the signed checkpoint of tree `size` the proof is against")


class ConsistencyProofOut(BaseModel):
    old_size: int
    new_size: int
    proof: list[str] = Field(description="RFC 9162 §2.1.4 consistency proof, base64 hashes")
    old_checkpoint: str
    new_checkpoint: str


class AlertOut(BaseModel):
    finding: str
    entry_index: int | None
    detail: str
    detected_at: datetime


class AlertPage(BaseModel):
    items: list[AlertOut]
    next: str | None = Field(description="pass as `cursor` for the next page; null on the last")
