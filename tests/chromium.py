"""The console in a real browser: Debian's Chromium (/usr/bin/chromium, which the Makefile
installs when it is missing) driven by Playwright, never a browser Playwright downloads. Used
by tests/e2e/test_console_browser.py and `make screenshots`: start `pitwarden serve --demo` on a
private data directory, sign in through the pages as an officer does, run axe-core in a page."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyotp
from playwright.async_api import Browser, Page, Playwright, expect

from core.payments.routing import EXAMPLE_CONFIG
from tests.console_support import Officer

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
# Headless and quiet: no sandbox (root), no GPU, and none of Chromium's own traffic (updates,
# sync, QUIC probes), which this machine's closed network would refuse many times a second.
ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
)
AXE = ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
PITWARDEN = Path(sys.executable).parent / "pitwarden"
# Each sign-in costs the server an Argon2 verification, on two cores that other work shares:
# wait for a page longer than Playwright's 5 s (a failing check only fails later).
WAIT_MS = 15_000
expect.set_options(timeout=WAIT_MS)

Now = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _required(path: Path, how: str) -> Path:
    if not path.exists():
        msg = f"{path} is missing: {how}"
        raise RuntimeError(msg)
    return path


async def launch(playwright: Playwright) -> Browser:
    _required(CHROMIUM, "`make test` installs Debian's chromium")
    return await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)


@dataclass
class Demo:
    """A running `pitwarden serve --demo`: its address and what its banner printed."""

    url: str
    process: subprocess.Popen[bytes]
    officers: dict[str, Officer] = field(default_factory=dict)  # by name: officer, mlro, ...
    cash: dict[str, str] = field(default_factory=dict)  # demo player id -> "370.00 EUR"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_demo(
    data_dir: Path, *, port: int | None = None, env: Mapping[str, str] | None = None
) -> Demo:
    """`pitwarden serve --demo` as `make run` starts it, on `port` (default: a free one) and a
    data directory of its own, with `env` added to its environment (more PITWARDEN_* settings).
    The example payments config is named explicitly, with --no-psp-sim: the PSP simulator would
    want port 8100, which another server on this machine may hold."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "serve.log"
    env = (
        os.environ
        | {
            "PITWARDEN_DATA_DIR": str(data_dir),
            "PITWARDEN_PORT": str(port),
            "PITWARDEN_PAYMENTS_CONFIG": str(EXAMPLE_CONFIG),
        }
        | dict(env or {})
    )
    with log.open("wb") as out:  # a file, not a pipe: nobody has to keep reading it
        process = subprocess.Popen(  # noqa: S603 - our own console script
            [str(PITWARDEN), "serve", "--demo", "--no-psp-sim"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    demo = Demo(f"http://127.0.0.1:{port}", process)
    try:
        banner = _banner(log, process)
        _wait_until_up(demo.url)
    except BaseException:
        stop_demo(demo)
        raise
    for role, name, password in re.findall(
        r"^ +(\w+) +name=(\S+) +password=(\S+)$", banner, re.MULTILINE
    ):
        demo.officers[name] = Officer(name, password, role)
    for player, currency, cash in re.findall(
        r"^ +([0-9a-f-]{36}) +([A-Z]{3}) +[A-Z]{2} +cash ([0-9.]+)", banner, re.MULTILINE
    ):
        demo.cash[player] = f"{cash} {currency}"
    return demo


def _banner(log: Path, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "Pitwarden on http" in text:
            return text
        if process.poll() is not None:
            msg = f"pitwarden serve --demo exited {process.returncode}:\n{text}"
            raise RuntimeError(msg)
        time.sleep(0.1)
    msg = f"no banner from pitwarden serve --demo:\n{log.read_text(errors='replace')}"
    raise RuntimeError(msg)


def _wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    msg = f"{url} did not come up"
    raise RuntimeError(msg)


def stop_demo(demo: Demo) -> None:
    """Ctrl-C, as at a terminal: the server stops and so does its embedded PostgreSQL."""
    if demo.process.poll() is None:
        demo.process.send_signal(signal.SIGINT)
        try:
            demo.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            demo.process.kill()
            demo.process.wait()


def code(officer: Officer, now: Now = utc_now) -> str:
    """The current code of the officer's authenticator app."""
    assert officer.totp is not None, f"{officer.username} has no TOTP yet"
    return pyotp.TOTP(officer.totp).at(now())


async def sign_in(page: Page, url: str, officer: Officer, now: Now = utc_now) -> None:
    """Sign in through the pages: the password, then at the first sign-in the enrolment (the key
    read off the page, as a person types it into an app) and the recovery codes, else a code."""
    await page.goto(f"{url}/console/sign-in")
    await page.get_by_label("Name", exact=True).fill(officer.username)
    await page.get_by_label("Password", exact=True).fill(officer.password)
    await page.get_by_role("button", name="Continue").click()
    heading = page.get_by_role("heading", level=1)
    await expect(heading).to_have_text(re.compile("Set up your second factor|Second factor"))
    if await heading.inner_text() == "Set up your second factor":
        officer.totp = await page.locator("code.secret").inner_text()
        await page.get_by_label("Code from the app").fill(code(officer, now))
        await page.get_by_role("button", name="Confirm").click()
        await expect(heading).to_have_text("Your recovery codes")
        officer.recovery_codes = tuple(await page.locator("ol.codes code").all_inner_texts())
        await page.get_by_role("link", name="Continue to the console").click()
    else:
        await page.get_by_label("Code", exact=True).fill(code(officer, now))
        await page.get_by_role("button", name="Confirm").click()
    await expect(heading).to_have_text(re.compile("^Welcome, "))


async def axe_findings(
    page: Page, *, impacts: tuple[str, ...] = ("serious", "critical")
) -> list[str]:
    """axe-core's violations of the page as it stands, of the given impacts, one line each. Its
    script goes into the page as a <script> element: give the context `bypass_csp=True`."""
    await page.add_script_tag(
        path=_required(AXE, "`make test` runs `npm ci --prefix tests/browser`")
    )
    found: list[dict[str, object]] = await page.evaluate(
        """async (impacts) => {
            const result = await axe.run(document, {resultTypes: ["violations"]});
            return result.violations
                .filter((v) => impacts.includes(v.impact))
                .map((v) => ({id: v.id, impact: v.impact, help: v.help,
                              where: v.nodes.map((n) => n.target.join(" "))}));
        }""",
        list(impacts),
    )
    return [f"{v['impact']} {v['id']}: {v['help']} at {v['where']}" for v in found]
