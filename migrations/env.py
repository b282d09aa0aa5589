"""Alembic environment: always runs on a connection handed in by core.database.migrate."""

from alembic import context

import app.console.models  # the console's tables
import app.player.models  # noqa: F401 - the player page's sessions
import audit.models  # noqa: F401 - registers the audit tables on the metadata
import compliance.models  # noqa: F401 - the responsible-gambling tables
import policies.models  # noqa: F401 - and the policy tables
from core.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
