"""Document's settings (``LIENTHONG_DOCUMENT_…`` overrides ``LIENTHONG_…``).

Agencies (their abbreviation in a symbol and their number series rules), file limits, the keys
that encrypt secret documents' files and the processing times per urgency are configuration:
each comes from a legal text or an agency head's decision, not from code.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import date
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from services.document.numbering import AdminSeries, SeriesRule
from shared.settings import Settings, load_settings

DEV_FILE_KEY_ID = "dev-1"
# Derived, not random, so that a developer's var/ stays readable across restarts; refused in production.
_DEV_FILE_KEY = base64.b64encode(hashlib.sha256(b"lienthong development file key").digest()).decode()


class SeriesRuleConfig(BaseModel):
    """One :class:`numbering.SeriesRule` as configuration (the agency head's decision)."""

    effective_from: date = date(2020, 3, 5)
    administrative: AdminSeries = AdminSeries.SHARED
    administrative_groups: dict[str, str] = Field(default_factory=dict)
    secret_apart: bool = True
    secret_per_group: bool = False
    copies_apart: bool = True

    def to_rule(self) -> SeriesRule:
        return SeriesRule(
            effective_from=self.effective_from,
            administrative=self.administrative,
            administrative_groups=dict(self.administrative_groups),
            secret_apart=self.secret_apart,
            secret_per_group=self.secret_per_group,
            copies_apart=self.copies_apart,
        )


class AgencyProfile(BaseModel):
    """An agency served by this deployment: the abbreviation written in its symbols (UBND, VPCP)."""

    abbreviation: str
    name: str
    series: list[SeriesRuleConfig] = Field(default_factory=lambda: [SeriesRuleConfig()])


class DocumentSettings(Settings):
    agencies: dict[str, AgencyProfile] = Field(
        default_factory=lambda: {
            "000.00.00.H56": AgencyProfile(abbreviation="UBND", name="Ủy ban nhân dân tỉnh Thanh Hóa"),
        },
        description="OrganId → profile; recipients listed here receive issued documents directly",
    )
    blob_dir: Path | None = Field(default=None, description="local blob store; default {var_dir}/blobs")
    max_file_bytes: int = Field(default=50 * 1024 * 1024, description="largest content or attachment")
    file_keys: dict[str, str] = Field(
        default_factory=lambda: {DEV_FILE_KEY_ID: _DEV_FILE_KEY},
        description="key id → base64 AES-256 key encrypting secret documents' files at rest",
    )
    file_key_active: str = Field(default=DEV_FILE_KEY_ID, description="the key id new files are encrypted with")
    require_incremental_updates: bool = Field(
        default=True,
        description="a version uploaded after the leader signed must append to the previous bytes "
        "(PDF incremental update), which is what keeps the earlier signatures valid",
    )
    # Working days to process an incoming document by urgency, when the leader gives no due date.
    # Decree 30 art. 24 only says urgent documents are passed on at once; these are the agency's.
    processing_days: dict[str, int] = Field(
        default_factory=lambda: {"thuong": 10, "khan": 3, "thuong_khan": 1, "hoa_toc": 0}
    )
    holiday_country: str = "VN"
    extra_holidays: list[date] = Field(default_factory=list, description="days off decided by the government")

    @property
    def resolved_blob_dir(self) -> Path:
        return self.blob_dir or (self.var_dir / "blobs")

    @model_validator(mode="after")
    def _check_keys(self) -> DocumentSettings:
        if self.file_key_active not in self.file_keys:
            raise ValueError(f"file_key_active {self.file_key_active!r} is not among file_keys")
        for kid, value in self.file_keys.items():
            if len(base64.b64decode(value)) != 32:
                raise ValueError(f"file key {kid!r} must be 32 bytes (AES-256), base64")
        if self.environment == "production" and DEV_FILE_KEY_ID in self.file_keys:
            raise ValueError("the development file key is refused in production")
        return self


def get_settings(**overrides: object) -> DocumentSettings:
    return load_settings(DocumentSettings, "document", **overrides)
