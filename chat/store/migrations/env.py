"""Alembic environment: always run programmatically by ``chat.store.database.migrate`` with an open
connection (``config.attributes["connection"]``), so there is no alembic.ini and no URL here.

A new revision: copy ``versions/0001_initial.py`` to the next number and write the change (for
SQLite, ``with op.batch_alter_table(...)``); ``tests/test_store_schema.py`` fails until the
migrations and ``chat/store/tables.py`` describe the same tables.
"""

from __future__ import annotations

from alembic import context

from chat.store.tables import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters tables by copying them; batch mode does that for us
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
