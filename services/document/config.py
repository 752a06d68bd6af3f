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
from typing import Literal

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
    tier: Literal["province", "district", "commune"] = Field(
        default="province", description="administrative level (cấp) for the Directive 15 report"
    )
    series: list[SeriesRuleConfig] = Field(default_factory=lambda: [SeriesRuleConfig()])


class ExchangePartner(BaseModel):
    """Another agency reached by edXML: where to send, and whose signature to trust.

    ``endpoint`` is the base URL of its exchange API (``…/exchange``; messages go to ``/edxml``
    and ``/status`` under it); ``certificate`` is a PEM file with its exchange certificate
    (pinned) or the CA that issues it. Several OrganIds of one deployment share both.
    """

    endpoint: str
    certificate: Path
    name: str = ""


class Directive15Level(BaseModel):
    """From when one administrative level must do its documents electronically, and by what text."""

    starts: date
    reference: str
    note: str = ""


def _directive15_levels() -> dict[str, Directive15Level]:
    ref = "Chỉ thị 15/CT-UBND ngày 22/5/2020 của UBND tỉnh Thanh Hóa"
    return {
        "province": Directive15Level(starts=date(2020, 5, 22), reference=ref),
        "district": Directive15Level(
            starts=date(2020, 7, 1), reference=ref,
            note="[unverified] the district tier is abolished from 1/7/2025 (two-tier local government)",
        ),
        "commune": Directive15Level(starts=date(2020, 9, 1), reference=ref),
    }


# The demo deployment's agencies (the ones intake's demo catalogue receives and decides at, and
# their parents): what each writes in its symbols. Abbreviations are demo values [unverified]:
# each agency's head decides its own.
DEMO_AGENCIES: dict[str, AgencyProfile] = {
    code: AgencyProfile(abbreviation=abbr, name=name, tier=tier)  # type: ignore[arg-type]
    for code, abbr, name, tier in (
        ("000.00.00.H56", "UBND", "Ủy ban nhân dân tỉnh Thanh Hóa", "province"),
        ("000.00.01.H56", "VP", "Văn phòng Ủy ban nhân dân tỉnh Thanh Hóa", "province"),
        ("000.01.01.H56", "TTPVHCC", "Trung tâm Phục vụ hành chính công tỉnh Thanh Hóa", "province"),
        ("000.00.11.H56", "STP", "Sở Tư pháp tỉnh Thanh Hóa", "province"),
        ("000.00.12.H56", "STC", "Sở Tài chính tỉnh Thanh Hóa", "province"),
        ("000.00.13.H56", "SXD", "Sở Xây dựng tỉnh Thanh Hóa", "province"),
        ("000.00.14.H56", "SNNMT", "Sở Nông nghiệp và Môi trường tỉnh Thanh Hóa", "province"),
        ("000.01.14.H56", "VPĐKĐĐ", "Văn phòng Đăng ký đất đai tỉnh Thanh Hóa", "province"),
        ("001.01.14.H56", "CNVPĐKĐĐ", "Chi nhánh Văn phòng Đăng ký đất đai số 1", "province"),
        ("000.00.15.H56", "SNV", "Sở Nội vụ tỉnh Thanh Hóa", "province"),
        ("000.00.16.H56", "SGDĐT", "Sở Giáo dục và Đào tạo tỉnh Thanh Hóa", "province"),
        ("000.00.17.H56", "SYT", "Sở Y tế tỉnh Thanh Hóa", "province"),
        ("000.00.41.H56", "UBND", "Ủy ban nhân dân phường Hạc Thành", "commune"),
        ("000.00.42.H56", "UBND", "Ủy ban nhân dân phường Sầm Sơn", "commune"),
    )
}


class DocumentSettings(Settings):
    agencies: dict[str, AgencyProfile] = Field(
        default_factory=lambda: {
            "000.00.00.H56": AgencyProfile(abbreviation="UBND", name="Ủy ban nhân dân tỉnh Thanh Hóa"),
        },
        description="OrganId → profile; recipients listed here receive issued documents directly; "
        "in demo mode the demo agencies not listed here are added",
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
    # --- exchange with other agencies (edXML, QCVN 102:2016) ---
    exchange_key_file: Path | None = Field(
        default=None, description="PEM RSA key signing edXML messages; development: generated under var_dir"
    )
    exchange_cert_file: Path | None = Field(default=None, description="PEM certificate of that key")
    exchange_chain_files: list[Path] = Field(default_factory=list, description="intermediate CA certificates")
    exchange_partners: dict[str, ExchangePartner] = Field(
        default_factory=dict, description="OrganId of an agency outside this deployment → its endpoint and certificate"
    )
    exchange_max_bytes: int = Field(default=32 * 1024 * 1024, description="largest edXML message received")
    exchange_poll_seconds: float = Field(default=2.0, description="how often the exchange worker looks for work")
    exchange_timeout_seconds: float = Field(default=30.0, description="one HTTP attempt to a partner")
    exchange_retry_base_seconds: float = Field(default=5.0, description="first retry delay, doubled each attempt")
    exchange_retry_max_seconds: float = Field(default=3600.0, description="longest delay between attempts")
    exchange_concurrency: int = Field(default=8, ge=1, description="messages being sent at once")
    exchange_partner_concurrency: int = Field(
        default=2, ge=1, description="messages being sent to one partner at once (a slow one cannot take every slot)"
    )
    # --- the clerk's one call (publish): signing's published API, with the caller's own token ---
    signing_url: str | None = Field(
        default=None,
        description="base URL of signing's API (…/api/signing through the gateway, or signing itself); "
        "default: {public_base_url}/api/signing",
    )
    signing_timeout_seconds: float = Field(default=60.0, description="one call to signing (fill the number, seal)")
    # --- Directive 15: electronic documents by level, from a date ---
    directive15_target: float = Field(default=1.0, description="share of documents handled electronically (100%)")
    directive15_levels: dict[str, Directive15Level] = Field(default_factory=_directive15_levels)
    holiday_country: str = "VN"
    extra_holidays: list[date] = Field(default_factory=list, description="days off decided by the government")

    @property
    def resolved_signing_url(self) -> str:
        return (self.signing_url or f"{self.public_base_url.rstrip('/')}/api/signing").rstrip("/")

    @property
    def exchange_dir(self) -> Path:
        return self.var_dir / "document" / "exchange"

    @property
    def resolved_blob_dir(self) -> Path:
        return self.blob_dir or (self.var_dir / "blobs")

    @model_validator(mode="after")
    def _demo_agencies(self) -> DocumentSettings:
        # Every agency of the demo catalogue numbers its own results; a configured profile wins.
        if self.demo:
            self.agencies = {**DEMO_AGENCIES, **self.agencies}
        return self

    @model_validator(mode="after")
    def _check_keys(self) -> DocumentSettings:
        if self.file_key_active not in self.file_keys:
            raise ValueError(f"file_key_active {self.file_key_active!r} is not among file_keys")
        for kid, value in self.file_keys.items():
            if len(base64.b64decode(value)) != 32:
                raise ValueError(f"file key {kid!r} must be 32 bytes (AES-256), base64")
        if self.environment == "production" and DEV_FILE_KEY_ID in self.file_keys:
            raise ValueError("the development file key is refused in production")
        if (
            self.environment == "production"
            and self.exchange_partners
            and (self.exchange_key_file is None or self.exchange_cert_file is None)
        ):
            # A generated identity is for development: partners must trust the agency's real certificate.
            raise ValueError("exchange_partners in production need exchange_key_file and exchange_cert_file")
        return self


def get_settings(**overrides: object) -> DocumentSettings:
    return load_settings(DocumentSettings, "document", **overrides)
