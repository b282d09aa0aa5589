"""Verifiable Merkle log over the journal, checkpoints, export and offline verifier (issue 3)."""
