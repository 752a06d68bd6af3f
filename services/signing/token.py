"""Key custody (giữ khóa bí mật) in a PKCS#11 token — SoftHSM2 here, an HSM in production: the
signers' RSA keys are generated inside the token and never leave it.

Design:

* **One token per deployment**, logged in once at start-up with the deployment's user PIN (a
  secret from settings). **One session is kept open and reused** for every signature, because a
  login per signature costs more than the signature itself; PKCS#11 forbids two threads driving
  one session at the same time, so every call into the session holds ``SigningToken._lock``.
* The token's user PIN unlocks every key in it, so it cannot tell signers apart: each signer
  has its own PIN, checked before the token is asked to sign (``custody.py``).
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
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pkcs11
from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pyhanko.sign.attributes import SigningCertificateV2Provider
from pyhanko.sign.general import as_signing_certificate_v2, get_pyca_cryptography_hash
from pyhanko.sign.pkcs11 import PKCS11Signer
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.timestamps import TimeStamper

from . import der
from .custody import KeyCustody, PinPolicy, SignerRecord, TokenError
from .pki.timestamping import LocalTimeStamper

__all__ = [
    "DEFAULT_MODULE",
    "SigningToken",
    "TokenSigner",
]

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


# Tokens open in this process, by (directory, label): SoftHSM and python-pkcs11 are loaded once
# per process, so every opener of the same token shares one session.
_OPEN: dict[tuple[str, str], SigningToken] = {}
_PROCESS_LOCK = threading.Lock()


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
