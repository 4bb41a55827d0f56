"""Windowed aggregation: the spec language, its aggregators and the step."""
