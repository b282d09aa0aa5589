"""Composition root: FastAPI app factory, API routers, CLI, wiring and the demo."""
