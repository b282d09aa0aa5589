"""The page for a request the console cannot answer as asked — an unknown id or version, a
malformed field, a ruleset that no longer loads: a 4xx that says what is wrong, never a 500."""

from fastapi import Request
from fastapi.responses import Response

from app.console import web


def page(
    current: web.Current, request: Request, status_code: int, title: str, message: str
) -> Response:
    return web.page(
        request,
        "problem.html",
        status_code=status_code,
        officer=current.officer,
        csrf=current.csrf,
        title=title,
        message=message,
    )


def unknown_version(current: web.Current, request: Request, version: str) -> Response:
    return page(current, request, 404, "Not found", f"No ruleset version {version[:80]!r}.")
