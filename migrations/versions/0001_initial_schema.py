"""Initial schema: the work queue (complaints, suggestions, assignments, drafts, events).

The baseline: exactly the tables that ``create_all`` made before migrations existed, so such a database
is adopted by stamping this revision (``triage.migrate.upgrade`` does it) and upgrading from here.
Generated with ``alembic revision --autogenerate`` from triage/queue/models.py, then checked by
tests/test_migrations.py (no difference between the migrated schema and the models).

Revision ID: 0001
Revises: 
Create Date: 2026-11-28
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('complaints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=128), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('address', sa.String(length=500), nullable=True),
    sa.Column('contact', sa.String(length=200), nullable=True),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('urgency', sa.String(length=16), nullable=False),
    sa.Column('pollution_type', sa.String(length=64), nullable=True),
    sa.Column('subtype', sa.String(length=64), nullable=True),
    sa.Column('unit_type', sa.String(length=64), nullable=True),
    sa.Column('unit_name', sa.String(length=200), nullable=True),
    sa.Column('duplicate_of', sa.Integer(), nullable=True),
    sa.Column('duplicate_score', sa.Float(), nullable=True),
    sa.Column('merged_into', sa.Integer(), nullable=True),
    sa.Column('relapse_of', sa.Integer(), nullable=True),
    sa.Column('relapse_score', sa.Float(), nullable=True),
    sa.Column('deadline', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deadline_note', sa.String(length=300), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('first_closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('result', sa.String(length=16), nullable=True),
    sa.Column('reply', sa.Text(), nullable=True),
    sa.Column('triage_attempts', sa.Integer(), nullable=False),
    sa.Column('triage_error', sa.Text(), nullable=True),
    sa.Column('assign_count', sa.Integer(), nullable=False),
    sa.Column('return_count', sa.Integer(), nullable=False),
    sa.Column('extension_count', sa.Integer(), nullable=False),
    sa.Column('reopen_count', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['duplicate_of'], ['complaints.id'], ),
    sa.ForeignKeyConstraint(['merged_into'], ['complaints.id'], ),
    sa.ForeignKeyConstraint(['relapse_of'], ['complaints.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('external_id')
    )
    op.create_index(op.f('ix_complaints_merged_into'), 'complaints', ['merged_into'], unique=False)
    op.create_index(op.f('ix_complaints_received_at'), 'complaints', ['received_at'], unique=False)
    op.create_index(op.f('ix_complaints_status'), 'complaints', ['status'], unique=False)
    op.create_index('ix_complaints_status_deadline', 'complaints', ['status', 'deadline'], unique=False)
    op.create_index(op.f('ix_complaints_unit_type'), 'complaints', ['unit_type'], unique=False)

    op.create_table('events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('complaint_id', sa.Integer(), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('from_status', sa.String(length=16), nullable=True),
    sa.Column('to_status', sa.String(length=16), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['complaint_id'], ['complaints.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_events_complaint_id'), 'events', ['complaint_id'], unique=False)
    op.create_index(op.f('ix_events_kind'), 'events', ['kind'], unique=False)

    op.create_table('reply_drafts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('complaint_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('citations', sa.JSON(), nullable=False),
    sa.Column('generator', sa.String(length=100), nullable=False),
    sa.Column('prompt_version', sa.String(length=100), nullable=True),
    sa.Column('quality', sa.JSON(), nullable=True),
    sa.Column('notice', sa.String(length=500), nullable=True),
    sa.Column('findings', sa.Text(), nullable=True),
    sa.Column('result', sa.String(length=16), nullable=True),
    sa.Column('approved', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['complaint_id'], ['complaints.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_reply_drafts_complaint_id'), 'reply_drafts', ['complaint_id'], unique=False)

    op.create_table('suggestions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('complaint_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('pollution_type', sa.String(length=64), nullable=False),
    sa.Column('subtype', sa.String(length=64), nullable=False),
    sa.Column('unit_type', sa.String(length=64), nullable=False),
    sa.Column('unit_name', sa.String(length=200), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('unit_confidence', sa.Float(), nullable=False),
    sa.Column('low_confidence', sa.Boolean(), nullable=False),
    sa.Column('alternatives', sa.JSON(), nullable=False),
    sa.Column('unit_alternatives', sa.JSON(), nullable=False),
    sa.Column('unit_decided_by', sa.String(length=300), nullable=False),
    sa.Column('similar_cases', sa.JSON(), nullable=False),
    sa.Column('regulations', sa.JSON(), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('versions', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['complaint_id'], ['complaints.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_suggestions_complaint_id'), 'suggestions', ['complaint_id'], unique=False)

    op.create_table('assignments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('complaint_id', sa.Integer(), nullable=False),
    sa.Column('unit_type', sa.String(length=64), nullable=False),
    sa.Column('unit_name', sa.String(length=200), nullable=False),
    sa.Column('pollution_type', sa.String(length=64), nullable=True),
    sa.Column('subtype', sa.String(length=64), nullable=True),
    sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('assigned_by', sa.String(length=100), nullable=False),
    sa.Column('deadline', sa.DateTime(timezone=True), nullable=False),
    sa.Column('contact_deadline', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deadline_note', sa.String(length=300), nullable=True),
    sa.Column('sla_rule', sa.String(length=100), nullable=True),
    sa.Column('extensions', sa.Integer(), nullable=False),
    sa.Column('accepted_suggestion', sa.Boolean(), nullable=False),
    sa.Column('suggested_pollution_type', sa.String(length=64), nullable=True),
    sa.Column('suggested_subtype', sa.String(length=64), nullable=True),
    sa.Column('suggested_unit_type', sa.String(length=64), nullable=True),
    sa.Column('suggestion_id', sa.Integer(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('end_reason', sa.String(length=16), nullable=True),
    sa.ForeignKeyConstraint(['complaint_id'], ['complaints.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['suggestion_id'], ['suggestions.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_assignments_complaint_id'), 'assignments', ['complaint_id'], unique=False)
    op.create_index(op.f('ix_assignments_unit_type'), 'assignments', ['unit_type'], unique=False)


def downgrade() -> None:
    for table in ("assignments", "suggestions", "reply_drafts", "events", "complaints"):
        op.drop_table(table)  # indexes go with their tables
