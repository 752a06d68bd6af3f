"""Kho khóa mềm: signers' keys in encrypted files, for development and demo machines that have
no PKCS#11 module (a laptop without SoftHSM2). Never in production, which requires a token.

It keeps the token's promises that a file can keep — the same register of signers, the same
per-signer PINs counted and locked, the same certificates — so everything above it (PAdES, batch
signing, PIN checks, key generation, the CA) works unchanged. The promise it cannot keep is the
token's: here the private key exists in the process's memory and on disk, as an encrypted
PKCS#8 file (``keys/<key id>.p8``, mode 0600) under the deployment's token PIN.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from asn1crypto import keys as asn1_keys
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from pyhanko.sign.general import SigningError, get_pyca_cryptography_hash
from pyhanko.sign.signers import SimpleSigner
from pyhanko_certvalidator.registry import SimpleCertificateStore

from .custody import KeyCustody, PinPolicy, TokenError

__all__ = [
    "SOFTWARE_KEYSTORE",
    "SoftwareKeystore",
    "SoftwareSigner",
    "development_signer_from_pkcs12",
    "write_development_pkcs12",
]

#: how /readyz and the start banner name this keeper
SOFTWARE_KEYSTORE = "software (development only)"

# Keystores open in this process, by directory: one register per directory, as with tokens.
_OPEN: dict[str, SoftwareKeystore] = {}
_PROCESS_LOCK = threading.Lock()


class SoftwareKeystore(KeyCustody):
    """Signers' keys as encrypted PKCS#8 files beside their register (development only)."""

    description = SOFTWARE_KEYSTORE

    def __init__(self, directory: Path, *, secret: str, policy: PinPolicy) -> None:
        super().__init__(directory, policy=policy)
        self._secret = secret.encode()
        self._keys_dir = directory / "keys"
        self._opened = 1

    @classmethod
    def open(
        cls, directory: str | os.PathLike[str], *, secret: str, policy: PinPolicy | None = None
    ) -> SoftwareKeystore:
        """The keystore in ``directory`` (created if absent); ``secret`` encrypts the key files."""
        path = Path(directory).resolve()
        if not secret:
            raise TokenError("the software keystore needs a secret to encrypt its keys")
        with _PROCESS_LOCK:
            shared = _OPEN.get(str(path))
            if shared is not None:
                shared._opened += 1
                return shared
            (path / "keys").mkdir(parents=True, exist_ok=True, mode=0o700)
            opened = cls(path, secret=secret, policy=policy or PinPolicy())
            _OPEN[str(path)] = opened
            return opened

    @staticmethod
    def exists(directory: str | os.PathLike[str]) -> bool:
        """Whether ``directory`` already holds a software keystore with signers in it."""
        return (Path(directory) / "signers.json").exists()

    def close(self) -> None:
        with _PROCESS_LOCK:
            self._opened -= 1
            if self._opened > 0:
                return
            if _OPEN.get(str(self.directory)) is self:
                del _OPEN[str(self.directory)]

    # -- signers ---------------------------------------------------------------------------

    def generate_key(self, signer_id: str, *, pin: str) -> rsa.RSAPublicKey:
        if signer_id in self._records:
            raise TokenError(f"signer {signer_id!r} already has a key")
        self._check_pin_shape(pin)
        key_id = hashlib.sha256(signer_id.encode("utf-8")).digest()[:16].hex()
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        encrypted = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._secret),
        )
        path = self._key_path(key_id)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(encrypted)
        tmp.replace(path)
        with self._lock:
            self._new_record(signer_id, key_id, pin)
        return key.public_key()

    def public_key(self, signer_id: str) -> rsa.RSAPublicKey:
        return self._private_key(self._record(signer_id).key_id).public_key()

    def signer(self, signer_id: str, *, pin: str) -> SoftwareSigner:
        self.verify_pin(signer_id, pin)
        record, cert, chain = self._certified(signer_id)
        return SoftwareSigner(self._private_key(record.key_id), signing_cert=cert, ca_chain=chain)

    # -- internals -------------------------------------------------------------------------

    def _key_path(self, key_id: str) -> Path:
        return self._keys_dir / f"{key_id}.p8"

    def _private_key(self, key_id: str) -> rsa.RSAPrivateKey:
        try:
            data = self._key_path(key_id).read_bytes()
        except FileNotFoundError:
            raise TokenError(f"the key file of {key_id} is missing from {self._keys_dir}") from None
        try:
            key = serialization.load_pem_private_key(data, password=self._secret)
        except ValueError as exc:  # a wrong secret or a damaged file
            raise TokenError(f"cannot decrypt the key file of {key_id}: wrong secret or damaged file") from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TokenError(f"the key file of {key_id} does not hold an RSA key")
        return key


class SoftwareSigner(SimpleSigner):
    """pyHanko's signer with the key already decrypted (pyHanko's own reloads the key from DER
    for every signature)."""

    def __init__(self, key: rsa.RSAPrivateKey, *, signing_cert: object, ca_chain: list[object]) -> None:
        der = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        super().__init__(
            signing_cert=signing_cert,  # type: ignore[arg-type]
            signing_key=asn1_keys.PrivateKeyInfo.load(der),
            cert_registry=SimpleCertificateStore.from_certs(ca_chain),  # type: ignore[arg-type]
        )
        self._key = key

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        mechanism = self.get_signature_mechanism_for_digest(digest_algorithm).signature_algo
        if mechanism != "rsassa_pkcs1v15":
            raise SigningError(f"the software keystore signs RSA PKCS#1 v1.5 only, not {mechanism}")
        return self._key.sign(data, padding.PKCS1v15(), get_pyca_cryptography_hash(digest_algorithm))

    def sign_raw_sync(self, data: bytes, digest_algorithm: str = "sha256") -> bytes:
        return self.sign_raw(data, digest_algorithm)


# -- PKCS#12 files --------------------------------------------------------------------------


def write_development_pkcs12(
    path: str | os.PathLike[str],
    *,
    key: rsa.RSAPrivateKey,
    certificate: x509.Certificate,
    chain: list[x509.Certificate],
    passphrase: bytes,
) -> None:
    """Development only: an encrypted PKCS#12 for machines without a token."""
    data = pkcs12.serialize_key_and_certificates(
        name=None,
        key=key,
        cert=certificate,
        cas=chain,
        encryption_algorithm=serialization.BestAvailableEncryption(passphrase),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def development_signer_from_pkcs12(path: str | os.PathLike[str], *, passphrase: bytes) -> SimpleSigner:
    """Development only: a pyHanko signer from an encrypted PKCS#12 (keys in a file are not
    acceptable for real signers; use :class:`SigningToken`)."""
    signer = SimpleSigner.load_pkcs12(str(path), passphrase=passphrase)
    if signer is None:
        raise TokenError(f"cannot read PKCS#12 file {path}")
    return signer
