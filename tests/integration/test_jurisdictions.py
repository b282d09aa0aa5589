"""The per-jurisdiction settings file: checked whole when loaded, and every change of it
reaches the journal (and so the audit log) when a server starts with it."""

import json
import random
from pathlib import Path

import pytest
import sqlalchemy as sa

from compliance import jurisdictions
from core.uow import UnitOfWorkFactory
from tests.conftest import CTX


def settings_file(tmp_path: Path, name: str, content: dict[str, object]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(content))
    return path


async def test_a_changed_file_is_journaled_once_with_its_predecessor(
    uows: UnitOfWorkFactory, tmp_path: Path
) -> None:
    threshold = f"{random.randrange(1000, 9999)}.00"  # noqa: S311 - a content no other test has
    first = jurisdictions.load(
        settings_file(
            tmp_path,
            "a.json",
            {
                "*": {
                    "blocked": False,
                    "due_diligence_threshold_eur": threshold,
                    "withdrawal_review_threshold_eur": "500.00",
                },
                "US": {"blocked": True},
            },
        )
    )
    second = jurisdictions.load(
        settings_file(
            tmp_path,
            "b.json",
            {
                "*": {
                    "blocked": False,
                    "due_diligence_threshold_eur": threshold,
                    "withdrawal_review_threshold_eur": "500.00",
                },
                "FR": {"blocked": True},
            },
        )
    )
    async with uows() as uow:
        assert await jurisdictions.record_loaded(uow, first, source="a.json", ctx=CTX)
        assert not await jurisdictions.record_loaded(uow, first, source="a.json", ctx=CTX)
        assert await jurisdictions.record_loaded(uow, second, source="b.json", ctx=CTX)
        events = (
            (
                await uow.session.execute(
                    sa.text(
                        "SELECT envelope->'data' FROM journal_events"
                        " WHERE event = 'compliance.settings_loaded' ORDER BY id DESC LIMIT 2"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert events[0]["content_hash"] == second.content_hash
    assert events[0]["previous_hash"] == first.content_hash
    assert events[0]["blocked"] == ["FR"]
    assert events[1]["content_hash"] == first.content_hash
    assert first.of("ZZ").due_diligence_threshold_eur_minor == int(threshold[:-3]) * 100
    assert first.of("US").withdrawal_review_threshold_eur_minor == 50000  # inherited


BASE = {
    "blocked": False,
    "due_diligence_threshold_eur": "1.00",
    "withdrawal_review_threshold_eur": "9.00",
}


def test_the_appeals_clock_defaults_to_30_5_and_56_days_and_an_entry_overrides_it(
    tmp_path: Path,
) -> None:
    loaded = jurisdictions.load(
        settings_file(
            tmp_path,
            "appeals.json",
            {"*": BASE, "MT": {"appeal_ack_days": 2}, "SE": {"appeal_window_days": 60}},
        )
    )
    assert (loaded.of("ZZ").appeal_window_days, loaded.of("ZZ").appeal_ack_days) == (30, 5)
    assert loaded.of("ZZ").appeal_resolution_days == 56  # 8 weeks
    assert (loaded.of("MT").appeal_ack_days, loaded.of("MT").appeal_window_days) == (2, 30)
    assert loaded.of("SE").appeal_window_days == 60
    shipped = jurisdictions.load()
    assert shipped.default.appeal_window_days == 30
    assert shipped.default.appeal_resolution_days == 56


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({"US": {"blocked": True}}, "defaults are missing"),
        ({"*": {"blocked": False}}, "due_diligence_threshold_eur is required"),
        (
            {"*": {"blocked": False, "due_diligence_threshold_eur": "1.00"}},
            "withdrawal_review_threshold_eur is required",
        ),
        (
            {
                "*": {
                    "blocked": "no",
                    "due_diligence_threshold_eur": "1.00",
                    "withdrawal_review_threshold_eur": "9.00",
                }
            },
            "true or false",
        ),
        (
            {
                "*": {
                    "blocked": False,
                    "due_diligence_threshold_eur": "1.001",
                    "withdrawal_review_threshold_eur": "9.00",
                }
            },
            "due_diligence_threshold_eur",
        ),
        (
            {
                "*": {
                    "blocked": False,
                    "due_diligence_threshold_eur": "1.00",
                    "withdrawal_review_threshold_eur": "9.00",
                },
                "usa": {},
            },
            "not an ISO 3166-1",
        ),
        (
            {
                "*": {
                    "blocked": False,
                    "due_diligence_threshold_eur": "1.00",
                    "withdrawal_review_threshold_eur": "9.00",
                    "limit": 5,
                }
            },
            "keys among",
        ),
        (
            {
                "*": {
                    "blocked": False,
                    "due_diligence_threshold_eur": "1.00",
                    "withdrawal_review_threshold_eur": "9.00",
                },
                "MT": {"withdrawal_review_threshold_eur": -1},
            },
            "withdrawal_review_threshold_eur",
        ),
        ({"*": BASE, "MT": {"appeal_ack_days": 0}}, "appeal_ack_days must be a whole number"),
        ({"*": BASE, "MT": {"appeal_window_days": True}}, "appeal_window_days must be a whole"),
        ({"*": BASE, "MT": {"appeal_resolution_days": 400}}, "appeal_resolution_days must be"),
        ({"*": BASE, "MT": {"appeal_ack_days": 60}}, "appeal_ack_days is after"),
        ({"*": BASE, "MT": {"adr_body": "  "}}, "adr_body names the ADR body"),
        ({"*": BASE, "MT": {"adr_body": "x" * 501}}, "adr_body names the ADR body"),
    ],
)
def test_a_bad_file_is_refused_whole(
    tmp_path: Path, content: dict[str, object], problem: str
) -> None:
    with pytest.raises(jurisdictions.JurisdictionsError, match=problem):
        jurisdictions.load(settings_file(tmp_path, "bad.json", content))


def test_the_adr_body_is_per_jurisdiction_with_a_default(tmp_path: Path) -> None:
    loaded = jurisdictions.load(
        settings_file(tmp_path, "adr.json", {"*": BASE, "GB": {"adr_body": "IBAS"}})
    )
    assert loaded.of("GB").adr_body == "IBAS"
    assert loaded.of("ZZ").adr_body == jurisdictions.DEFAULT_ADR
    shipped = jurisdictions.load()
    assert "Malta Gaming Authority" in shipped.of("MT").adr_body
    assert "IBAS" in shipped.of("GB").adr_body
