"""The rulesets pages: every version on disk and where each is active (who activated it, when,
why, with which content hash, and whether the files still hash so), one version's rules, and
what changed between two versions. Each is the console action `console.rulesets.view`.
Activating a version is asked here and approved by a second senior officer (four eyes)."""

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from app.console import access, problems, ruleset_view, web
from app.console.protections import ask
from policies import ruleset

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("/rulesets")
async def rulesets(current: web.Signed, request: Request) -> Response:
    refused = await access.allowed(current, request, "console.rulesets.view")
    if refused:
        return refused
    active = await ruleset_view.active_where(current.uow)
    history = await ruleset_view.history(current.uow)
    await current.uow.commit()
    versions = ruleset_view.on_disk()
    money = [found.version for found in versions if found.kind == "money"]
    return web.page(
        request,
        "rulesets.html",
        officer=current.officer,
        csrf=current.csrf,
        versions=versions,
        active=active,
        history=history,
        active_in={
            found.version: [a.jurisdiction for a in active if a.version == found.version]
            for found in versions
        },
        limit=ruleset_view.HISTORY,
        # what an officer most often asks: the newest money version against the one before
        compare=(money[-2:][0], money[-1]) if money else ("", ""),
    )


@router.get("/rulesets/compare")
async def compare(
    current: web.Signed,
    request: Request,
    old: Annotated[str, Query(alias="from")] = "",
    new: Annotated[str, Query(alias="to")] = "",
) -> Response:
    refused = await access.allowed(
        current, request, "console.rulesets.view", subject=f"rulesets:{old[:80]}..{new[:80]}"
    )
    if refused:
        return refused
    await current.uow.commit()
    pair = []
    for version in (old.strip(), new.strip()):
        found = ruleset_view.version_on_disk(version)
        if found is None:
            return problems.unknown_version(current, request, version)
        if found.loaded is None:
            return problems.page(current, request, 409, "Cannot compare", found.error or "")
        pair.append(found.loaded)
    return web.page(
        request,
        "ruleset_diff.html",
        officer=current.officer,
        csrf=current.csrf,
        diff=ruleset_view.diff(pair[0], pair[1]),
    )


@router.get("/rulesets/{version}")
async def version(version: str, current: web.Signed, request: Request) -> Response:
    refused = await access.allowed(
        current, request, "console.rulesets.view", subject=f"ruleset:{version[:80]}"
    )
    if refused:
        return refused
    active = [a for a in await ruleset_view.active_where(current.uow) if a.version == version]
    await current.uow.commit()
    found = ruleset_view.version_on_disk(version)
    if found is None:
        return problems.unknown_version(current, request, version)
    return web.page(
        request,
        "ruleset.html",
        officer=current.officer,
        csrf=current.csrf,
        found=found,
        active=active,
        versions=ruleset.available(),
    )


@router.post("/rulesets/{version}/activate")
async def ask_to_activate(
    version: str,
    current: web.Signed,
    request: Request,
    *,
    jurisdiction: Annotated[str, Form(max_length=8)],
    reason: Annotated[str, Form(max_length=500)],
    csrf: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    """Ask to activate `version` for a jurisdiction (XX, * or console); a second senior officer
    approves it on the four-eyes page, and the activation then names both."""
    web.checked_csrf(current, csrf)
    if version not in ruleset.available():
        return problems.unknown_version(current, request, version)
    return await ask(
        current, request, kind="ruleset_activate", subject=f"{version}@{jurisdiction}",
        reason=reason, back=f"/console/rulesets/{version}",
        payload={"version": version, "jurisdiction": jurisdiction},
    )  # fmt: skip
