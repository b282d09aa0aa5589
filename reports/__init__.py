"""Signed regulator reports (a later issue)."""
