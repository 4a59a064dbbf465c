"""Sending webhooks: which addresses may be reached, the signed HTTP request, the worker that
drains the outbox."""
