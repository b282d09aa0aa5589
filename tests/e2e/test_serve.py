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
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from app.signing import signed_headers
from audit.note import Verifier, open_checkpoint
from core.payments import signatures
from core.payments.routing import EXAMPLE_CONFIG

ROOT = Path(__file__).resolve().parents[2]
PITWARDEN = Path(sys.executable).parent / "pitwarden"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PITWARDEN_DATA_DIR": str(data_dir)} | (env or {})
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


def serve(data_dir: Path, port: int, *options: str) -> subprocess.Popen[str]:
    env = os.environ | {"PITWARDEN_DATA_DIR": str(data_dir), "PITWARDEN_PORT": str(port)}
    env.pop("PITWARDEN_PAYMENTS_CONFIG", None)
    return subprocess.Popen(  # noqa: S603 - our own console script
        [str(PITWARDEN), "serve", *(options or ("--demo",))],
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


def wait_for_checkpoint(port: int, secret: str) -> str:
    """The server integrates the demo's events and signs a checkpoint within seconds."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        headers = signed_headers(
            client_id="mga-regulator",
            secret=secret,
            method="GET",
            path="/v1/audit/checkpoint",
            body=b"",
        )
        answer = httpx.get(f"http://127.0.0.1:{port}/v1/audit/checkpoint", headers=headers)
        if answer.status_code == 200:
            return answer.text
        assert answer.json()["error"]["code"] == "no_checkpoint"
        time.sleep(0.2)
    pytest.fail("no checkpoint was published")


def stop(process: subprocess.Popen[str], how: signal.Signals = signal.SIGINT) -> None:
    """Ctrl-C or SIGTERM: uvicorn shuts down, then the process exits with 128 + signal."""
    process.send_signal(how)
    status = process.wait(timeout=30)
    assert process.stdout is not None
    process.stdout.close()
    assert status in (0, 128 + how)


def signed_bet(port: int, secret: str, *, geo: str) -> httpx.Response:
    """A 1.00 stake of the first demo player, from `geo`."""
    body = json.dumps(
        {
            "request_uuid": str(uuid.uuid4()),
            "transaction_uuid": str(uuid.uuid4()),
            "player_id": "00000000-0000-4000-8000-000000000001",
            "round_id": uuid.uuid4().hex[:12],
            "bet_id": uuid.uuid4().hex[:12],
            "game_id": "starlight",
            "amount": "1.00",
            "currency": "EUR",
            "geo": geo,
        }
    ).encode()
    headers = signed_headers(
        client_id="aurora-games", secret=secret, method="POST", path="/v1/wallet/bet", body=body
    )
    return httpx.post(
        f"http://127.0.0.1:{port}/v1/wallet/bet",
        content=body,
        headers=headers
        | {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())},
    )


def signed(
    port: int, client: str, secret: str, method: str, path: str, payload: object
) -> httpx.Response:
    body = json.dumps(payload).encode() if payload is not None else b""
    headers = signed_headers(client_id=client, secret=secret, method=method, path=path, body=body)
    return httpx.request(
        method,
        f"http://127.0.0.1:{port}{path}",
        content=body,
        headers=headers
        | {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())},
    )


def deposit_confirmed_by_the_simulator(port: int, banner: str) -> dict[str, object]:
    """A deposit of a demo player, sent to the simulator `make run` serves beside the API, and
    confirmed by its webhook."""
    assert "PSP simulator (swiftpay, payrail) on http://127.0.0.1:8100" in banner
    operator = re.search(r"X-Client-Id=console-ops\s+secret=(\S+)", banner)
    assert operator, banner
    secret = operator.group(1)
    player = "00000000-0000-4000-8000-000000000002"
    opened = signed(
        port,
        "console-ops",
        secret,
        "POST",
        "/v1/payments/deposits",
        {"player_id": player, "amount": "25.00", "currency": "EUR", "method": "card"},
    )
    assert opened.status_code == 200, opened.text
    assert opened.json()["provider"] == "swiftpay"
    path = f"/v1/payments/{opened.json()['payment_id']}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        payment = signed(port, "console-ops", secret, "GET", path, None).json()
        if payment["state"] == "confirmed":
            steps = [step["to_state"] for step in payment["transitions"]]
            assert steps == ["initiated", "pending", "confirmed"]
            return dict(payment)
        time.sleep(0.1)
    raise AssertionError(f"the deposit was not confirmed: {payment}")


def the_player_sees_why_and_that_it_cannot_be_appealed(banner: str) -> None:
    """The first demo player's page, from the link the demo prints (a fresh player token),
    shows the stake refused from a blocked jurisdiction, and why it cannot be appealed."""
    link = re.search(r"http://127\.0\.0\.1:\d+/player/start\?token=\S+", banner)
    assert link, banner
    with httpx.Client(follow_redirects=False) as browser:
        start = browser.get(link.group(0))
        assert start.status_code == 200, start.text
        token = re.search(r'name="token" value="([^"]+)"', start.text)
        assert token, start.text
        opened = browser.post(
            link.group(0).split("/player/")[0] + "/player/session", data={"token": token.group(1)}
        )
        assert opened.status_code == 303, opened.text
        page = browser.get(link.group(0).split("/player/")[0] + "/player")
    assert page.status_code == 200, page.text
    assert "Betting and deposits are not available from your jurisdiction." in page.text
    assert "cannot be appealed.</strong> Betting and deposits are not permitted" in page.text


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
        deposit_confirmed_by_the_simulator(port, banner)
        started = datetime.now(UTC)
        refused = signed_bet(port, secret.group(1), geo="FR")  # from a blocked jurisdiction
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "jurisdiction_blocked"
        denied = refused.json()["error"]["details"]["decision_id"]
        assert signed_bet(port, secret.group(1), geo="MT").status_code == 200
        the_player_sees_why_and_that_it_cannot_be_appealed(banner)
        docs = httpx.get(f"http://127.0.0.1:{port}/docs")
        assert docs.status_code == 200
        regulator = re.search(r"X-Client-Id=mga-regulator\s+secret=(\S+)", banner)
        assert regulator, banner
        note = wait_for_checkpoint(port, regulator.group(1))
    finally:
        stop(process)
    # the background integrator signed it with the key the CLI exports
    keys = run_cli(data_dir, "audit", "public-keys")
    assert keys.returncode == 0, keys.stderr
    checkpoint, signed_by = open_checkpoint(note, [Verifier.from_string(keys.stdout.strip())])
    assert checkpoint.size > 0
    assert len(signed_by) == 1
    assert not (data_dir / "postgres" / "postmaster.pid").exists(), "the database kept running"
    replayed = run_cli(data_dir, "policy", "replay", denied)
    assert replayed.returncode == 0, replayed.stderr
    assert "stored: deny jurisdiction_blocked" in replayed.stdout
    assert "replay: deny jurisdiction_blocked" in replayed.stdout
    tried = run_cli(
        data_dir, "policy", "what-if", "--version", "2026-11-v1", "--since", started.isoformat()
    )
    assert tried.returncode == 0, tried.stderr
    assert tried.stdout.strip().endswith("0 of 2 decisions would change under 2026-11-v1")

    # a second run reuses the data: same demo, same secrets, no second seeding
    process = serve(data_dir, port)
    try:
        again = wait_for_banner(process)
        assert secret.group(1) in again
    finally:
        stop(process, signal.SIGTERM)
    assert not (data_dir / "postgres" / "postmaster.pid").exists(), "SIGTERM left the database"


def forged_deposit_confirmation(port: int) -> httpx.Response:
    """A "deposit succeeded" webhook for Swiftpay, signed with the example config's secret,
    which anyone can read in our repository."""
    secret = json.loads(EXAMPLE_CONFIG.read_text())["providers"][0]["webhook_secrets"][0]
    body = json.dumps(
        {
            "type": "payment.succeeded",
            "timestamp": datetime.now(UTC).isoformat(),
            "data": {
                "id": "pay_forged",
                "object": "payment",
                "reference": str(uuid.uuid4()),
                "status": "succeeded",
                "amount": "5000.00",
                "currency": "EUR",
            },
        }
    ).encode()
    headers = signatures.webhook_headers(
        [secret], f"msg_{uuid.uuid4().hex}", int(time.time()), body
    )
    return httpx.post(
        f"http://127.0.0.1:{port}/v1/webhooks/swiftpay",
        content=body,
        headers=headers | {"Content-Type": "application/json"},
    )


def test_without_a_payments_config_the_example_secrets_open_nothing(data_dir: Path) -> None:
    """Only `serve --demo` takes the example payments config. A server started without one has
    payments off: a webhook signed with the example's public secret, which the demo server
    accepts as authentic, is refused before its signature is even read, and no money moves."""
    port = free_port()
    process = serve(data_dir, port)  # the demo: the forged webhook passes the signature check
    try:
        banner = wait_for_banner(process)
        wait_until_up(port)
        accepted = forged_deposit_confirmation(port)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["outcome"] == "unknown_payment"
        operator = re.search(r"X-Client-Id=console-ops\s+secret=(\S+)", banner)
        assert operator, banner
    finally:
        stop(process)

    player = "00000000-0000-4000-8000-000000000003"
    wallet = f"/v1/admin/players/{player}/wallet"
    process = serve(data_dir, port, "--no-demo")
    try:
        banner = wait_for_banner(process)
        assert "payments are off: PITWARDEN_PAYMENTS_CONFIG names no payments config" in banner
        assert "PSP simulator" not in banner
        wait_until_up(port)
        before = signed(port, "console-ops", operator.group(1), "GET", wallet, None).json()
        refused = forged_deposit_confirmation(port)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "payments_disabled"
        deposit = signed(
            port,
            "console-ops",
            operator.group(1),
            "POST",
            "/v1/payments/deposits",
            {"player_id": player, "amount": "25.00", "currency": "USD", "method": "card"},
        )
        assert deposit.status_code == 503, deposit.text
        assert deposit.json()["error"]["code"] == "payments_disabled"
        after = signed(port, "console-ops", operator.group(1), "GET", wallet, None).json()
        assert after == before
    finally:
        stop(process)


def test_cli_help_lists_every_command() -> None:
    out = subprocess.run(  # noqa: S603
        [str(PITWARDEN), "--help"], capture_output=True, text=True, check=True
    ).stdout
    commands = (
        "serve",
        "migrate",
        "demo",
        "ledger",
        "fx",
        "players",
        "clients",
        "client",
        "audit",
        "vault",
        "policy",
        "payments",
        "officers",
        "psp-sim",
    )
    for command in commands:
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


def test_a_regulator_round_trip_from_the_command_line(data_dir: Path, tmp_path: Path) -> None:
    """Integrate, export, hand over the public key, verify offline, and see the books as of now."""
    integrated = run_cli(data_dir, "audit", "integrate")
    assert integrated.returncode == 0, integrated.stderr
    assert integrated.stdout.startswith("integrated ")
    key = tmp_path / "log.vkey"
    key.write_text(run_cli(data_dir, "audit", "public-keys").stdout)
    exported = run_cli(data_dir, "audit", "export", str(tmp_path / "export"))
    assert exported.returncode == 0, exported.stderr
    verified = run_cli(data_dir, "audit", "verify", str(tmp_path / "export"), "--key", str(key))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("OK: ")
    lines = (tmp_path / "export" / "entries.jsonl").read_bytes().splitlines()
    lines[0] = lines[0].replace(b'"event":"', b'"event":"x', 1)
    (tmp_path / "export" / "entries.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    tampered = run_cli(data_dir, "audit", "verify", str(tmp_path / "export"), "--key", str(key))
    assert tampered.returncode == 1
    assert tampered.stdout.startswith("FAIL at index 0:")
    held = run_cli(data_dir, "audit", "check-journal")
    assert held.returncode == 0, held.stdout + held.stderr
    assert held.stdout.rstrip().endswith("OK: the journal matches the log")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1))
    books = run_cli(data_dir, "audit", "as-of", now)
    assert books.returncode == 0, books.stdout + books.stderr
    assert "player:00000000-0000-4000-8000-000000000001:cash" in books.stdout
    assert books.stdout.rstrip().endswith("accounts agree")


def test_audit_follow_keeps_the_log_current_as_its_own_process(
    data_dir: Path, tmp_path: Path
) -> None:
    env = os.environ | {"PITWARDEN_DATA_DIR": str(data_dir)}
    follower = subprocess.Popen(  # noqa: S603 - our own console script
        [str(PITWARDEN), "audit", "follow"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        player = run_cli(data_dir, "players", "create", "--currency", "EUR").stdout.strip()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            exported = run_cli(data_dir, "audit", "export", str(tmp_path / "export"))
            assert exported.returncode == 0, exported.stderr
            if player.encode() in (tmp_path / "export" / "entries.jsonl").read_bytes():
                break
        else:
            pytest.fail("the follower did not integrate and checkpoint the new player")
    finally:
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=30) == 0
        assert follower.stdout is not None
        assert "following the journal" in follower.stdout.read()
        follower.stdout.close()


def test_the_vault_from_the_command_line(data_dir: Path) -> None:
    """The demo's players have personal data in the vault; export it, then rotate the KEK."""
    player = "00000000-0000-4000-8000-000000000001"
    exported = run_cli(data_dir, "vault", "export", player, "--actor", "dpo-e2e")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["fields"]["legal_name"]["value"] == "Maria Borg"
    rotated = run_cli(data_dir, "vault", "rotate-kek")
    assert rotated.returncode == 0, rotated.stderr
    assert "KEK version 2: 3 data keys rewrapped" in rotated.stdout
    assert "retired versions: 1" in rotated.stdout
    again = run_cli(data_dir, "vault", "export", player)
    assert json.loads(again.stdout)["fields"]["iban"]["value"] == "MT84MALT011000012345MTLCAST001S"
    keys = (data_dir / "secrets" / "vault-keys").stat().st_mode & 0o777
    assert keys == 0o600


def test_client_secrets_from_the_command_line(data_dir: Path) -> None:
    """Register and rotate with the real key file: each secret is printed once, none is stored
    in clear; an unknown client is an error."""
    registered = run_cli(data_dir, "clients", "register", "e2e-ops", "--role", "operator")
    assert registered.returncode == 0, registered.stderr
    assert re.fullmatch(r"client_id=e2e-ops\nsecret=\S{43}\n", registered.stdout)
    rotated = run_cli(data_dir, "clients", "rotate-secret", "e2e-ops", "--overlap", "1h")
    assert rotated.returncode == 0, rotated.stderr
    assert re.fullmatch(
        r"client_id=e2e-ops\nsecret=\S{43}\nthe previous secret verifies until \S+Z\n",
        rotated.stdout,
    )
    assert rotated.stdout.splitlines()[1] != registered.stdout.splitlines()[1]
    key = (data_dir / "secrets" / "client-secrets-key").stat().st_mode & 0o777
    assert key == 0o600
    unknown = run_cli(data_dir, "clients", "rotate-secret", "nobody-e2e")
    assert unknown.returncode == 2
    assert json.loads(unknown.stderr)["error"]["code"] == "unknown_client"


def test_policy_rulesets_from_the_command_line(data_dir: Path) -> None:
    versions = run_cli(data_dir, "policy", "versions")
    assert versions.returncode == 0, versions.stderr
    version, _, _, _, digest = versions.stdout.split()[:5]
    assert version == "2026-11-v1"
    assert digest.startswith("sha256:")
    activated = run_cli(data_dir, "policy", "activate", version, "--reason", "launch")
    assert activated.stdout.strip() == f"{version} active for * ({digest})"
    unknown = run_cli(data_dir, "policy", "replay", str(uuid.uuid4()))
    assert unknown.returncode == 2
    assert json.loads(unknown.stderr)["error"]["code"] == "unknown_decision"


def test_payments_from_the_command_line(data_dir: Path) -> None:
    off = run_cli(data_dir, "payments", "expire", env={"PITWARDEN_PAYMENTS_CONFIG": ""})
    assert off.returncode == 2
    assert off.stderr.startswith("payments are off: PITWARDEN_PAYMENTS_CONFIG")
    configured = {"PITWARDEN_PAYMENTS_CONFIG": str(EXAMPLE_CONFIG)}
    expired = run_cli(data_dir, "payments", "expire", "--older-than", "60", env=configured)
    assert expired.returncode == 0, expired.stderr
    assert re.fullmatch(r"expired \d+ deposit\(s\)\n", expired.stdout)
    unknown = run_cli(data_dir, "payments", "submit", str(uuid.uuid4()), env=configured)
    assert unknown.returncode == 1
    assert "unknown_payment" in unknown.stderr
    statement = data_dir / "statement.csv"
    statement.write_text("provider_ref,payment_id,kind,amount,currency,status,settled_at\n")
    empty = run_cli(
        data_dir, "payments", "reconcile", "--psp", "nopsp", "--statement", str(statement)
    )
    assert empty.returncode == 0, empty.stdout + empty.stderr  # nothing on either side
    broken = data_dir / "broken.csv"
    broken.write_text("provider_ref,payment_id\n")
    assert (
        run_cli(
            data_dir, "payments", "reconcile", "--psp", "swiftpay", "--statement", str(broken)
        ).returncode
        == 2
    )


def test_the_psp_simulator_serves_from_the_command_line() -> None:
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - our own console script
        [str(PITWARDEN), "psp-sim", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        overview = None
        while time.monotonic() < deadline and overview is None:
            try:
                overview = httpx.get(f"http://127.0.0.1:{port}/_control").json()
            except httpx.TransportError:
                time.sleep(0.1)
        assert overview is not None, "the simulator did not come up"
        assert {name: p["contract"] for name, p in overview["providers"].items()} == {
            "swiftpay": "standard",
            "payrail": "payrail",
        }
        assert overview["providers"]["payrail"]["webhook_url"] == (
            "http://127.0.0.1:8000/v1/webhooks/payrail"
        )
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert "swiftpay (standard) at" in output
    assert "control API at" in output


def test_officers_from_the_command_line(data_dir: Path) -> None:
    created = run_cli(data_dir, "officers", "create", "ines.case", "--role", "officer")
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("officer=ines.case role=officer id=")
    password = created.stdout.split("password=")[1].strip()
    assert len(password) >= 20  # generated, shown once
    again = run_cli(data_dir, "officers", "create", "ines.case", "--role", "officer")
    assert again.returncode == 2
    assert json.loads(again.stderr)["error"]["code"] == "officer_exists"
    wrong = run_cli(data_dir, "officers", "create", "x.y", "--role", "croupier")
    assert json.loads(wrong.stderr)["error"]["code"] == "invalid_role"
