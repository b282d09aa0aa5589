"""Configuration from the environment. Every setting is listed in README.md."""

import os
from dataclasses import dataclass, field
from pathlib import Path

APP_ROLE = "pitwarden_app"
VAULT_ROLE = "pitwarden_vault"


def _project_root() -> Path:
    return Path(os.environ.get("PITWARDEN_HOME", Path.cwd())).resolve()


@dataclass(frozen=True)
class Settings:
    # Owner account of an external PostgreSQL >= 15; empty means the embedded server.
    database_url: str = ""
    # Password the restricted application role logs in with (external PostgreSQL only).
    app_db_password: str = ""
    data_dir: Path = field(default_factory=lambda: _project_root() / "var")
    host: str = "127.0.0.1"
    port: int = 8000
    signature_tolerance_s: int = 300
    max_body_bytes: int = 64 * 1024
    db_pool_size: int = 20
    # How long a request waits for a database connection before it is answered 503.
    db_wait_s: float = 3.0
    # /readyz answers 503 when the audit log lags the journal by more than this.
    ready_max_audit_lag_s: float = 30.0
    # Audit log: the origin line of its checkpoints, and the Ed25519 signer keys (C2SP note
    # format, whitespace-separated; every key signs, which is how a rotation overlaps). Without
    # keys, the key file is read, or created with one new key on first use.
    audit_origin: str = "pitwarden.local/audit"
    audit_signing_keys: str = ""
    audit_key_file: Path | None = None  # default: <data_dir>/secrets/audit-signing-keys
    audit_interval_s: float = 1.0
    # Whether `serve` keeps the audit log current itself; off when `pitwarden audit follow`
    # runs as a process of its own (one integrator for many API processes).
    audit_in_server: bool = True
    # PII vault: the key file of the local key provider (default <data_dir>/secrets/vault-keys),
    # the vault role's password on an external database, and how long AML record keeping holds
    # personal data back from erasure, by default and per jurisdiction ("DE=10,FR=5").
    vault_key_file: Path | None = None
    vault_db_password: str = ""
    aml_retention_years: int = 5
    aml_retention_by_jurisdiction: str = ""
    # The gate's per-jurisdiction settings (blocked, due-diligence threshold); None: the file
    # shipped in compliance/data/jurisdictions.json.
    jurisdictions_file: Path | None = None
    # Payment providers and routes (core/payments/routing.py); None: payments are off (`serve
    # --demo` alone takes the example file, whose public secrets suit only the simulator).
    payments_config: Path | None = None
    # A deposit still initiated or pending this long is expired by the server (0: never).
    deposit_expiry_minutes: int = 60
    # The KYT deny list of crypto addresses; None: compliance/data/kyt_deny_list.csv.
    kyt_deny_list: Path | None = None
    # The console's single sign-on (all three, or none: local accounts only) and the public URL
    # the console is reached at (its OpenID redirect URI is <console_url>/console/oidc/callback).
    console_oidc_issuer: str = ""
    console_oidc_client_id: str = ""
    console_oidc_client_secret: str = field(default="", repr=False)
    console_url: str = ""  # default http://<host>:<port>
    # Player tokens: the Ed25519 signing key (default <data_dir>/secrets/player-token-key).
    player_token_key_file: Path | None = None
    # API clients' secrets are sealed under this key file (default
    # <data_dir>/secrets/client-secrets-key): core/sealing.py, decision 0017.
    client_secrets_key_file: Path | None = None

    def retention_years(self, jurisdiction: str) -> int:
        for item in self.aml_retention_by_jurisdiction.split(","):
            code, _, years = item.strip().partition("=")
            if code.strip().upper() == jurisdiction.upper() and years.strip().isdigit():
                return int(years)
        return self.aml_retention_years

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        defaults = cls()
        return cls(
            database_url=env.get("DATABASE_URL", ""),
            app_db_password=env.get("PITWARDEN_APP_DB_PASSWORD", ""),
            data_dir=Path(env.get("PITWARDEN_DATA_DIR", defaults.data_dir)).resolve(),
            host=env.get("PITWARDEN_HOST", defaults.host),
            port=int(env.get("PITWARDEN_PORT", defaults.port)),
            signature_tolerance_s=int(
                env.get("PITWARDEN_SIGNATURE_TOLERANCE_S", defaults.signature_tolerance_s)
            ),
            max_body_bytes=int(env.get("PITWARDEN_MAX_BODY_BYTES", defaults.max_body_bytes)),
            db_pool_size=int(env.get("PITWARDEN_DB_POOL_SIZE", defaults.db_pool_size)),
            db_wait_s=float(env.get("PITWARDEN_DB_WAIT_S", defaults.db_wait_s)),
            ready_max_audit_lag_s=float(
                env.get("PITWARDEN_READY_MAX_AUDIT_LAG_S", defaults.ready_max_audit_lag_s)
            ),
            audit_origin=env.get("PITWARDEN_AUDIT_ORIGIN", defaults.audit_origin),
            audit_signing_keys=env.get("PITWARDEN_AUDIT_SIGNING_KEYS", ""),
            audit_key_file=(
                Path(env["PITWARDEN_AUDIT_KEY_FILE"]).resolve()
                if env.get("PITWARDEN_AUDIT_KEY_FILE")
                else None
            ),
            audit_interval_s=float(
                env.get("PITWARDEN_AUDIT_INTERVAL_S", defaults.audit_interval_s)
            ),
            audit_in_server=env.get("PITWARDEN_AUDIT_IN_SERVER", "1") not in {"0", "false", "no"},
            vault_key_file=(
                Path(env["PITWARDEN_VAULT_KEY_FILE"]).resolve()
                if env.get("PITWARDEN_VAULT_KEY_FILE")
                else None
            ),
            vault_db_password=env.get("PITWARDEN_VAULT_DB_PASSWORD", ""),
            aml_retention_years=int(
                env.get("PITWARDEN_AML_RETENTION_YEARS", defaults.aml_retention_years)
            ),
            aml_retention_by_jurisdiction=env.get("PITWARDEN_AML_RETENTION_BY_JURISDICTION", ""),
            jurisdictions_file=(
                Path(env["PITWARDEN_JURISDICTIONS_FILE"]).resolve()
                if env.get("PITWARDEN_JURISDICTIONS_FILE")
                else None
            ),
            payments_config=(
                Path(env["PITWARDEN_PAYMENTS_CONFIG"]).resolve()
                if env.get("PITWARDEN_PAYMENTS_CONFIG")
                else None
            ),
            deposit_expiry_minutes=int(env.get("PITWARDEN_DEPOSIT_EXPIRY_MINUTES", "60")),
            kyt_deny_list=(
                Path(env["PITWARDEN_KYT_DENY_LIST"]).resolve()
                if env.get("PITWARDEN_KYT_DENY_LIST")
                else None
            ),
            console_oidc_issuer=env.get("PITWARDEN_CONSOLE_OIDC_ISSUER", ""),
            console_oidc_client_id=env.get("PITWARDEN_CONSOLE_OIDC_CLIENT_ID", ""),
            console_oidc_client_secret=env.get("PITWARDEN_CONSOLE_OIDC_CLIENT_SECRET", ""),
            console_url=env.get("PITWARDEN_CONSOLE_URL", ""),
            player_token_key_file=(
                Path(env["PITWARDEN_PLAYER_TOKEN_KEY_FILE"]).resolve()
                if env.get("PITWARDEN_PLAYER_TOKEN_KEY_FILE")
                else None
            ),
            client_secrets_key_file=(
                Path(env["PITWARDEN_CLIENT_SECRETS_KEY_FILE"]).resolve()
                if env.get("PITWARDEN_CLIENT_SECRETS_KEY_FILE")
                else None
            ),
        )
