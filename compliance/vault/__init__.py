"""Tokenized PII vault: envelope encryption, key-encryption keys, blind indexes and masks."""
