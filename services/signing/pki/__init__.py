"""Local stand-in for the Government CA (Ban Cơ yếu Chính phủ): root and intermediate CA, signer
certificates for people and organisations, a TSA, CRLs, OCSP and RFC 3161 time-stamps.

All state (keys, certificates, serial registry, revocations) lives in a directory chosen by the
caller, so the signing service can persist it and expose ``/pki/...`` over HTTP. CA and TSA keys
are kept on disk encrypted with a passphrase (development only: in production these keys belong
to the real CA); signers' keys never come here — only their public keys, see ``token.py``.

``authority`` issues and keeps the register (``register``) with the certificate contents of
``profiles``; ``revocation`` (CRL, OCSP), ``timestamping`` (the TSA) and ``serving`` (the /pki
URLs) are mixed into its ``CertificateAuthority``, which holds the keys they sign with.
"""
