"""Key custody (giữ khóa bí mật) in a PKCS#11 token — SoftHSM2 here, an HSM in production: the
signers' RSA keys are generated inside the token and never leave it.

Design:

* **One token per deployment**, logged in once at start-up with the deployment's user PIN (a
  secret from settings). **One session is kept open and reused** for every signature, because a
  login per signature costs more than the signature itself; PKCS#11 forbids two threads driving
  one session at the same time, so every call into the session holds ``SigningToken._lock``.
* The token's user PIN unlocks every key in it, so it cannot tell signers apart. Each signer (a
  person, or an organisation's seal) therefore has **its own PIN, checked by this module**
  against an Argon2 hash before the token is asked to sign. Wrong PINs are counted per signer;
  after ``PinPolicy.max_attempts`` consecutive failures (5 by default) the signer is locked until
  an administrator sets a new PIN (:meth:`SigningToken.reset_pin`). A correct PIN resets the
  counter. The register of signers (key id, PIN hash, counter, lock, certificate) is the JSON file
  ``signers.json`` beside the token, so the service can persist and back it up.
* Keys are RSA-2048 with CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE set and CKA_EXTRACTABLE cleared:
  the token refuses to export them, and nothing here asks it to.
* SoftHSM reads ``SOFTHSM2_CONF`` when the library is loaded and python-pkcs11 loads the library
  once per process, so a process works with one token directory.

Machines without a PKCS#11 module (a laptop without SoftHSM2) keep keys in encrypted files
instead, in development and demo only: ``softkeys.py``, behind the same :class:`KeyCustody`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pkcs11
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pyhanko.sign.attributes import SigningCertificateV2Provider
from pyhanko.sign.general import as_signing_certificate_v2, get_pyca_cryptography_hash
from pyhanko.sign.pkcs11 import PKCS11Signer
from pyhanko.sign.signers import Signer, SimpleSigner
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.timestamps import TimeStamper

from . import der
from .pki.timestamping import LocalTimeStamper
from .policy import TokenLocked, UnknownSigner, WrongPin

__all__ = [
    "DEFAULT_MODULE",
    "KeyCustody",
    "PinPolicy",
    "SignerRecord",
    "SigningToken",
    "TokenError",
    "TokenSigner",
    "development_signer_from_pkcs12",
    "write_development_pkcs12",
]

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


class TokenError(Exception):
    """The token cannot be set up or used (a deployment problem, not a user's mistake)."""


@dataclass(frozen=True)
class PinPolicy:
    """Per-signer PIN rules. Argon2 costs are configurable so tests can run cheaply."""

    max_attempts: int = 5
    min_length: int = 6
    # OWASP's minimum for Argon2id (19 MiB, 2 passes): ~40 ms per check here. The lock after
    # max_attempts guards the online path; the hash only slows an offline attack on the file.
    argon2_time_cost: int = 2
    argon2_memory_cost_kib: int = 19 * 1024
    argon2_parallelism: int = 1

    def hasher(self) -> PasswordHasher:
        return PasswordHasher(
            time_cost=self.argon2_time_cost,
            memory_cost=self.argon2_memory_cost_kib,
            parallelism=self.argon2_parallelism,
        )


@dataclass
class SignerRecord:
    """A signer's line in ``signers.json``."""

    signer_id: str
    key_id: str  # hex CKA_ID shared by the key pair and the certificate object
    pin_hash: str
    failed_attempts: int = 0
    locked: bool = False
    certificate_pem: str | None = None
    chain_pem: str | None = None  # intermediate(s) and root, for embedding in signatures


# Tokens open in this process, by (directory, label): SoftHSM and python-pkcs11 are loaded once
# per process, so every opener of the same token shares one session.
_OPEN: dict[tuple[str, str], SigningToken] = {}
_PROCESS_LOCK = threading.Lock()


class KeyCustody:
    """Where the signers' keys are kept, and what every keeper does the same way: the register
    of signers (``signers.json`` in its directory), the per-signer PINs and their lock, the
    certificates. Subclasses keep the keys: :class:`SigningToken` in a PKCS#11 token,
    :class:`services.signing.softkeys.SoftwareKeystore` in encrypted files (development only)."""

    #: what /readyz and the start banner call this keeper
    description: str = ""

    def __init__(self, directory: Path, *, policy: PinPolicy) -> None:
        self.directory = directory
        self.policy = policy
        self._lock = threading.RLock()
        self._hasher = policy.hasher()
        self._register_path = directory / "signers.json"
        self._records: dict[str, SignerRecord] = {}
        if self._register_path.exists():
            raw = json.loads(self._register_path.read_text(encoding="utf-8"))
            self._records = {k: SignerRecord(**v) for k, v in raw.items()}

    # -- what a keeper of keys does ------------------------------------------------------------

    def generate_key(self, signer_id: str, *, pin: str) -> rsa.RSAPublicKey:
        """A new RSA-2048 key pair for a new signer, whose PIN is recorded; returns the public key
        for the CA to certify."""
        raise NotImplementedError

    def public_key(self, signer_id: str) -> rsa.RSAPublicKey:
        raise NotImplementedError

    def signer(self, signer_id: str, *, pin: str) -> Signer:
        """A pyHanko signer for this signer's key after checking the PIN. Reuse the returned
        object for a batch: the PIN is checked once and the key is looked up once."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def attach_certificate(
        self, signer_id: str, certificate: x509.Certificate, *, chain: list[x509.Certificate]
    ) -> None:
        """Record the signer's certificate (and the chain to embed in signatures)."""
        record = self._record(signer_id)
        if certificate.public_key() != self.public_key(signer_id):
            raise TokenError("certificate does not match the signer's key")
        self._store_certificate(record, certificate)
        record.certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        record.chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain).decode()
        self._save()

    def _store_certificate(self, record: SignerRecord, certificate: x509.Certificate) -> None:
        """Where the keeper keeps a certificate beside its key, if anywhere but the register."""

    def certificate(self, signer_id: str) -> x509.Certificate:
        record = self._record(signer_id)
        if record.certificate_pem is None:
            raise TokenError(f"signer {signer_id!r} has no certificate yet")
        return x509.load_pem_x509_certificate(record.certificate_pem.encode())

    def signer_ids(self) -> list[str]:
        return sorted(self._records)

    def record(self, signer_id: str) -> SignerRecord:
        """A copy of the signer's register line (PIN hash included; never show it to users)."""
        return SignerRecord(**asdict(self._record(signer_id)))

    def _new_record(self, signer_id: str, key_id: str, pin: str) -> None:
        self._records[signer_id] = SignerRecord(signer_id=signer_id, key_id=key_id, pin_hash=self._hasher.hash(pin))
        self._save()

    def _certified(self, signer_id: str) -> tuple[SignerRecord, asn1_x509.Certificate, list[asn1_x509.Certificate]]:
        record = self._record(signer_id)
        if record.certificate_pem is None or record.chain_pem is None:
            raise TokenError(f"signer {signer_id!r} has no certificate yet")
        cert = der.to_asn1(x509.load_pem_x509_certificate(record.certificate_pem.encode()))
        chain = [der.to_asn1(c) for c in x509.load_pem_x509_certificates(record.chain_pem.encode())]
        return record, cert, chain

    # -- PINs ------------------------------------------------------------------------------

    def verify_pin(self, signer_id: str, pin: str) -> None:
        """Check a signer's PIN, counting failures; raises :class:`WrongPin` or
        :class:`TokenLocked`."""
        with self._lock:
            record = self._record(signer_id)
            if record.locked:
                raise TokenLocked(f"signer {signer_id!r} is locked after too many wrong PINs")
            try:
                self._hasher.verify(record.pin_hash, pin)
            except (VerificationError, InvalidHashError):
                record.failed_attempts += 1
                left = self.policy.max_attempts - record.failed_attempts
                if left <= 0:
                    record.locked = True
                    self._save()
                    raise TokenLocked(
                        f"signer {signer_id!r} is now locked after {record.failed_attempts} wrong PINs"
                    ) from None
                self._save()
                raise WrongPin(f"wrong PIN, {left} attempt(s) left", attempts_left=left) from None
            if record.failed_attempts:
                record.failed_attempts = 0
                self._save()

    def change_pin(self, signer_id: str, *, old_pin: str, new_pin: str) -> None:
        self.verify_pin(signer_id, old_pin)
        self._check_pin_shape(new_pin)
        with self._lock:
            self._record(signer_id).pin_hash = self._hasher.hash(new_pin)
            self._save()

    def reset_pin(self, signer_id: str, *, new_pin: str) -> None:
        """Administrator's reset: a new PIN, counter cleared, lock lifted."""
        self._check_pin_shape(new_pin)
        with self._lock:
            record = self._record(signer_id)
            record.pin_hash = self._hasher.hash(new_pin)
            record.failed_attempts = 0
            record.locked = False
            self._save()

    # -- internals -------------------------------------------------------------------------

    def _record(self, signer_id: str) -> SignerRecord:
        try:
            return self._records[signer_id]
        except KeyError:
            raise UnknownSigner(f"no signer {signer_id!r} here") from None

    def _check_pin_shape(self, pin: str) -> None:
        if len(pin) < self.policy.min_length:
            raise TokenError(f"a PIN needs at least {self.policy.min_length} characters")

    def _save(self) -> None:
        with self._lock:
            tmp = self._register_path.with_suffix(".json.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(
                    {k: asdict(v) for k, v in self._records.items()},
                    fh,
                    ensure_ascii=False,
                    indent=1,
                )
            tmp.replace(self._register_path)


class SigningToken(KeyCustody):
    """The deployment's token: one logged-in session shared by all signers, under a lock."""

    description = "pkcs11"

    def __init__(
        self,
        directory: Path,
        session: Any,
        *,
        policy: PinPolicy,
    ) -> None:
        super().__init__(directory, policy=policy)
        self._session = session
        self._opened = 1
        self._key: tuple[str, str] = (str(directory), "")

    # -- set-up ----------------------------------------------------------------------------

    @classmethod
    def initialise(
        cls,
        directory: str | os.PathLike[str],
        *,
        label: str,
        so_pin: str,
        user_pin: str,
        module: str = DEFAULT_MODULE,
        policy: PinPolicy | None = None,
    ) -> SigningToken:
        """Create ``softhsm2.conf`` and a fresh token in ``directory``, then open it."""
        path = Path(directory).resolve()
        if (path / "tokens").exists() and any((path / "tokens").iterdir()):
            raise TokenError(f"a token already exists in {path}; open it instead")
        (path / "tokens").mkdir(parents=True, exist_ok=True)
        conf = path / "softhsm2.conf"
        conf.write_text(
            f"directories.tokendir = {path / 'tokens'}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n",
            encoding="utf-8",
        )
        env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
        if shutil.which("softhsm2-util", path=env.get("PATH")) is None:
            raise TokenError("softhsm2-util is not installed: cannot create a SoftHSM2 token")
        result = subprocess.run(
            [
                "softhsm2-util",
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                so_pin,
                "--pin",
                user_pin,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise TokenError(f"softhsm2-util --init-token failed: {result.stderr.strip()}")
        return cls.open(path, label=label, user_pin=user_pin, module=module, policy=policy)

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        label: str,
        user_pin: str,
        module: str = DEFAULT_MODULE,
        policy: PinPolicy | None = None,
    ) -> SigningToken:
        """Open the token ``label`` configured in ``directory`` and log in once."""
        path = Path(directory).resolve()
        key = (str(path), label)
        with _PROCESS_LOCK:
            shared = _OPEN.get(key)
            if shared is not None:
                # one session per token and process: a second opener shares it (and its
                # register of signers, so two writers never overwrite each other's file)
                shared._opened += 1
                return shared
            conf = path / "softhsm2.conf"
            if conf.exists():
                current = os.environ.get("SOFTHSM2_CONF")
                if current != str(conf) and pkcs11._lib is not None:
                    # SoftHSM reads its configuration once per C_Initialize: another token
                    # directory can only be taken up once every session on the old one is closed
                    if _OPEN:
                        raise TokenError(
                            f"this process has SoftHSM open with {current}; close it before opening {conf}"
                        )
                    os.environ["SOFTHSM2_CONF"] = str(conf)
                    pkcs11._lib.reinitialize()
                os.environ["SOFTHSM2_CONF"] = str(conf)
            if not Path(module).is_file():
                raise TokenError(f"no PKCS#11 module at {module}")
            lib = pkcs11.lib(module)
            try:
                token = lib.get_token(token_label=label)
                session = token.open(rw=True, user_pin=user_pin)
            except pkcs11.PKCS11Error as exc:
                raise TokenError(f"cannot open token {label!r}: {type(exc).__name__}") from exc
            opened = cls(path, session, policy=policy or PinPolicy())
            opened._key = key
            _OPEN[key] = opened
            return opened

    def close(self) -> None:
        """Give back this opener's use of the session; the last one closes it."""
        with _PROCESS_LOCK:
            self._opened -= 1
            if self._opened > 0:
                return
            if _OPEN.get(self._key) is self:
                del _OPEN[self._key]
        with self._lock:
            self._session.close()

    # -- signers ---------------------------------------------------------------------------

    def generate_key(self, signer_id: str, *, pin: str) -> rsa.RSAPublicKey:
        # generated inside the token: the private key never exists outside it
        if signer_id in self._records:
            raise TokenError(f"signer {signer_id!r} already has a key")
        self._check_pin_shape(pin)
        key_id = hashlib.sha256(signer_id.encode("utf-8")).digest()[:16]
        with self._lock:
            public, _private = self._session.generate_keypair(
                KeyType.RSA,
                2048,
                id=key_id,
                label=signer_id,
                store=True,
                public_template={Attribute.VERIFY: True, Attribute.ENCRYPT: False},
                private_template={
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.PRIVATE: True,
                    Attribute.SIGN: True,
                    Attribute.DECRYPT: False,
                    Attribute.UNWRAP: False,
                },
            )
            modulus, exponent = public[Attribute.MODULUS], public[Attribute.PUBLIC_EXPONENT]
        self._new_record(signer_id, key_id.hex(), pin)
        return rsa.RSAPublicNumbers(int.from_bytes(exponent, "big"), int.from_bytes(modulus, "big")).public_key()

    def public_key(self, signer_id: str) -> rsa.RSAPublicKey:
        record = self._record(signer_id)
        with self._lock:
            obj = self._session.get_key(object_class=ObjectClass.PUBLIC_KEY, id=bytes.fromhex(record.key_id))
            modulus, exponent = obj[Attribute.MODULUS], obj[Attribute.PUBLIC_EXPONENT]
        return rsa.RSAPublicNumbers(int.from_bytes(exponent, "big"), int.from_bytes(modulus, "big")).public_key()

    def _store_certificate(self, record: SignerRecord, certificate: x509.Certificate) -> None:
        # beside its key in the token, where a PKCS#11 application expects it
        encoded = certificate.public_bytes(serialization.Encoding.DER)
        serial = asn1_x509.Certificate.load(encoded)["tbs_certificate"]["serial_number"].dump()
        with self._lock:
            for old in self._session.get_objects(
                {Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.ID: bytes.fromhex(record.key_id)}
            ):
                old.destroy()
            self._session.create_object(
                {
                    Attribute.CLASS: ObjectClass.CERTIFICATE,
                    Attribute.CERTIFICATE_TYPE: pkcs11.CertificateType.X_509,
                    Attribute.TOKEN: True,
                    Attribute.ID: bytes.fromhex(record.key_id),
                    Attribute.LABEL: record.signer_id,
                    Attribute.SUBJECT: certificate.subject.public_bytes(),
                    Attribute.ISSUER: certificate.issuer.public_bytes(),
                    Attribute.SERIAL_NUMBER: serial,
                    Attribute.VALUE: encoded,
                }
            )

    # -- signing ---------------------------------------------------------------------------

    def signer(self, signer_id: str, *, pin: str) -> TokenSigner:
        self.verify_pin(signer_id, pin)
        record, cert, chain = self._certified(signer_id)
        signer = TokenSigner(self, key_id=bytes.fromhex(record.key_id), signing_cert=cert, ca_chain=chain)
        with self._lock:
            signer._load_objects()
        return signer

    def sign_with_key(self, key_handle: Any, data: bytes, mechanism: Mechanism) -> bytes:
        with self._lock:
            return bytes(key_handle.sign(data, mechanism=mechanism))

    @property
    def session(self) -> Any:
        return self._session


class TokenSigner(PKCS11Signer):
    """pyHanko's PKCS#11 signer bound to the shared session: signs under the token's lock,
    synchronously (no executor hop per signature), and never signs to "measure" the size —
    callers reserve the signature size instead."""

    def __init__(
        self,
        token: SigningToken,
        *,
        key_id: bytes,
        signing_cert: asn1_x509.Certificate,
        ca_chain: list[asn1_x509.Certificate],
    ) -> None:
        super().__init__(
            token.session,
            key_id=key_id,
            signing_cert=signing_cert,
            ca_chain=ca_chain,
            other_certs_to_pull=(),
        )
        self._token = token
        self._parts_cache: dict[str, dict[str, bytes]] = {}
        self._modulus_bytes = (signing_cert.public_key["public_key"].parsed["modulus"].native.bit_length() + 7) // 8

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
        if dry_run:
            return bytes(self._modulus_bytes)
        spec = self._select_pkcs11_signing_params(digest_algorithm)
        if self._key_handle is None:
            with self._token._lock:
                self._load_objects()
        return self._token.sign_with_key(self._key_handle, data, spec.sign_kwargs["mechanism"])

    def sign_raw_sync(self, data: bytes, digest_algorithm: str = "sha256") -> bytes:
        return asyncio.run(self.async_sign_raw(data, digest_algorithm))

    def _package_signature(
        self,
        *,
        digest_algorithm: str,
        cms_version: Any,
        signed_attrs: cms.CMSAttributes,
        signature: bytes,
        unsigned_attrs: cms.CMSAttributes | None,
        encap_content_info: Any,
    ) -> cms.ContentInfo:
        # Same SignedData as pyHanko's Signer._package_signature, written by hand (der.py) with
        # the parts that never change for this signer (certificates, identifiers, algorithms)
        # cached as DER: asn1crypto copies and re-encodes the nested values for every signature,
        # and now and then the whole time-stamp token too.
        parts = self._cms_parts(digest_algorithm)
        if not isinstance(encap_content_info, core.Asn1Value):
            encap_content_info = cms.EncapsulatedContentInfo(encap_content_info or {"content_type": "data"})
        signer_info = der.sequence(
            der.integer(1),  # v1: the signer is named by issuer and serial number
            parts["sid"],
            parts["digest"],
            der.retag(signed_attrs.dump(), 0xA0),  # [0] IMPLICIT
            parts["mechanism"],
            der.octet_string(signature),
            # [1] IMPLICIT
            der.retag(unsigned_attrs.dump(), 0xA1) if unsigned_attrs is not None else b"",
        )
        signed_data = der.sequence(
            cms.CMSVersion(cms_version).dump(),
            parts["digests"],
            encap_content_info.dump(),
            der.retag(parts["certs"], 0xA0),  # [0] IMPLICIT
            der.tlv(0x31, signer_info),
        )
        return der.EncodedContentInfo.of(der.sequence(_SIGNED_DATA, der.explicit(0, signed_data)))

    async def signed_attrs(
        self,
        data_digest: bytes,
        digest_algorithm: str,
        attr_settings: PdfCMSSignedAttributes | None = None,
        content_type: Any = "data",
        use_pades: bool = False,
        timestamper: TimeStamper | None = None,
        dry_run: bool = False,
        is_pdf_sig: bool = True,
    ) -> cms.CMSAttributes:
        providers = list(
            self._signed_attr_providers(
                data_digest=data_digest,
                digest_algorithm=digest_algorithm,
                use_cades=use_pades,
                attr_settings=attr_settings or PdfCMSSignedAttributes(),
                timestamper=timestamper,
                is_pdf_sig=is_pdf_sig,
            )
        )
        if content_type != "data" or not all(isinstance(p, _CachedSigningCertificateV2) for p in providers):
            return await super().signed_attrs(
                data_digest,
                digest_algorithm,
                attr_settings=attr_settings,
                content_type=content_type,
                use_pades=use_pades,
                timestamper=timestamper,
                dry_run=dry_run,
                is_pdf_sig=is_pdf_sig,
            )
        # A PAdES signature's attributes (content type, message digest, signing certificate) as
        # pyHanko's providers make them, without their asynchronous machinery: a third of a
        # millisecond per signature
        message_digest = der.sequence(_MESSAGE_DIGEST, der.set_of(der.octet_string(data_digest)))
        return der.EncodedAttributes.of(der.set_of(_DATA_CONTENT_TYPE, message_digest, *(p.der for p in providers)))

    async def unsigned_attrs(
        self,
        digest_algorithm: str,
        signature: bytes,
        signed_attrs: cms.CMSAttributes,
        timestamper: TimeStamper | None = None,
        dry_run: bool = False,
    ) -> cms.CMSAttributes | None:
        if dry_run or self.unsigned_attr_prov_spec is not None or not isinstance(timestamper, LocalTimeStamper):
            return await super().unsigned_attrs(
                digest_algorithm, signature, signed_attrs, timestamper=timestamper, dry_run=dry_run
            )
        # The signature time-stamp (B-T's one unsigned attribute) from our TSA, as pyHanko's
        # provider asks for it — over the digest of the signature value — without its machinery
        digest = hashes.Hash(get_pyca_cryptography_hash(digest_algorithm))
        digest.update(signature)
        token = await timestamper.async_timestamp(digest.finalize(), digest_algorithm)
        attribute = der.sequence(_SIGNATURE_TIME_STAMP_TOKEN, der.set_of(token.dump()))
        return der.EncodedAttributes.of(der.set_of(attribute))

    def _signed_attr_providers(self, *args: Any, **kwargs: Any) -> Any:
        # pyHanko rebuilds the signing-certificate-v2 attribute from the parsed certificate
        # for every signature (re-encoding its names); serve it from cached DER instead.
        for provider in super()._signed_attr_providers(*args, **kwargs):
            if isinstance(provider, SigningCertificateV2Provider):
                yield _CachedSigningCertificateV2(self._cms_parts("sha256")["ess_cert_v2"])
            else:
                yield provider

    def _cms_parts(self, digest_algorithm: str) -> dict[str, bytes]:
        cached = self._parts_cache.get(digest_algorithm)
        if cached is None:
            cert = self.signing_cert
            digest = algos.DigestAlgorithm({"algorithm": digest_algorithm})
            certs = {c.dump(): c for c in (*self.cert_registry, cert)}
            cached = {
                "sid": cms.SignerIdentifier(
                    name="issuer_and_serial_number",
                    value={"issuer": cert.issuer, "serial_number": cert.serial_number},
                ).dump(),
                "digest": digest.dump(),
                "ess_cert_v2": as_signing_certificate_v2(cert).dump(),
                "digests": cms.DigestAlgorithms([digest]).dump(),
                "mechanism": self.get_signature_mechanism_for_digest(digest_algorithm).dump(),
                "certs": cms.CertificateSet(
                    [cms.CertificateChoices(name="certificate", value=c) for c in certs.values()]
                ).dump(),
            }
            self._parts_cache[digest_algorithm] = cached
        return cached


_SIGNED_DATA = cms.ContentType("signed_data").dump()
_DATA_CONTENT_TYPE = cms.CMSAttribute({"type": "content_type", "values": ["data"]}).dump()
_MESSAGE_DIGEST = cms.CMSAttributeType("message_digest").dump()
_SIGNING_CERTIFICATE_V2 = cms.CMSAttributeType("signing_certificate_v2").dump()
_SIGNATURE_TIME_STAMP_TOKEN = cms.CMSAttributeType("signature_time_stamp_token").dump()


class _CachedSigningCertificateV2(SigningCertificateV2Provider):
    def __init__(self, value: bytes) -> None:
        self._value = value
        self.der = der.sequence(_SIGNING_CERTIFICATE_V2, der.set_of(value))  # the whole attribute

    async def build_attr_value(self, dry_run: bool = False) -> tsp.SigningCertificateV2:
        return tsp.SigningCertificateV2.load(self._value)



# -- development fallback ------------------------------------------------------------------


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
