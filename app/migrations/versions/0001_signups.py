"""Consent records, their delivery state and history, and the disclosure texts.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from app.storage import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "disclosures",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("first_shown_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "signups",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("group_ids", sa.JSON, nullable=False),
        sa.Column("disclosure_sha256", sa.String(64), sa.ForeignKey("disclosures.sha256"), nullable=False),
        sa.Column("page_url", sa.Text, nullable=False),
        sa.Column("source", sa.JSON, nullable=False),
        sa.Column("client_ip", sa.String(45), nullable=True),
        sa.Column("user_agent", sa.Text, nullable=True),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("lease_until", UTCDateTime, nullable=True),
        sa.Column("leased_by", sa.String(64), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("upstream_messages", sa.JSON, nullable=True),
        sa.Column("duplicate_of", Id, nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_signups_due", "signups", ["state", "next_attempt_at"])
    op.create_index("ix_signups_recent", "signups", ["campaign", "phone", "created_at"])
    op.create_index("ix_signups_created", "signups", ["created_at"])
    op.create_table(
        "signup_events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("signup_id", Id, sa.ForeignKey("signups.id"), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index("ix_signup_events_signup_id", "signup_events", ["signup_id"])


def downgrade() -> None:
    op.drop_table("signup_events")
    op.drop_table("signups")
    op.drop_table("disclosures")
