"""Kernel and money: settings, database, money and currencies, journal, ledger, wallets, rounds."""
