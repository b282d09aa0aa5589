"""Payments: deposits and withdrawals through payment service providers (issue 6)."""
