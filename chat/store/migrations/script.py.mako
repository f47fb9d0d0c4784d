"""${message}"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from chat.store.tables import UTCDateTime  # noqa: F401

${imports if imports else ""}
revision, down_revision = ${repr(up_revision)}, ${repr(down_revision)}  # alembic's chain


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
