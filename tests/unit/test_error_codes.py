"""README's error table is the list of every code the API can answer, under its status: the
codes are found in the source (tests/error_codes.py), and the two lists must be the same."""

import importlib

from tests.error_codes import (
    CLI_MODULES,
    CONSOLE,
    DERIVED,
    NOT_FROM_THE_API,
    Scan,
    answered,
    documented,
    scan,
)

FOUND: Scan = scan()


def test_every_code_the_api_answers_is_in_the_readme_table_and_no_other() -> None:
    found, table = answered(FOUND), documented()
    assert sorted(found - table) == [], "answered by the API, missing from README's table"
    assert sorted(table - found) == [], "in README's table, answered by nothing"


def test_every_code_that_is_not_a_literal_comes_from_a_site_we_can_derive() -> None:
    dynamic = {(s.module, s.function) for s in FOUND.sites if s.code is None}
    assert dynamic - NOT_FROM_THE_API == DERIVED.keys()


def test_every_literal_error_body_has_its_status_beside_it() -> None:
    without = [s for s in FOUND.sites if s.code is not None and s.status is None]
    assert without == [], "write JSONResponse(error_body(CODE, ...), status_code=STATUS)"


def test_what_the_table_leaves_out_is_called_only_from_the_command_line() -> None:
    left_out = {
        getattr(importlib.import_module(module), function): (module, function)
        for module, function in NOT_FROM_THE_API
    }
    callers = {
        (module, function.split(".")[0])
        for what, module, function in FOUND.references
        if any(what is f for f in left_out)
    }
    from_the_api = {
        (module, function)
        for module, function in callers
        if module not in CLI_MODULES
        and not module.startswith(CONSOLE)
        and (module, function) not in NOT_FROM_THE_API
    }
    assert from_the_api == set()
    assert {(m, f) for m, f in callers if m in CLI_MODULES}  # the CLI does call them
