"""One audit writer: nothing but engine/models/audit.py builds ``AuditEvent`` rows (the brief's "one place for
each rule"; three services had slipped back to ``session.add(AuditEvent(...))``)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONSTRUCTS = re.compile(r"\bAuditEvent\s*\(")
WRITER = ROOT / "engine" / "models" / "audit.py"
DEFINITION = ROOT / "engine" / "models" / "__init__.py"  # ``class AuditEvent(Base):``


def test_only_the_audit_log_constructs_audit_rows():
    offenders = []
    for path in sorted([*(ROOT / "engine").rglob("*.py"), *(ROOT / "web").glob("*.py")]):
        if path in (WRITER, DEFINITION):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if CONSTRUCTS.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == [], "write audit rows through AuditLog.record:\n" + "\n".join(offenders)


def test_the_guard_finds_a_construction():
    assert CONSTRUCTS.search("self.session.add(AuditEvent(case_id=1))")
    assert not CONSTRUCTS.search("select(AuditEvent).where(AuditEvent.case_id == 1)")
