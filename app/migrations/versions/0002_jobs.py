"""Jobs with kinds: the outbox apart from the consent records.

Every signup's delivery state moves to a job of kind `opt_in` with the signup's id,
its request as the job's payload; its history moves to `job_events`. The consent
record stays in `signups`, its id now its job's. Pending signups stay pending, due as
they were, under the lease they had.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

from app.storage.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")

# The columns of the delivery state, in `signups` before and in `jobs` after.
_STATE = (
    "state, attempts, next_attempt_at, lease_until, leased_by, last_error, upstream_messages, duplicate_of, updated_at"
)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("campaign", sa.String(64), nullable=True),
        sa.Column("payload", sa.JSON, nullable=False),
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
    # An opt-in's priority is app.outbox.Kind.OPT_IN.priority.
    op.execute(
        f"INSERT INTO jobs (id, kind, priority, created_at, phone, campaign, payload, {_STATE}) "
        f"SELECT id, 'opt_in', 1, created_at, phone, campaign, request, {_STATE} FROM signups"
    )
    op.create_index("ix_jobs_due", "jobs", ["state", "priority", "next_attempt_at"])
    op.create_index("ix_jobs_number", "jobs", ["phone", "kind", "created_at"])

    op.create_table(
        "job_events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("job_id", Id, sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.execute(
        "INSERT INTO job_events (id, job_id, at, state, detail) SELECT id, signup_id, at, state, detail FROM signup_events"
    )
    op.create_index("ix_job_events_job_id", "job_events", ["job_id"])
    op.drop_index("ix_signup_events_signup_id", "signup_events")
    op.drop_table("signup_events")

    op.drop_index("ix_signups_due", "signups")
    op.drop_index("ix_signups_recent", "signups")
    # SQLite rebuilds the table (Alembic's batch mode); PostgreSQL alters it in place.
    with op.batch_alter_table("signups") as batch:
        for column in ("request", *_STATE.split(", ")):
            batch.drop_column(column)
        batch.create_foreign_key("fk_signups_job", "jobs", ["id"], ["id"])

    if op.get_bind().dialect.name == "postgresql":
        # The ids were copied: new jobs and events number on from the highest, and a
        # signup takes its job's id rather than one of its own.
        for table in ("jobs", "job_events"):
            op.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {table}"
            )
        op.execute("ALTER TABLE signups ALTER COLUMN id DROP DEFAULT")
        op.execute("DROP SEQUENCE IF EXISTS signups_id_seq")


def downgrade() -> None:
    # Back to one row per signup. Jobs of kinds other than opt_in have no place there.
    with op.batch_alter_table("signups") as batch:
        batch.drop_constraint("fk_signups_job", type_="foreignkey")
        batch.add_column(sa.Column("request", sa.JSON, nullable=True))
        batch.add_column(sa.Column("state", sa.String(16), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=True))
        batch.add_column(sa.Column("next_attempt_at", UTCDateTime, nullable=True))
        batch.add_column(sa.Column("lease_until", UTCDateTime, nullable=True))
        batch.add_column(sa.Column("leased_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("last_error", sa.Text, nullable=True))
        batch.add_column(sa.Column("upstream_messages", sa.JSON, nullable=True))
        batch.add_column(sa.Column("duplicate_of", Id, nullable=True))
        batch.add_column(sa.Column("updated_at", UTCDateTime, nullable=True))
    assignments = ", ".join(
        f"{column} = (SELECT {column} FROM jobs WHERE jobs.id = signups.id)"
        for column in ("state", "attempts", "next_attempt_at", "lease_until", "leased_by", "last_error")
    )
    op.execute(f"UPDATE signups SET request = (SELECT payload FROM jobs WHERE jobs.id = signups.id), {assignments}")
    assignments = ", ".join(
        f"{column} = (SELECT {column} FROM jobs WHERE jobs.id = signups.id)"
        for column in ("upstream_messages", "duplicate_of", "updated_at")
    )
    op.execute(f"UPDATE signups SET {assignments}")
    with op.batch_alter_table("signups") as batch:
        for column in ("request", "state", "attempts", "next_attempt_at", "updated_at"):
            batch.alter_column(column, nullable=False)
    op.create_index("ix_signups_due", "signups", ["state", "next_attempt_at"])
    op.create_index("ix_signups_recent", "signups", ["campaign", "phone", "created_at"])

    op.create_table(
        "signup_events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("signup_id", Id, sa.ForeignKey("signups.id"), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.execute(
        "INSERT INTO signup_events (id, signup_id, at, state, detail) "
        "SELECT e.id, e.job_id, e.at, e.state, e.detail FROM job_events e JOIN signups s ON s.id = e.job_id"
    )
    op.create_index("ix_signup_events_signup_id", "signup_events", ["signup_id"])
    op.drop_table("job_events")
    op.drop_table("jobs")
    if op.get_bind().dialect.name == "postgresql":
        # A signup numbers itself again, on from the highest id.
        op.execute("CREATE SEQUENCE signups_id_seq OWNED BY signups.id")
        op.execute("ALTER TABLE signups ALTER COLUMN id SET DEFAULT nextval('signups_id_seq')")
        for table in ("signups", "signup_events"):
            op.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {table}"
            )
