"""A step that hands a notice over (``requiresNotice`` = a notice kind, e.g. 退出告知 → ``exit_notice``) cannot
be approved before that notice has been issued for the case: the village could otherwise tick 监测户已签收退出告知书
for a 告知书 nobody issued. The mutation's act asks ``require_notice`` (engine/runtime/cases.py), next to the
signature check (engine/runtime/signatures.py), so every way of approving (task page, API, 批量审批) meets the
same rule. Any notice of the kind that covers the case counts (a reissued one too)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.core.errors import ValidationError
from engine.models import Case, IssuedNotice, IssuedNoticeCase
from engine.procedures.notice_catalog import version_catalog
from engine.procedures.steps import properties_of

FIELD = "notice"  # the error's key: the task page shows it beside the prompt to issue the notice


def missing_notice_message(kind_name: str) -> str:
    return f"请先出具{kind_name}:本步骤须将{kind_name}送达农户签收,出具后再办理本步骤"


def require_notice(session: Session, case: Case, task_spec) -> None:
    """Refuse to approve a ``requiresNotice`` step while no notice of that kind covers the case.

    :raises ValidationError: with the ``notice`` field (请先出具退出告知书 …).
    """
    kind = properties_of(task_spec).requires_notice
    if kind is None:
        return
    issued = session.scalar(select(IssuedNotice.id).join(IssuedNoticeCase).where(
        IssuedNoticeCase.case_id == case.id, IssuedNotice.kind == kind).limit(1))
    if issued is None:
        catalog = version_catalog(case.version)
        name = catalog.kinds[kind].name if catalog is not None and kind in catalog.kinds else kind
        message = missing_notice_message(name)
        raise ValidationError(message, {FIELD: message})
