"""Signing's settings (``LIENTHONG_SIGNING_…`` overrides ``LIENTHONG_…``).

Development and embedded mode create the local CA and a SoftHSM2 token under
``var_dir/signing/`` on first start (or, on a machine without SoftHSM2, a software keystore:
encrypted key files, development only). Production imports them: the CA directory and the token must
already exist, the PKCS#11 module is the vendor's, and every secret must be set (the development
defaults are refused).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from shared.settings import Settings, load_settings

# Development defaults of the signing part's secrets: refused in production.
DEV_TOKEN_PIN = "dev-only-secret"
DEV_TOKEN_SO_PIN = "dev-only-so-secret"
DEV_CA_PASSPHRASE = "dev-only-secret"
DEV_DEMO_PIN = "123456"


class SigningSettings(Settings):
    signing_dir: Path | None = Field(
        default=None, description="where the CA (ca/) and the SoftHSM token (token/) live; default var_dir/signing"
    )
    ca_dir: Path | None = Field(default=None, description="the CA's directory; default signing_dir/ca")
    ca_create: bool = Field(
        default=True, description="create the local CA on first start (never in production: import it)"
    )
    ca_passphrase_secret: str = Field(default=DEV_CA_PASSPHRASE, description="encrypts the CA's keys on disk")
    ca_key_size: int = Field(default=3072, description="RSA size of new root and intermediate CA keys")
    pki_base_url: str | None = Field(
        default=None,
        description="URL the certificates name for CRLs, OCSP and the TSA; default "
        "public_base_url + '/api/signing/pki' (through the gateway). Fixed when the CA is created.",
    )
    extra_trust_roots: list[Path] = Field(
        default_factory=list, description="PEM files of further trust roots for verification (the Government CA)"
    )
    extra_intermediates: list[Path] = Field(
        default_factory=list, description="PEM files of intermediate certificates known to verification"
    )
    fetch_external_revocation: bool = Field(
        default=False, description="verification may fetch CRL/OCSP over HTTP for certificates not from our CA"
    )

    token_dir: Path | None = Field(
        default=None,
        description="the token's directory (softhsm2.conf, tokens/, signers.json); default signing_dir/token",
    )
    keystore: Literal["auto", "token", "software"] = Field(
        default="auto",
        description="where signers' keys live: `token` (PKCS#11), `software` (encrypted PKCS#8 files under "
        "signing_dir/software, development and demo only) or `auto`: the token when its module is there (and, "
        "to create one, softhsm2-util), else software; production always requires the token",
    )
    token_module: str = Field(default="/usr/lib/softhsm/libsofthsm2.so", description="PKCS#11 module path")
    token_label: str = "lienthong"
    token_create: bool = Field(default=True, description="initialise a SoftHSM2 token on first start (development)")
    token_pin_secret: str = Field(default=DEV_TOKEN_PIN, description="the token's user PIN (the service logs in once)")
    token_so_pin_secret: str = Field(default=DEV_TOKEN_SO_PIN, description="the token's security officer PIN")
    pin_max_attempts: int = Field(default=5, description="consecutive wrong PINs before a signer is locked")
    pin_min_length: int = 6
    pin_cache_seconds: float = Field(
        default=60.0, description="a signer stays unlocked this long after a correct PIN (0: check every time)"
    )
    pin_argon2_time_cost: int = 2
    pin_argon2_memory_kib: int = 19 * 1024

    max_pdf_bytes: int = Field(default=200 * 1024 * 1024, description="largest PDF accepted for signing or verifying")
    max_batch: int = Field(default=100, description="documents a leader may sign in one request")
    max_batch_bytes: int = Field(default=500 * 1024 * 1024, description="largest batch request body")
    default_level: str = Field(default="B-T", pattern="^B-(T|LT)$", description="PAdES level when none is asked")
    crl_refresh_seconds: float = Field(
        default=3600.0, description="a served CRL is rebuilt after this long, or at once on a revocation"
    )

    document_api_url: str | None = Field(
        default=None,
        description="the document part's published API, where fill-number reads a document's assigned number "
        "(with the caller's token); default public_base_url + '/api/document' (through the gateway)",
    )

    demo_pin_secret: str = Field(
        default=DEV_DEMO_PIN,
        description="PIN of every demo agency's seal and leader certificate (shared/demo.py); demo mode only",
    )

    @model_validator(mode="after")
    def _refuse_development_signing_defaults(self) -> SigningSettings:
        if self.environment == "production":
            for name, dev in (
                ("token_pin_secret", DEV_TOKEN_PIN),
                ("token_so_pin_secret", DEV_TOKEN_SO_PIN),
                ("ca_passphrase_secret", DEV_CA_PASSPHRASE),
            ):
                if getattr(self, name) == dev:
                    raise ValueError(f"{name} still has its development default")
            if self.ca_create or self.token_create:
                raise ValueError("production imports its CA and token: set ca_create and token_create to false")
            if self.keystore == "software":
                raise ValueError("production keeps signing keys in a PKCS#11 token: keystore=software is refused")
        return self

    @property
    def resolved_signing_dir(self) -> Path:
        return self.signing_dir or self.var_dir / "signing"

    @property
    def resolved_ca_dir(self) -> Path:
        return self.ca_dir or self.resolved_signing_dir / "ca"

    @property
    def resolved_token_dir(self) -> Path:
        return self.token_dir or self.resolved_signing_dir / "token"

    @property
    def resolved_software_dir(self) -> Path:
        return self.resolved_signing_dir / "software"

    @property
    def resolved_document_api_url(self) -> str:
        return self.document_api_url or self.public_base_url.rstrip("/") + "/api/document"

    @property
    def resolved_pki_base_url(self) -> str:
        return self.pki_base_url or self.public_base_url.rstrip("/") + "/api/signing/pki"


def get_settings(**overrides: object) -> SigningSettings:
    return load_settings(SigningSettings, "signing", **overrides)
