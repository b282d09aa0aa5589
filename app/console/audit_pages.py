"""The audit pages: the newest signed checkpoint and an entry's inclusion proven against it
(`console.audit.view`), the export as one download (`console.audit.export`), and the console's
own activity (`console.activity.view`), each decided by the console ruleset first."""

import base64
import re
import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask

from app.console import access, audit_view, nav, problems, web
from audit import keys, log
from audit.note import Verifier
from core.errors import NotFound
from core.settings import Settings

router = APIRouter(prefix="/console", include_in_schema=False)
web.templates.env.filters["b64"] = lambda raw: base64.b64encode(raw).decode()
_NATURAL = re.compile(r"[0-9]{1,18}")  # an index or a journal id: a BIGINT, not a 500


def _verifiers(settings: Settings) -> tuple[list[Verifier], str | None]:
    """The log's verifier keys, or why there are none to check a checkpoint with."""
    try:
        return keys.verifiers(settings), None
    except (ValueError, OSError) as error:
        return [], f"The log's keys cannot be read ({error})."


@router.get("/audit")
async def audit(current: web.Signed, request: Request, index: str = "") -> Response:
    asked = index.strip()
    refused = await access.allowed(
        current,
        request,
        "console.audit.view",
        subject=f"audit-entry:{asked[:20]}" if asked else None,
    )
    if refused:
        return refused
    verifiers, key_problem = _verifiers(request.app.state.settings)
    newest = await audit_view.newest(current.uow, verifiers)
    checked, error, status = None, None, 200
    if asked and not _NATURAL.fullmatch(asked):
        error, status = "An entry's index is a whole number from 0.", 422
    elif asked and (newest is None or newest.checkpoint is None):
        error, status = "There is no signed checkpoint to check an entry against.", 409
    elif asked and newest is not None and newest.checkpoint is not None:
        try:
            checked = await audit_view.inclusion(current.uow, newest.checkpoint, int(asked))
        except audit_view.BeyondTree:
            last = newest.checkpoint.size - 1
            error = f"Entry {asked} is beyond the tree of the newest checkpoint: its entries are"
            error += f" numbered 0 to {last}." if last >= 0 else " none yet."
            status = 422
    await current.uow.commit()
    return web.page(
        request,
        "audit.html",
        status_code=status,
        officer=current.officer,
        csrf=current.csrf,
        newest=newest,
        key_problem=key_problem,
        index=asked,
        checked=checked,
        error=error,
        may_export=nav.may(current.officer.role, "console.audit.export"),
    )


@router.get("/audit/export.tar.gz")
async def export(current: web.Signed, request: Request) -> Response:
    refused = await access.allowed(current, request, "console.audit.export", subject="audit-export")
    if refused:
        return refused
    try:
        latest = await log.latest_checkpoint(current.uow)
    except NotFound:
        latest = None
    await current.uow.commit()  # the decision stands whatever the export then does
    if latest is None:
        return problems.page(
            current, request, 404, "Nothing to export", "The log has not signed a checkpoint yet."
        )
    settings: Settings = request.app.state.settings
    verifiers, key_problem = _verifiers(settings)
    if key_problem:
        return problems.page(current, request, 409, "Cannot export", key_problem)
    workdir = Path(tempfile.mkdtemp(prefix="pitwarden-export-"))
    try:
        async with request.app.state.uow_factory() as uow:
            archive = await audit_view.export_archive(
                uow,
                workdir,
                size=latest.tree_size,
                origin=settings.audit_origin,
                verifiers=verifiers,
            )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return FileResponse(
        archive,
        media_type="application/gzip",
        filename=archive.name,
        headers={"Cache-Control": "no-store"},
        background=BackgroundTask(shutil.rmtree, workdir, ignore_errors=True),
    )


@router.get("/activity")
async def activity(current: web.Signed, request: Request, before: str = "") -> Response:
    refused = await access.allowed(current, request, "console.activity.view")
    if refused:
        return refused
    if before and not _NATURAL.fullmatch(before):
        await current.uow.commit()
        return problems.page(
            current, request, 422, "Damaged link", "That page link is damaged: start again."
        )
    listed, older = await audit_view.activity(current.uow, before=int(before) if before else None)
    await current.uow.commit()
    return web.page(
        request,
        "activity.html",
        officer=current.officer,
        csrf=current.csrf,
        listed=listed,
        older=f"/console/activity?before={older}" if older else None,
        may_decisions=nav.may(current.officer.role, "console.decisions.view"),
    )
