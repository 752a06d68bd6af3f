"""Lienthong common platform: settings, database, events, outbox/inbox, bus, errors, auth, logging."""
