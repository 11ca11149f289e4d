"""Web opt-outs: the record of each revocation made on the opt-out page.

A job of kind `opt_out` carries the call to ProTexting; its record is a row of
`opt_outs` with the same id, as a signup's is of `signups`. Nothing existing changes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from app.storage.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "opt_outs",
        sa.Column("id", Id, sa.ForeignKey("jobs.id"), primary_key=True, autoincrement=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("campaign", sa.String(64), nullable=True),
        sa.Column("page_url", sa.Text, nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("notice_sha256", sa.String(64), sa.ForeignKey("disclosures.sha256"), nullable=False),
        sa.Column("client_ip", sa.String(45), nullable=True),
        sa.Column("user_agent", sa.Text, nullable=True),
    )
    op.create_index("ix_opt_outs_phone", "opt_outs", ["phone"])
    op.create_index("ix_opt_outs_created", "opt_outs", ["created_at"])


def downgrade() -> None:
    # The opt-outs' jobs go with them: revision 0002 knows no job without a record.
    op.execute("DELETE FROM job_events WHERE job_id IN (SELECT id FROM jobs WHERE kind = 'opt_out')")
    op.drop_index("ix_opt_outs_created", "opt_outs")
    op.drop_index("ix_opt_outs_phone", "opt_outs")
    op.drop_table("opt_outs")
    op.execute("DELETE FROM jobs WHERE kind = 'opt_out'")
