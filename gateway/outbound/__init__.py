"""Entitlement events out: signed webhooks to the app's own backend."""
