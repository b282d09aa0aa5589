"""The console's part of the demo: the newest console ruleset active, and one officer of each
role with a password generated on first run (kept in `var/secrets/demo-officers`, 0600, so that
`make run` can print it again). The second factor is enrolled at the first sign-in."""

import json
import secrets
from pathlib import Path

from app.console import accounts
from core import sql
from core.journal import EventContext
from core.uow import UnitOfWorkFactory
from policies import registry, ruleset

CTX = EventContext(actor="demo", trace_id="demo-seed")
OFFICERS = (
    ("officer", "Olivia Okafor", "officer"),
    ("mlro", "Marek Lind (MLRO)", "senior_officer"),
    ("dpo", "Dana Pires (DPO)", "dpo"),
    ("auditor", "Aino Virta (auditor)", "auditor"),
    ("regulator", "Rui Costa (regulator)", "regulator"),
    ("admin", "Ada Mensah (administrator)", "administrator"),
)


def _passwords(path: Path) -> dict[str, str]:
    if path.exists():
        known: dict[str, str] = json.loads(path.read_text())
        return known
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    made = {username: secrets.token_urlsafe(12) for username, _, _ in OFFICERS}
    path.write_text(json.dumps(made))
    path.chmod(0o600)
    return made


async def seed(uows: UnitOfWorkFactory, secrets_dir: Path) -> dict[str, str]:
    """Activate the newest console ruleset unless an operator activated one, create the demo
    officers unless they exist; returns their usernames and passwords."""
    passwords = _passwords(secrets_dir / "demo-officers")
    async with uows() as uow:
        current = await sql.one(
            uow,
            "SELECT version, activated_by AS actor FROM policy_activations"
            " WHERE jurisdiction = 'console' ORDER BY id DESC LIMIT 1",
            {},
        )
        newest = ruleset.newest(console=True)
        # The demo's own activation moves on to the newest version; an operator's stays.
        if current is None or (current["actor"] == "demo" and current["version"] != newest):
            await registry.activate(
                uow,
                version=newest,
                jurisdiction=registry.CONSOLE,
                actor="demo",
                reason="demo: the newest console ruleset",
                ctx=CTX,
            )
        for username, name, role in OFFICERS:
            exists = await sql.scalar(
                uow, "SELECT 1 FROM officers WHERE username = %(u)s", {"u": username}
            )
            if not exists:
                await accounts.create(
                    uow,
                    username=username,
                    display_name=name,
                    role=role,
                    password=passwords[username],
                    ctx=CTX,
                )
        await uow.commit()
    return passwords


def print_logins(passwords: dict[str, str], url: str) -> None:
    print(f"Console: {url}/console  (the first sign-in sets up a TOTP authenticator)")  # noqa: T201
    for username, _, role in OFFICERS:
        print(f"  {role:<15} name={username:<10} password={passwords[username]}")  # noqa: T201
