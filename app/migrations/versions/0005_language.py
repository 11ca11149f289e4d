"""The language of each consent record: the page, its disclosure and the texts sent were in it.

Every signup made before is English, the only language pages had: the column's server
default fills them in.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch: SQLite adds a column in place, but a later ALTER it cannot do is copied.
    with op.batch_alter_table("signups") as batch:
        batch.add_column(sa.Column("language", sa.String(8), nullable=False, server_default="en"))


def downgrade() -> None:
    with op.batch_alter_table("signups") as batch:
        batch.drop_column("language")
