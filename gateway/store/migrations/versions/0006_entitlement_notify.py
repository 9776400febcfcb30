"""entitlements: on PostgreSQL, every committed change of a user's rows is announced

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

A row trigger sends ``NOTIFY gateway_entitlements, '<user sub>'`` for each row inserted,
updated or deleted, and a statement trigger sends ``'*'`` (everyone) for a TRUNCATE.
PostgreSQL delivers a notification only when its transaction commits, and once per
distinct payload in a transaction, so every gateway worker that listens hears each
committed change, whichever process, dyno or hand-written statement made it: the
per-worker entitlement cache (``gateway/store/cache.py``) forgets that user. SQLite has
no notifications: nothing to do there.
"""
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

CHANNEL = "gateway_entitlements"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"""
        CREATE FUNCTION gateway_entitlements_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'TRUNCATE' THEN
                PERFORM pg_notify('{CHANNEL}', '*');
            ELSIF TG_OP = 'DELETE' THEN
                PERFORM pg_notify('{CHANNEL}', OLD.user_sub);
            ELSE
                PERFORM pg_notify('{CHANNEL}', NEW.user_sub);
                IF TG_OP = 'UPDATE' AND OLD.user_sub IS DISTINCT FROM NEW.user_sub THEN
                    PERFORM pg_notify('{CHANNEL}', OLD.user_sub);
                END IF;
            END IF;
            RETURN NULL;
        END $$""")
    op.execute("CREATE TRIGGER entitlements_notify AFTER INSERT OR UPDATE OR DELETE ON entitlements "
               "FOR EACH ROW EXECUTE FUNCTION gateway_entitlements_notify()")
    op.execute("CREATE TRIGGER entitlements_notify_truncate AFTER TRUNCATE ON entitlements "
               "FOR EACH STATEMENT EXECUTE FUNCTION gateway_entitlements_notify()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER entitlements_notify_truncate ON entitlements")
    op.execute("DROP TRIGGER entitlements_notify ON entitlements")
    op.execute("DROP FUNCTION gateway_entitlements_notify()")
