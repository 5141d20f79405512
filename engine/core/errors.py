"""Domain errors. Views turn these into HTTP statuses and messages; the engine never does."""

from __future__ import annotations


class XiangFlowError(Exception):
    """Base of every error the engine raises on purpose."""


class NotFoundError(XiangFlowError):
    """The object does not exist, or the user may not know that it does (other jurisdiction)."""


class ForbiddenError(XiangFlowError):
    """The user may see the object but not perform this action."""


class ConflictError(XiangFlowError):
    """The case changed under the caller (task already completed, concurrent update)."""


class ValidationError(XiangFlowError):
    """Submitted data is invalid; ``errors`` maps field keys to messages."""

    def __init__(self, message: str, errors: dict[str, str] | None = None):
        super().__init__(message)
        self.errors = errors or {}


class CursorError(XiangFlowError):
    """A page cursor that this list did not hand out (edited, cut short, from another tab or search)."""


class DefinitionError(XiangFlowError):
    """A procedure definition (BPMN, DMN, form) was refused; ``problems`` lists (element, reason)."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.problems = problems or []

    def __str__(self) -> str:
        if not self.problems:
            return super().__str__()
        details = "; ".join(f"{element}: {reason}" for element, reason in self.problems)
        return f"{super().__str__()} — {details}"


class UnsafeExpressionError(XiangFlowError):
    """An expression or script uses a construct outside the safe whitelist."""


class CaseExecutionError(XiangFlowError):
    """The workflow could not advance (bad expression, missing data); nothing was saved."""
