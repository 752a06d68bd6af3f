"""Liên thông văn bản: edXML exchange (QCVN 102:2016) with agencies outside this deployment.

Sending is outbox-driven: an issued document's ``document.issued`` event queues one
:class:`~services.document.models.ExchangeMessage` per partner recipient, processing steps of a
received document queue status messages, and the worker delivers them over HTTP with
retries and backoff, so a partner being down delays a message but never loses it. Receiving
checks the XML signature against the partners' certificates: that signature is the
authentication of ``POST /exchange/edxml`` and ``/exchange/status``, not a bearer token.

``identity`` (who we are, whom we trust), ``outbound`` (what we send), ``inbound`` (what we
receive), ``worker`` (delivery).
"""
