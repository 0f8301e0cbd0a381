"""The stage interface: parameters, resources, declared reads and writes, ``setup`` and ``process``.

A stage is a small dataclass (NVIDIA Curator style): plain fields are its parameters,
``resources`` is what each of its Ray actors asks for, ``setup()`` loads models once per actor,
and ``process(item)`` returns a new item (``dataclasses.replace``) with the fields it declares in
``writes`` set; it never changes the item it was given. Items are the dataclasses of
:mod:`talkset.items`.

Each stage declares what it reads and writes as field names of its item (dotted for a nested
field: ``"source.video_path"``): ``reads`` must be set (not ``None``) before it runs,
``optional_reads`` are used when set, ``writes`` are what it adds; a stage with ``fans_out``
returns a list of items (one shot's clips, say) instead of one. :meth:`Stage.run` checks the
reads before calling :meth:`Stage.process`; the executor builds the pipeline graph from these
declarations (a stage runs after every stage that writes what it reads).

A stage signals a per-item problem by raising :class:`StageError` with a reason a user can act
on; the flow records it as a ``failures`` row and the run goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Resources:
    """What one actor of a stage asks Ray for. ``gpus`` is requested only where the cluster has
    GPUs (an actor asking for a GPU on a GPU-less cluster would stay pending forever)."""

    cpus: float = 1.0
    gpus: float = 0.0


class StageError(Exception):
    """A per-item failure with a clear reason (becomes a ``failures`` row)."""

    def __init__(self, reason: str, *, stage: str | None = None, item: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.stage = stage
        self.item = item


def field_value(item: Any, name: str) -> Any:
    """The value of a (dotted) field of ``item``; ``None`` where a link of the chain is ``None``."""
    value = item
    for part in name.split("."):
        if value is None:
            return None
        value = getattr(value, part)
    return value


class Stage:
    """Base class of every stage. Subclasses are dataclasses.

    Class attributes: ``name`` (the stage's name in tables and summaries), ``resources``,
    ``reads`` / ``optional_reads`` / ``writes`` (field names of the item, see the module
    docstring).
    """

    name: ClassVar[str] = "stage"
    resources: ClassVar[Resources] = Resources()
    reads: ClassVar[tuple[str, ...]] = ()
    optional_reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    #: True when ``process`` returns a list of items (0..n) instead of one
    fans_out: ClassVar[bool] = False

    def setup(self) -> None:
        """Load models; called once per actor before the first ``process``."""

    def process(self, item: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def check_reads(self, item: Any) -> None:
        """Raise :class:`StageError` naming every declared read that is not set on ``item``."""
        missing = [r for r in self.reads if field_value(item, r) is None]
        if missing:
            raise StageError(
                f"{self.name}: {type(item).__name__} {getattr(item, 'clip_id', '') or getattr(item, 'url', '')} "
                f"lacks {', '.join(missing)}; the stages that write them must run first",
                stage=self.name,
            )

    def run(self, item: Any) -> Any:
        """:meth:`check_reads`, then :meth:`process` (what the executor calls)."""
        self.check_reads(item)
        return self.process(item)

    def model_info(self) -> dict[str, str]:
        """Model names and versions this stage used (recorded in shard metadata)."""
        return {}
