"""Signing's HTTP API (through the gateway at ``/api/signing/…``).

* ``/pki/…`` — public: CA certificates, CRLs, OCSP and the RFC 3161 TSA, at the URLs the
  issued certificates name.
* ``/certificates`` — administrators issue (key made in the token), list, revoke, reset PINs.
* ``/sign``, ``/sign/batch``, ``/fill-number`` — the PDF goes in as the raw body
  (``application/pdf``; a batch as ``multipart/form-data`` files), options in the query, the
  signer's PIN in the ``X-Signing-PIN`` header; the signed PDF comes back as the body.
* ``/verify`` — any signed-in user: a PDF in, the verification report out.
"""

from __future__ import annotations

from .certificates import agencies_router, certificates_router
from .pki import pki_router
from .signing import signing_router

routers = [pki_router, certificates_router, agencies_router, signing_router]
