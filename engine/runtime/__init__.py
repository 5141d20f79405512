"""Running cases: the mutation pipeline, task and timer projections, countersign, returns, timers, notifications."""
