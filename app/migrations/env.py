"""Alembic environment: migrations run on a connection handed in by app.storage.migrate()."""

from alembic import context

from app.storage import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `optin migrate` (or let the app run them at start-up)")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
