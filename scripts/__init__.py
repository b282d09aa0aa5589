"""Developer tools run by the Makefile (`python -m scripts.NAME`); not part of the package."""
