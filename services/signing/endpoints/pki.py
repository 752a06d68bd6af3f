"""``/pki/…``, public: CA certificates, CRLs, OCSP and the RFC 3161 TSA, at the URLs the issued
certificates name."""

from __future__ import annotations

import asyncio
import base64
import binascii

from fastapi import APIRouter, Request, Response

from shared.auth import public
from shared.errors import NotFound, problem_responses
from shared.http import StrictRoute, raw_body_route

from ..pki.register import UnknownCertificate
from .context import keystore_of

pki_router = APIRouter(prefix="/pki", tags=["pki"], route_class=StrictRoute)


@pki_router.get(
    "/ca", response_class=Response, **public(), responses={200: {"content": {"application/x-pem-file": {}}}}
)
async def ca_certificates(request: Request) -> Response:
    """The root and intermediate CA certificates (PEM): what a relying party installs as trust."""
    return Response(keystore_of(request).ca_chain_pem(), media_type="application/x-pem-file")


@pki_router.get("/certs/{name}", response_class=Response, **public(), responses=problem_responses(404))
async def ca_certificate(name: str, request: Request) -> Response:
    """One CA certificate in DER (``root.cer``, ``intermediate.cer``), as named in the AIA."""
    return _serve_pki(request, f"certs/{name}", None)


@pki_router.get("/crl/{name}", response_class=Response, **public(), responses=problem_responses(404))
async def crl(name: str, request: Request) -> Response:
    """A CRL (``intermediate.crl`` for signers, ``root.crl`` for the intermediate), served from
    cache until it is due for refresh, rebuilt at once after a revocation."""
    keystore = keystore_of(request)
    issuer = {"intermediate.crl": "intermediate", "root.crl": "root"}.get(name)
    if issuer is None:
        raise NotFound(f"no CRL {name}")
    der = await asyncio.to_thread(keystore.crl, issuer)
    return Response(der, media_type="application/pkix-crl", headers={"Cache-Control": "max-age=300"})


OCSP_RESPONSE = {200: {"content": {"application/ocsp-response": {"schema": {"type": "string", "format": "binary"}}}}}


@pki_router.post(
    "/ocsp",
    response_class=Response,
    responses=OCSP_RESPONSE,
    **raw_body_route("application/ocsp-request"),
)
async def ocsp_post(request: Request) -> Response:
    """OCSP responder (RFC 6960): a DER request in, a signed response out; answers revocations
    the moment they are made."""
    return _serve_pki(request, "ocsp", await request.body())


@pki_router.get(
    "/ocsp/{encoded:path}", response_class=Response, responses={**OCSP_RESPONSE, **problem_responses(404)}, **public()
)
async def ocsp_get(encoded: str, request: Request) -> Response:
    """OCSP by GET (RFC 6960 appendix A): the DER request, base64, URL-encoded, in the path."""
    try:
        der = base64.b64decode(encoded.replace("-", "+").replace("_", "/") + "==", validate=False)
    except (binascii.Error, ValueError):
        der = b""
    return _serve_pki(request, "ocsp", der)


@pki_router.post("/tsa", response_class=Response, **raw_body_route("application/timestamp-query"))
async def tsa(request: Request) -> Response:
    """RFC 3161 time-stamping: a DER ``TimeStampReq`` in, a ``TimeStampResp`` out."""
    return _serve_pki(request, "tsa", await request.body())


def _serve_pki(request: Request, path: str, body: bytes | None) -> Response:
    keystore = keystore_of(request)
    try:
        content, media_type = keystore.ca.handle(f"{keystore.ca.config.base_url}/{path}", body)
    except UnknownCertificate as exc:
        raise NotFound(str(exc)) from exc
    return Response(content, media_type=media_type)
