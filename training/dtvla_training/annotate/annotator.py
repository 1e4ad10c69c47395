"""What an annotation is, and the one interface every annotator implements.

An annotation is kept in its three parts, in upstream's reasoning style (README Fig. 5): what the scene shows (the
gripper and the relevant objects with coarse locations), the sub-goal progress, and ONE imperative next step. Kept
apart so `propagate` can update the progress of a copied annotation, and `checks` can find the imperative step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from dtvla_training.annotate.episode_data import Episode
from dtvla_training.annotate.key_frames import Segmentation


@dataclass(frozen=True)
class Annotation:
    """The reasoning of one frame.

    phase: the sub-goal phase (a name of `dtvla_sim_bridge.sim.scene.PHASES`) the text is about, which the temporal
        check orders; None when the annotator could not say.
    confidence: the annotator's own confidence in [0, 1], None when it gives none (the privileged text is exact).
    error: why the annotator produced nothing usable (an unparseable VLM answer, a failed request); the text is
        then empty and the frame fails the checks.
    copied_from: the key frame whose annotation this one copies (`propagate`), None when written for this frame.
    """

    scene: str
    progress: str
    next_step: str
    phase: str | None
    source: str
    confidence: float | None = None
    error: str | None = None
    copied_from: int | None = None

    @property
    def text(self) -> str:
        """The reasoning as stored in the dataset's `reasoning` column (no think tags)."""
        return " ".join(part.strip() for part in (self.scene, self.progress, self.next_step) if part.strip())

    @classmethod
    def failed(cls, source: str, error: str) -> Annotation:
        return cls(scene="", progress="", next_step="", phase=None, source=source, error=error)


class Annotator(ABC):
    """Writes the reasoning of every frame of an episode.

    Subclasses describe single frames (`annotate_frame`); `annotate` asks for each frame in turn unless a subclass
    knows a cheaper way (`propagate` describes key frames only).
    """

    name: ClassVar[str]

    @abstractmethod
    def annotate_frame(self, episode: Episode, frame: int, segmentation: Segmentation) -> Annotation:
        """The annotation of one frame, given the episode and its key frames."""

    def annotate(self, episode: Episode, segmentation: Segmentation) -> list[Annotation]:
        """One annotation per frame, in frame order."""
        return [self.annotate_frame(episode, frame, segmentation) for frame in range(episode.length)]

    @property
    def label(self) -> str:
        """How the report names this annotator."""
        return self.name

    def stats(self) -> dict[str, int]:
        """Counters for the report (requests sent, cache hits, ...); none by default."""
        return {}
