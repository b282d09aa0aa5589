"""`pitwarden serve --demo` as `make run` starts it: a real process, a real port, Ctrl-C."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.signing import signed_headers

ROOT = Path(__file__).resolve().parents[2]
PITWARDEN = Path(sys.executable).parent / "pitwarden"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PITWARDEN_DATA_DIR": str(data_dir)}
    return subprocess.run(  # noqa: S603 - our own console script
        [str(PITWARDEN), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    path = ROOT / "var" / f"e2e-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def serve(data_dir: Path, port: int) -> subprocess.Popen[str]:
    env = os.environ | {"PITWARDEN_DATA_DIR": str(data_dir), "PITWARDEN_PORT": str(port)}
    return subprocess.Popen(  # noqa: S603 - our own console script
        [str(PITWARDEN), "serve", "--demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_banner(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if "Pitwarden on http" in line or process.poll() is not None:
            break
    return "".join(lines)


def wait_until_up(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail("the server did not come up")


def stop(process: subprocess.Popen[str], how: signal.Signals = signal.SIGINT) -> None:
    """Ctrl-C or SIGTERM: uvicorn shuts down, then the process exits with 128 + signal."""
    process.send_signal(how)
    status = process.wait(timeout=30)
    assert process.stdout is not None
    process.stdout.close()
    assert status in (0, 128 + how)


def test_serve_demo_answers_signed_requests_and_stops_cleanly(data_dir: Path) -> None:
    port = free_port()
    process = serve(data_dir, port)
    try:
        banner = wait_for_banner(process)
        wait_until_up(port)
        secret = re.search(r"X-Client-Id=aurora-games\s+secret=(\S+)", banner)
        assert secret, banner
        body = json.dumps(
            {
                "request_uuid": str(uuid.uuid4()),
                "player_id": "00000000-0000-4000-8000-000000000001",
            }
        ).encode()
        headers = signed_headers(
            client_id="aurora-games",
            secret=secret.group(1),
            method="POST",
            path="/v1/wallet/balance",
            body=body,
        )
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/wallet/balance",
            content=body,
            headers=headers | {"Content-Type": "application/json"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["balance"] == "395.00"
        docs = httpx.get(f"http://127.0.0.1:{port}/docs")
        assert docs.status_code == 200
    finally:
        stop(process)
    assert not (data_dir / "postgres" / "postmaster.pid").exists(), "the database kept running"

    # a second run reuses the data: same demo, same secrets, no second seeding
    process = serve(data_dir, port)
    try:
        again = wait_for_banner(process)
        assert secret.group(1) in again
    finally:
        stop(process, signal.SIGTERM)
    assert not (data_dir / "postgres" / "postmaster.pid").exists(), "SIGTERM left the database"


def test_cli_help_lists_every_command() -> None:
    out = subprocess.run(  # noqa: S603
        [str(PITWARDEN), "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("serve", "migrate", "demo", "ledger", "fx", "players", "clients", "client"):
        assert re.search(rf"│ {command}\s", out), command


def test_ledger_balance_at_from_the_command_line(data_dir: Path) -> None:
    player = run_cli(data_dir, "players", "create", "--currency", "EUR")
    assert player.returncode == 0, player.stderr
    account = f"player:{player.stdout.strip()}:cash"
    now = run_cli(data_dir, "ledger", "balance", account)
    assert now.stdout.strip() == f"{account}: 0.00 EUR"
    past = run_cli(data_dir, "ledger", "balance", account, "--at", "2020-01-01T00:00:00+00:00")
    assert past.stdout.strip() == f"{account} at 2020-01-01T00:00:00.000000Z: 0.00 EUR"
    missing = run_cli(data_dir, "ledger", "balance", "player:nobody:cash")
    assert missing.returncode == 2
    assert json.loads(missing.stderr)["error"]["code"] == "unknown_account"
