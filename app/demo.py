"""A small demo: two game providers, an operator tool, a regulator, three funded players with
(invented) personal data in the vault, FX rates, a few rounds and one refusal.

Idempotent: a second run finds the demo and prints its credentials again.
"""

import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal

import sqlalchemy as sa

from app import player_auth
from app.console import demo as console_demo
from app.gating import build_gate
from compliance import rg
from compliance.vault import service as vault
from compliance.vault.keys import KeyProvider
from compliance.vault.service import PersonalData
from core import clients, fx, journal, players, rounds, sql, wallets
from core.errors import Conflict, DomainError
from core.guard import Guard
from core.journal import EventContext
from core.models import ApiClient
from core.money import parse_amount
from core.sealing import Sealer
from core.settings import Settings
from core.uow import UnitOfWorkFactory
from policies import registry, ruleset

CTX = EventContext(actor="demo", trace_id="demo-seed")
PROVIDERS = (
    ("aurora-games", "aurora", "Aurora Games"),
    ("borealis-live", "borealis", "Borealis Live"),
)
OPERATOR = "console-ops"
REGULATOR = "mga-regulator"
# Fixed ids so that the printed examples stay valid across runs.
PLAYERS = (
    (uuid.UUID("00000000-0000-4000-8000-000000000001"), "EUR", "MT", "370.00", "25.00"),
    (uuid.UUID("00000000-0000-4000-8000-000000000002"), "EUR", "DE", "120.00", "0"),
    (uuid.UUID("00000000-0000-4000-8000-000000000003"), "USD", "SE", "500.00", "50.00"),
)


PERSONAL = {
    PLAYERS[0][0]: PersonalData(
        legal_name="Maria Borg",
        date_of_birth="1988-03-14",
        address="12 Triq il-Kbira, Mosta",
        country="MT",
        email="maria.borg@example.com",
        phone="+356 2123 4567",
        national_id="0123456M",
        iban="MT84MALT011000012345MTLCAST001S",
    ),
    PLAYERS[1][0]: PersonalData(
        legal_name="Jonas Weber",
        date_of_birth="1979-11-02",
        address="Hauptstrasse 5, 10115 Berlin",
        country="DE",
        email="jonas.weber@example.de",
        phone="+49 30 1234567",
        national_id="T22000129",
        iban="DE89370400440532013000",
    ),
    PLAYERS[2][0]: PersonalData(
        legal_name="Astrid Lindqvist",
        date_of_birth="1995-07-21",
        address="Storgatan 1, 111 22 Stockholm",
        country="SE",
        email="astrid.lindqvist@example.se",
        phone="+46 8 123 456 78",
        national_id="19950721-1234",
        iban="SE4550000000058398257466",
    ),
}


def seeder(
    settings: Settings, keys: KeyProvider, client_secrets: Sealer
) -> Callable[[UnitOfWorkFactory, UnitOfWorkFactory], Awaitable[None]]:
    async def seed_both(uows: UnitOfWorkFactory, vault_uows: UnitOfWorkFactory) -> None:
        await activate_rules(uows)
        gate = build_gate(settings, vault_uows, keys)
        await seed(uows, gate, client_secrets)
        await play(uows, gate)
        officers = await console_demo.seed(uows, settings.data_dir / "secrets")
        console_demo.print_logins(officers, f"http://{settings.host}:{settings.port}")
        for player_id, data in PERSONAL.items():
            async with vault_uows() as uow:
                try:
                    await vault.store(uow, player_id=player_id, data=data, keys=keys, ctx=CTX)
                except Conflict:  # stored by an earlier run
                    continue
                await uow.commit()
        await print_player_link(uows, settings)

    return seed_both


# The first player's rounds: (stake, payout) in EUR; won, lost, pushed and lost again, so the
# player ends where the demo's banner says (370.00 cash) with a history to look at.
ROUNDS = (("5.00", "12.50"), ("2.00", "0"), ("10.00", "10.00"), ("5.50", "0"))


async def play(uows: UnitOfWorkFactory, gate: Guard) -> None:
    """A little play, once: the first player's rounds, and the second player's wager limit of
    EUR 20.00 a day with a bet of 50.00 it then refuses. The console and the player's page have
    bets, decisions and a refusal to show."""
    first, second = PLAYERS[0][0], PLAYERS[1][0]
    provider = PROVIDERS[0][1]
    async with uows() as uow:
        played = await sql.scalar(
            uow, "SELECT 1 FROM bets WHERE player_id = %(p)s LIMIT 1", {"p": first}
        )
        if played:
            return
        for n, (stake, payout) in enumerate(ROUNDS, start=1):
            ref = f"demo-{n}"
            await rounds.place_bet(
                uow,
                rounds.PlaceBet(
                    provider, str(uuid.uuid4()), first, ref, ref, "starburst",
                    parse_amount(stake, "EUR"),
                ),
                CTX,
                guard=gate,
            )  # fmt: skip
            await rounds.settle_bet(
                uow,
                rounds.SettleBet(
                    provider, str(uuid.uuid4()), first, ref, ref,
                    parse_amount(payout, "EUR", allow_zero=True), close_round=True,
                ),
                CTX,
                guard=gate,
            )  # fmt: skip
        await rg.set_limit(
            uow, player_id=second, kind="wager", period="24h", amount=2000,
            actor=f"player:{second}", ctx=CTX,
        )  # fmt: skip
        await uow.commit()
    async with uows() as uow:
        over = rounds.PlaceBet(
            provider, str(uuid.uuid4()), second, "demo-over", "demo-over", "starburst",
            parse_amount("50.00", "EUR"),
        )  # fmt: skip
        try:
            await rounds.place_bet(uow, over, CTX, guard=gate)
        except DomainError as refused:  # refused by the limit: the decision is kept
            await uow.rollback()
            for write in refused.kept:
                await write(uow)
        await uow.commit()


async def print_player_link(uows: UnitOfWorkFactory, settings: Settings) -> None:
    """The link the casino's front end would give the first demo player: a fresh player token
    (15 minutes, one use) for the player's page, minted and journaled as the API mints one."""
    player_id = PLAYERS[0][0]
    async with uows() as uow:
        minted = player_auth.tokens(settings).mint(player_id, now=uow.now)
        await journal.record(
            uow,
            "player.token_issued",
            ctx=CTX,
            player_id=player_id,
            data={"token_id": minted.token_id, "expires_at": journal.rfc3339(minted.expires_at)},
        )
        await uow.commit()
    print(
        f"Player page of {player_id} (one use, within 15 minutes; a new one at every start,"
        f" or POST /v1/admin/players/{{id}}/session as {OPERATOR}):\n"
        f"  http://{settings.host}:{settings.port}/player/start?token={minted.token}"
    )


async def activate_rules(uows: UnitOfWorkFactory) -> None:
    """Money does not move without an active ruleset: the demo activates the newest one for
    every jurisdiction (an operator does this with `pitwarden policy activate`), and moves a
    demo database of an older version on to it; an operator's own activation stays."""
    async with uows() as uow:
        current = await sql.one(
            uow,
            "SELECT version, activated_by AS actor FROM policy_activations WHERE jurisdiction = '*'"
            " ORDER BY id DESC LIMIT 1",
            {},
        )
        if current is not None and (
            current["actor"] != CTX.actor or current["version"] == ruleset.newest(console=False)
        ):
            return
        await registry.activate(
            uow,
            version=ruleset.newest(console=False),
            jurisdiction="*",
            actor="demo",
            reason="demo: the newest ruleset decides everywhere",
            ctx=CTX,
        )
        await uow.commit()


async def seed(uows: UnitOfWorkFactory, gate: Guard, client_secrets: Sealer) -> None:
    async with uows() as uow:
        if await uow.session.get(ApiClient, PROVIDERS[0][0]) is None:
            for client_id, code, name in PROVIDERS:
                await clients.register(
                    uow,
                    client_id=client_id,
                    role="game_provider",
                    display_name=name,
                    provider_code=code,
                    sealer=client_secrets,
                    ctx=CTX,
                )
            await clients.register(
                uow,
                client_id=OPERATOR,
                role="operator",
                display_name="Compliance console",
                provider_code=None,
                sealer=client_secrets,
                ctx=CTX,
            )
            for player_id, currency, jurisdiction, cash, bonus in PLAYERS:
                await players.register(
                    uow, currency=currency, jurisdiction=jurisdiction, ctx=CTX, player_id=player_id
                )
                for source, amount in (("cash", cash), ("bonus", bonus)):
                    if amount != "0":
                        await wallets.adjust(
                            uow,
                            player_id=player_id,
                            amount=parse_amount(amount, currency),
                            source=source,  # type: ignore[arg-type]
                            direction="credit",
                            operator="demo",
                            reason="demo funds",
                            ctx=CTX,
                            guard=gate,
                        )
            await fx.record_rate(
                uow,
                base="USD",
                quote="EUR",
                rate=Decimal("0.92"),
                source="demo",
                as_of=uow.now,
                ctx=CTX,
            )
            await fx.record_rate(
                uow,
                base="EUR",
                quote="USD",
                rate=Decimal("1.087"),
                source="demo",
                as_of=uow.now,
                ctx=CTX,
            )
            await uow.commit()
        if await uow.session.get(ApiClient, REGULATOR) is None:  # added after the first demo
            await clients.register(
                uow,
                client_id=REGULATOR,
                role="regulator",
                display_name="Gaming authority (reads the audit log)",
                provider_code=None,
                sealer=client_secrets,
                ctx=CTX,
            )
            await uow.commit()
        rows = (
            await uow.session.execute(
                sa.select(ApiClient.client_id, ApiClient.role)
                .where(ApiClient.client_id.in_([p[0] for p in PROVIDERS] + [OPERATOR, REGULATOR]))
                .order_by(ApiClient.role, ApiClient.client_id)
            )
        ).all()
        # The demo's own clients: their secrets are unsealed to be printed again on every run.
        demo_secrets = [
            await clients.current_secret(uow, row.client_id, sealer=client_secrets) for row in rows
        ]
    print("Demo credentials (HMAC secrets):")
    for row, secret in zip(rows, demo_secrets, strict=True):
        print(f"  {row.role:<14} X-Client-Id={row.client_id:<14} secret={secret}")
    print("Demo players:")
    for player_id, currency, jurisdiction, cash, bonus in PLAYERS:
        print(f"  {player_id}  {currency} {jurisdiction}  cash {cash}  bonus {bonus}")
    print(
        "Sign a request:  .venv/bin/pitwarden client sign POST /v1/wallet/balance "
        "--client-id aurora-games --secret <secret> --url http://127.0.0.1:8000 "
        f'--body \'{{"request_uuid": "{uuid.uuid4()}", "player_id": "{PLAYERS[0][0]}"}}\''
    )
    print(
        "Audit log: GET /v1/audit/checkpoint as mga-regulator; public key:"
        " .venv/bin/pitwarden audit public-keys"
    )
    print(
        f"Payments: POST /v1/payments/deposits as {OPERATOR}, e.g. "
        f'{{"player_id": "{PLAYERS[0][0]}", "amount": "25.00", "currency": "EUR",'
        ' "method": "card"}: the PSP simulator confirms it by webhook a moment later'
        " (GET /v1/payments/{id})"
    )
