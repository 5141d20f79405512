"""Procedure studio: admins model, validate, dry-run, deploy and share procedures, and move running cases.

``StudioService`` is the one object web/studio.py and the tests use; each of its parts is a module of
one idea:

- ownership.py  — who may change a procedure (``may_change_procedure``), owner choices, audit
- drafts.py     — overview, new/copied/opened drafts, save (shape and well-formedness only), discard
- validation.py — the draft's context for the procedure checks (engine/procedures/checks), validate, deploy
- zipfiles.py   — zip export and import (untrusted: size, entries, ratio, links, traversal)
- sandbox.py    — dry runs in memory under a FixedClock
- migration.py  — moving running cases between versions (SpiffWorkflow's diff/migration)
- simple/       — the simple designer (简易模式): model, compiler, decompiler, templates (docs/simple-designer.md)

Every studio action requires an admin grant (``Actor.is_admin``), and changing a procedure
(opening, saving, validating, dry-running, deploying, exporting a draft or version, migrating its
cases) requires ``AccessPolicy.may_change_procedure`` (engine/access/policy.py) on the procedure's owner region. Every action is recorded in
``audit_event`` (``case_id`` NULL unless it concerns a case) with the acting admin and, in
``data_diff["owner_region_code"]``, the procedure's owner region. Services take their session and
clock; nothing here commits.
"""

from __future__ import annotations

from engine.procedures.checks import Problem
from engine.procedures.checks.rules import CASE_STATUS_VALUES
from engine.studio.drafts import ProcedureSummary, VersionSummary, copy_files, empty_bpmn
from engine.studio.migration import MigrationCheck, StudioMigration
from engine.studio.ownership import SYSTEM_OWNER_NAME
from engine.studio.sandbox import DryRunResult, DryRunStep, StudioDryRun, run_sandbox
from engine.studio.simple.service import StudioSimple
from engine.studio.validation import DraftProblems
from engine.studio.zipfiles import MAX_ZIP_BYTES, StudioZip, read_zip, write_zip

__all__ = [
    "CASE_STATUS_VALUES", "MAX_ZIP_BYTES", "SYSTEM_OWNER_NAME", "DraftProblems", "DryRunResult", "DryRunStep",
    "MigrationCheck", "Problem", "ProcedureSummary", "StudioService", "VersionSummary", "copy_files", "empty_bpmn",
    "read_zip", "run_sandbox", "write_zip",
]


class StudioService(StudioZip, StudioDryRun, StudioMigration, StudioSimple):
    """Studio operations for admins: drafts, validation and deploy, zips, dry runs, case migration."""
