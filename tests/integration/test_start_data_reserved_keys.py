"""Start data may not take an engine data key: the runtime refuses the procedure checks' one list."""

from __future__ import annotations

import pytest

from engine.core.errors import ValidationError
from engine.procedures.checks.rules import RESERVED_DATA_KEYS


@pytest.mark.parametrize("key", ["decision", "linked_from_case", "last_event_reason", "subject_name", "subject_x"])
def test_start_data_naming_an_engine_key_is_refused(db, key):
    assert key in RESERVED_DATA_KEYS or key.startswith("subject_")
    with db.uow() as work, pytest.raises(ValidationError) as info:
        work.cases.start_case("monitoring_exit", db.household(), db.actor("demo_village"), data={key: "1"})
    assert info.value.errors == {key: "不允许的字段名"}
