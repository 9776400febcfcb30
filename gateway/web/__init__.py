"""Thin Flask views: bytes in, one call, status out."""
