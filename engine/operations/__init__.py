"""Approval operations on tasks (转办, 委派, 加签, 抄送, 催办, attachments) and admin operations."""
