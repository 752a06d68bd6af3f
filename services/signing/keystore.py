"""Kho khóa: the local CA and the keeper of signers' keys of this process — the PKCS#11 token,
or in development and demo on a machine without one, the software keystore (``softkeys.py``) —
created on first start in development and imported by configuration in production, opened once
and shared.

SoftHSM is loaded once per process (python-pkcs11 keeps one library), so the keystore of a
directory is opened once and counted: every opener (the service, tests, the bench) shares the
CA object, the token session and the register of signers; the last one to close it logs out.
"""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from cryptography import x509

from shared import clock

from .config import SigningSettings
from .custody import KeyCustody, PinPolicy, TokenError
from .pki.authority import CertificateAuthority
from .pki.config import PkiConfig
from .pki.register import Revocation, RevocationReason
from .pki.timestamping import LocalTimeStamper
from .policy import SigningPolicy
from .softkeys import SoftwareKeystore
from .token import SigningToken
from .trust import TrustSettings, http_fetch

log = structlog.get_logger("signing.keystore")

PKI_CONFIG_FILE = "pki.json"


class KeystoreError(RuntimeError):
    """The CA or the token is missing or cannot be opened (a deployment problem)."""


class RefusedToStart(SystemExit):
    """Signing cannot run as configured: the process exits with this message (and no
    traceback: it is the operator's to fix, not a bug)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"signing refuses to start: {reason}")


def custody_kind(settings: SigningSettings) -> str:
    """``token`` or ``software``: where this deployment's signing keys live (``keystore`` setting;
    ``auto`` takes the token when its module is installed — and, to create a token,
    softhsm2-util — and falls back to software keys outside production only)."""
    if settings.keystore != "auto":
        return settings.keystore
    if settings.environment == "production":
        return "token"
    if SoftwareKeystore.exists(settings.resolved_software_dir):
        # the certificates already issued name keys kept here: stay with them
        return "software"
    if not Path(settings.token_module).is_file():
        return "software"
    tokens = settings.resolved_token_dir / "tokens"
    if tokens.exists() and any(tokens.iterdir()):
        return "token"
    if settings.token_create and shutil.which("softhsm2-util") is None:
        return "software"
    return "token"


def check_can_start(settings: SigningSettings) -> None:
    """Refuse, before anything serves, a deployment that must use a token (production, or
    ``keystore=token``) and has no PKCS#11 module."""
    if custody_kind(settings) == "token" and not Path(settings.token_module).is_file():
        why = "production keeps" if settings.environment == "production" else "keystore=token keeps"
        raise RefusedToStart(
            f"{why} signing keys in a PKCS#11 token, and there is no PKCS#11 module at "
            f"{settings.token_module}; install the token's module and set LIENTHONG_SIGNING_TOKEN_MODULE to its path"
        )


@dataclass
class Keystore:
    """What the signing service signs and certifies with."""

    settings: SigningSettings
    ca: CertificateAuthority
    token: KeyCustody  # the PKCS#11 token, or the software keystore in development
    trust: TrustSettings = field(init=False)
    timestamper: LocalTimeStamper = field(init=False)
    policy: SigningPolicy = field(init=False)
    _crls: dict[str, tuple[bytes, datetime, int]] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _opened: int = field(default=1, init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.timestamper = LocalTimeStamper(self.ca)
        self.policy = SigningPolicy(max_pdf_bytes=s.max_pdf_bytes)
        self.trust = TrustSettings(
            trust_roots=[self.ca.root_certificate, *_load_pems(s.extra_trust_roots)],
            other_certs=[
                self.ca.intermediate_certificate,
                self.ca.tsa_certificate,
                *_load_pems(s.extra_intermediates),
            ],
            fetch=self.fetch,
        )

    # -- revocation data ---------------------------------------------------------------------

    def crl(self, issuer: str) -> bytes:
        """The CRL served at ``/pki/crl/<issuer>.crl``: kept until it is due for refresh (well
        before its nextUpdate), rebuilt at once after a revocation."""
        now = clock.now()
        # a revocation made straight on the CA (not through revoke()) must show as well
        revoked = sum(1 for entry in self.ca.issued() if entry.revocation is not None)
        with self._lock:
            cached = self._crls.get(issuer)
            if cached is not None and now < cached[1] and cached[2] == revoked:
                return cached[0]
            der = self.ca.build_crl(issuer=issuer, now=now)
            refresh = min(timedelta(seconds=self.settings.crl_refresh_seconds), self.ca.config.crl_validity / 2)
            self._crls[issuer] = (der, now + refresh, revoked)
            return der

    def revoke(self, serial: int, *, reason: RevocationReason) -> Revocation:
        revocation = self.ca.revoke(serial, reason=reason)
        with self._lock:
            self._crls.clear()
        return revocation

    def fetch(self, url: str, body: bytes | None) -> bytes:
        """Revocation data for validators: our CA answers in-process (no HTTP to ourselves);
        other CAs over HTTP only when the settings allow it."""
        cfg = self.ca.config
        if body is None and url == cfg.intermediate_crl_url:
            return self.crl("intermediate")
        if body is None and url == cfg.root_crl_url:
            return self.crl("root")
        if url.startswith(cfg.base_url + "/"):
            return self.ca.handle(url, body)[0]
        if self.settings.fetch_external_revocation:
            return http_fetch(url, body)
        raise KeystoreError(f"fetching {url} is not allowed (fetch_external_revocation is off)")

    def ca_chain_pem(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding

        return b"".join(
            c.public_bytes(Encoding.PEM) for c in (self.ca.root_certificate, self.ca.intermediate_certificate)
        )


_KEYSTORES: dict[str, Keystore] = {}
_PROCESS_LOCK = threading.Lock()


def open_keystore(settings: SigningSettings) -> Keystore:
    """The keystore of ``settings``' directories: opened (or, in development, created) once per
    process; call :func:`close_keystore` once per call of this."""
    ca_dir = settings.resolved_ca_dir.resolve()
    with _PROCESS_LOCK:
        shared = _KEYSTORES.get(str(ca_dir))
        if shared is not None:
            shared._opened += 1
            return shared
        # the keys first: a process that cannot take them up must not leave a new CA behind
        token = _open_software(settings) if custody_kind(settings) == "software" else _open_token(settings)
        try:
            ca = _open_ca(settings, ca_dir)
        except BaseException:
            token.close()
            raise
        keystore = Keystore(settings=settings, ca=ca, token=token)
        _KEYSTORES[str(ca_dir)] = keystore
        return keystore


def close_keystore(keystore: Keystore) -> None:
    with _PROCESS_LOCK:
        keystore._opened -= 1
        if keystore._opened > 0:
            return
        for key, value in list(_KEYSTORES.items()):
            if value is keystore:
                del _KEYSTORES[key]
    keystore.token.close()


def _open_ca(settings: SigningSettings, ca_dir: Path) -> CertificateAuthority:
    passphrase = settings.ca_passphrase_secret.encode()
    saved = ca_dir / PKI_CONFIG_FILE
    if (ca_dir / "state.json").exists():
        # the URLs are in every certificate already issued: they stay what they were at creation
        base_url = (
            json.loads(saved.read_text(encoding="utf-8"))["base_url"]
            if saved.exists()
            else settings.resolved_pki_base_url
        )
        if base_url != settings.resolved_pki_base_url:
            log.warning("pki_base_url_differs", created_with=base_url, configured=settings.resolved_pki_base_url)
        return CertificateAuthority.load(ca_dir, passphrase=passphrase, config=PkiConfig(base_url=base_url))
    if not settings.ca_create:
        raise KeystoreError(f"no CA in {ca_dir}: import the CA there (ca_create is off)")
    config = PkiConfig(base_url=settings.resolved_pki_base_url, ca_key_size=settings.ca_key_size)
    ca = CertificateAuthority.create(ca_dir, passphrase=passphrase, config=config)
    saved.write_text(json.dumps({"base_url": config.base_url}), encoding="utf-8")
    log.info("ca_created", directory=str(ca_dir), base_url=config.base_url)
    return ca


def _pin_policy(settings: SigningSettings) -> PinPolicy:
    return PinPolicy(
        max_attempts=settings.pin_max_attempts,
        min_length=settings.pin_min_length,
        argon2_time_cost=settings.pin_argon2_time_cost,
        argon2_memory_cost_kib=settings.pin_argon2_memory_kib,
    )


def _open_software(settings: SigningSettings) -> SoftwareKeystore:
    if settings.environment == "production":
        raise KeystoreError("production keeps signing keys in a PKCS#11 token, never in files")
    directory = settings.resolved_software_dir.resolve()
    try:
        keystore = SoftwareKeystore.open(directory, secret=settings.token_pin_secret, policy=_pin_policy(settings))
    except TokenError as exc:
        raise KeystoreError(str(exc)) from exc
    # a logger bound now, not the module's (bound at its first use, perhaps to another stream):
    # this line must reach whoever watches this start
    structlog.get_logger("signing.keystore").warning(
        "SIGNING KEYS ARE IN A SOFTWARE KEYSTORE (development only): no PKCS#11 token here, so keys are "
        "encrypted files; production requires a token",
        directory=str(directory),
        token_module=settings.token_module,
    )
    return keystore


def _open_token(settings: SigningSettings) -> SigningToken:
    directory = settings.resolved_token_dir.resolve()
    policy = _pin_policy(settings)
    tokens = directory / "tokens"
    fresh = settings.token_create and not (tokens.exists() and any(tokens.iterdir()))
    try:
        if fresh:
            token = SigningToken.initialise(
                directory,
                label=settings.token_label,
                so_pin=settings.token_so_pin_secret,
                user_pin=settings.token_pin_secret,
                module=settings.token_module,
                policy=policy,
            )
            log.info("token_created", directory=str(directory), label=settings.token_label)
            return token
        directory.mkdir(parents=True, exist_ok=True)  # signers.json lives here, whatever the module
        return SigningToken.open(
            directory,
            label=settings.token_label,
            user_pin=settings.token_pin_secret,
            module=settings.token_module,
            policy=policy,
        )
    except TokenError as exc:
        raise KeystoreError(str(exc)) from exc


def _load_pems(paths: list[Path]) -> list[x509.Certificate]:
    certs: list[x509.Certificate] = []
    for path in paths:
        certs.extend(x509.load_pem_x509_certificates(Path(path).read_bytes()))
    return certs
