"""Handwritten signatures (e.g. 农户签字 on the 四步法 household check), captured on a task.

A user task asks for one with its ``signature`` property (``required`` or ``optional``) and
names it with ``signatureLabel`` (default 农户签字). A signature is a PNG attachment of kind
``signature`` tied to the task row: append-only like every attachment, so signing again adds
a new one, the latest counts and all are kept. Approving a step whose signature is required
is refused until one exists (``require_signature``, called by ``CaseService.complete_task``).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.access.assignment import Actor
from engine.core.errors import ConflictError, ForbiddenError, ValidationError
from engine.models import Attachment, Case, TaskRow, TaskStatus
from engine.procedures.expressions import CHINA_TZ
from engine.procedures.step_rules import spec_properties, step_spec
from engine.procedures.steps import SIGNATURE_MODES

if TYPE_CHECKING:
    from engine.runtime.pipeline import Mutation

SIGNATURE_KIND = "signature"
DEFAULT_LABEL = "农户签字"
MAX_SIGNATURE_BYTES = 512 * 1024
MIN_SIDE_PX, MAX_SIDE_PX = 100, 4000
MISSING_MESSAGE = "请先由农户签字"
BLANK_MESSAGE = "签字为空白,请在框内签名后再提交"


@dataclass(frozen=True)
class SignatureRule:
    mode: str  # required | optional
    label: str

    @property
    def required(self) -> bool:
        return self.mode == "required"


def signature_rule(task_spec) -> SignatureRule | None:
    """The signature a task spec asks for, from its ``signature``/``signatureLabel`` properties."""
    props = spec_properties(task_spec)
    mode = (props.get("signature") or "").strip()
    if mode not in SIGNATURE_MODES:
        return None
    return SignatureRule(mode, (props.get("signatureLabel") or "").strip() or DEFAULT_LABEL)


def check_signature_png(content: bytes) -> None:
    """Accept only a small PNG of a plausible signature size (read from its header) whose chunks verify.

    A blank image (an empty signature pad, a fully transparent PNG) is refused by ``refuse_blank`` on the
    pixels the attachment store decodes (that the whole file decodes is the store's rule, as for every
    upload: one decode, not two), and ``SignatureService.add_signature`` answers a refusal there as a
    damaged PNG.

    :raises ValidationError: empty, too large, not a PNG, odd dimensions, or damaged.
    """
    from PIL import Image

    if not content:
        raise ValidationError("签字为空", {"signature": "签字图片为空"})
    if len(content) > MAX_SIGNATURE_BYTES:
        raise ValidationError("签字图片过大", {"signature": f"签字图片不能超过 {MAX_SIGNATURE_BYTES // 1024} KB"})
    if not content.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValidationError("签字必须是 PNG 图片", {"signature": "签字必须是 PNG 图片"})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as img:
                if img.format != "PNG":
                    raise ValueError("not a PNG")
                width, height = img.size
    except Exception as exc:  # Pillow raises many types for a broken file
        raise _damaged() from exc
    if not (MIN_SIDE_PX <= width <= MAX_SIDE_PX and MIN_SIDE_PX // 2 <= height <= MAX_SIDE_PX):
        raise ValidationError("签字图片尺寸不合理", {
            "signature": f"签字图片尺寸应在 {MIN_SIDE_PX}×{MIN_SIDE_PX // 2} 到 {MAX_SIDE_PX}×{MAX_SIDE_PX} 像素之间"})
    try:
        with Image.open(io.BytesIO(content)) as img:
            img.verify()  # a truncated file is damaged (the store's answer), not blank
    except Exception as exc:
        raise _damaged() from exc


def refuse_blank(img) -> None:
    """Refuse a signature whose decoded pixels (a loaded Pillow image) show no stroke.

    :raises ValidationError: blank (签字为空白).
    """
    try:
        blank = _blank(img.getbands(), img.getextrema())
    except Exception as exc:
        raise _damaged() from exc
    if blank:
        raise ValidationError("签字为空白", {"signature": BLANK_MESSAGE})


def _blank(bands: tuple[str, ...], extrema) -> bool:
    """Every pixel the same colour, or every pixel fully transparent (extrema per band, as Pillow gives them)."""
    per_band = [extrema] if len(bands) == 1 else list(extrema)
    if "A" in bands and per_band[bands.index("A")][1] == 0:
        return True
    return all(low == high for low, high in per_band)


def _damaged() -> ValidationError:
    return ValidationError("签字图片无效", {"signature": "签字图片已损坏或不是有效的 PNG"})


class SignatureService:
    """Captures signatures on tasks and answers which task has one."""

    def __init__(self, session: Session, clock, cases, operations):
        self.session = session
        self.clock = clock
        self.cases = cases  # CaseService: task visibility and the version's specs
        self.operations = operations  # OperationsService: storage of attachments, in one place (store)

    def rule_for(self, row: TaskRow) -> SignatureRule | None:
        """The signature the task's step asks for (read from the version's spec, no case load)."""
        return signature_rule(step_spec(self.cases.definitions, row.case.version, row.spec_name))

    def add_signature(self, task_id: int, actor: Actor, content: bytes, case_id: int | None = None) -> Attachment:
        """Store a handwritten signature (PNG) for an open task the actor works on (of case_id, when given).

        :raises NotFoundError: no such task or outside jurisdiction.
        :raises ForbiddenError: the actor may not act on the task.
        :raises ConflictError: the task is no longer open.
        :raises ValidationError: the step takes no signature, or the PNG is refused; nothing is stored.
        """
        row = self.cases.access.task_of(task_id, actor)
        if case_id is not None and row.case_id != case_id:
            raise ValidationError("任务不属于本案", {"task_id": "任务不属于本案"})
        return self._store(row, actor, content)

    def complete_signed(self, task_id: int, actor: Actor, content: bytes, action: str, opinion: str | None,
                        data: dict[str, Any] | None, client_addr: str | None = None) -> Case:
        """Store the signature (as ``add_signature``) and complete the task (as ``CaseService.complete_task``)
        in one mutation: the task is read once under the case lock and the two history events are written
        together, as when the task page sends the drawn signature with the decision.

        :raises: as ``add_signature`` and ``CaseService.complete_task``; nothing is stored on any refusal.
        """

        def sign(m: Mutation, row: TaskRow) -> None:
            self._store(row, actor, content, m.record)

        return self.cases.complete_task(task_id, actor, action, opinion, data, client_addr, sign=sign)

    def _store(self, row: TaskRow, actor: Actor, content: bytes,
               record: Callable[..., None] | None = None) -> Attachment:
        """Check and store a signature for the row (``record``: the mutation's history, else written at once)."""
        if row.status != TaskStatus.open:
            raise ConflictError("该任务已被处理")
        if not self.cases.access.may_sign(row, actor):
            raise ForbiddenError("您无权处理此任务")
        rule = self.rule_for(row)
        if rule is None:
            raise ValidationError("此步骤无需签字", {"signature": "此步骤无需签字"})
        check_signature_png(content)
        stamp = self.clock.now().astimezone(CHINA_TZ).strftime("%Y%m%d-%H%M%S")
        try:  # the store decodes the whole PNG (verify, then load every pixel) before it keeps anything
            return self.operations.store(row.case, row, actor, f"{rule.label}-{row.title}-{stamp}.png", content,
                                         "image/png", SIGNATURE_KIND, record=record, pixels=refuse_blank)
        except ValidationError as exc:
            if exc.errors.get("signature") is not None:  # refuse_blank's own answer
                raise
            raise _damaged() from exc

    def latest(self, task_id: int) -> Attachment | None:
        """The signature that counts for a task: its latest."""
        return self.session.scalar(select(Attachment).where(
            Attachment.task_id == task_id, Attachment.kind == SIGNATURE_KIND).order_by(Attachment.id.desc()).limit(1))

    def latest_by_task(self, case_id: int) -> dict[int, Attachment]:
        """Each task of a case → its latest signature."""
        found: dict[int, Attachment] = {}
        for att in self.session.scalars(select(Attachment).where(
                Attachment.case_id == case_id, Attachment.kind == SIGNATURE_KIND).order_by(Attachment.id)):
            if att.task_id is not None:
                found[att.task_id] = att
        return found


def require_signature(session: Session, row: TaskRow, task_spec, signed: bool = False) -> None:
    """Refuse to approve a step whose signature is required while the task has none (``signed``: the caller
    has just stored one for it in this transaction).

    :raises ValidationError: with the ``signature`` field (请先由农户签字).
    """
    rule = signature_rule(task_spec)
    if rule is None or not rule.required or signed:
        return
    signed = session.scalar(select(Attachment.id).where(
        Attachment.task_id == row.id, Attachment.kind == SIGNATURE_KIND).limit(1))
    if signed is None:
        message = MISSING_MESSAGE if rule.label == DEFAULT_LABEL else f"请先完成{rule.label}"
        raise ValidationError(message, {"signature": message})

