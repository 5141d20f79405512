"""What a check reports: one problem on one element (BPMN/DMN id, with its name) or file, in Chinese."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.core.errors import DefinitionError


@dataclass(frozen=True)
class Problem:
    """One reason a bundle cannot be deployed, on the element (BPMN/DMN id) or file it concerns."""

    element_id: str | None
    message: str
    file: str | None = None
    element_name: str | None = None

    @property
    def where(self) -> str:
        """How the problem's place is written: ``名称[id]`` (a DMN element with its file), or the file."""
        if self.element_id:
            element = f"{self.element_name or ''}[{self.element_id}]"
            if self.file and not self.file.startswith("bpmn/"):
                return f"{self.file} {element}"
            return element
        return self.file or "流程"

    def as_dict(self) -> dict[str, Any]:
        return {"element_id": self.element_id, "element_name": self.element_name, "file": self.file,
                "message": self.message, "where": self.where}


class ProblemsError(DefinitionError):
    """A bundle was refused (deploy, dry run); ``details`` holds the problems with their elements."""

    def __init__(self, message: str, details: list[Problem]):
        super().__init__(message, [(p.where, p.message) for p in details])
        self.details = details
