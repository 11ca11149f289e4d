"""The console: the funnel's counts and the audit log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from app.storage.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "funnel_counts",
        sa.Column("campaign", sa.String(64), primary_key=True),
        sa.Column("src", sa.String(200), primary_key=True),
        sa.Column("hour", UTCDateTime, primary_key=True),
        sa.Column("metric", sa.String(32), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_funnel_counts_hour", "funnel_counts", ["hour"])
    op.create_table(
        "audit_log",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("address", sa.String(45), nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_index("ix_funnel_counts_hour", table_name="funnel_counts")
    op.drop_table("funnel_counts")
