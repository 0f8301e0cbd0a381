"""Pipeline stages: one module per stage, each a :class:`tasks.base.Stage` dataclass."""
