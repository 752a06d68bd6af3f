"""Names, URLs and lifetimes of the local CA: what its certificates name and how long what it signs
stays valid."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

__all__ = ["PkiConfig"]


@dataclass(frozen=True)
class PkiConfig:
    """Names, URLs and lifetimes of the local CA. ``base_url`` is where the service serves /pki."""

    base_url: str = "http://127.0.0.1:8003/pki"
    country: str = "VN"
    root_name: str = "Local Government Root CA"
    intermediate_name: str = "Local Government Signing CA"
    tsa_name: str = "Local Government Time-Stamping Authority"
    organisation: str = "Ban Cơ yếu Chính phủ (local stand-in)"
    ca_key_size: int = 3072
    tsa_key_size: int = 2048
    root_validity: timedelta = timedelta(days=20 * 365)
    intermediate_validity: timedelta = timedelta(days=10 * 365)
    tsa_validity: timedelta = timedelta(days=5 * 365)
    signer_validity: timedelta = timedelta(days=3 * 365)
    crl_validity: timedelta = timedelta(days=1)
    ocsp_validity: timedelta = timedelta(hours=1)
    tsa_policy_oid: str = "1.3.6.1.4.1.99999.1.1"  # private arc: a stand-in policy, not a real one

    @property
    def root_crl_url(self) -> str:
        return f"{self.base_url}/crl/root.crl"

    @property
    def intermediate_crl_url(self) -> str:
        return f"{self.base_url}/crl/intermediate.crl"

    @property
    def ocsp_url(self) -> str:
        return f"{self.base_url}/ocsp"

    @property
    def tsa_url(self) -> str:
        return f"{self.base_url}/tsa"

    @property
    def root_cert_url(self) -> str:
        return f"{self.base_url}/certs/root.cer"

    @property
    def intermediate_cert_url(self) -> str:
        return f"{self.base_url}/certs/intermediate.cer"
