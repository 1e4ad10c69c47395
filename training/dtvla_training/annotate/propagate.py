"""`propagate`: key frames are described by another annotator; the frames between inherit their segment's text.

Upstream labels the frames between key frames with a second (local) VLM; without one, the key frame's description
stays true for its segment's sub-task, so it is copied with the progress brought up to date: the sentence "This
sub-task is about N% done." (N in steps of 10, the frame's offset in its segment) is added to the progress. A key
frame, and any frame of a segment whose key frame says the task is done, keeps the text as the source wrote it.
"""

from __future__ import annotations

from dataclasses import replace

from dtvla_sim_bridge.sim.scene import PHASES
from dtvla_training.annotate.annotator import Annotation, Annotator
from dtvla_training.annotate.episode_data import Episode
from dtvla_training.annotate.key_frames import Segment, Segmentation


class PropagateAnnotator(Annotator):
    """Key frames from `source` (`privileged` or `vlm`), the other frames copied from their segment's key frame."""

    name = "propagate"

    def __init__(self, source: Annotator) -> None:
        if isinstance(source, PropagateAnnotator):
            raise ValueError("propagate needs a key-frame annotator (privileged or vlm), not another propagate")
        self.source = source

    def annotate_frame(self, episode: Episode, frame: int, segmentation: Segmentation) -> Annotation:
        segment = segmentation.segment_of(frame)
        return propagated(self.source.annotate_frame(episode, segment.start, segmentation), segment, frame)

    def annotate(self, episode: Episode, segmentation: Segmentation) -> list[Annotation]:
        """Asks `source` once per key frame."""
        annotations: list[Annotation] = []
        for segment in segmentation.segments:
            key = self.source.annotate_frame(episode, segment.start, segmentation)
            annotations += [propagated(key, segment, frame) for frame in range(segment.start, segment.end)]
        return annotations

    @property
    def label(self) -> str:
        return f"{self.name} ({self.source.name} key frames)"

    def stats(self) -> dict[str, int]:
        return self.source.stats()


def propagated(key: Annotation, segment: Segment, frame: int) -> Annotation:
    """`key` (the annotation of `segment.start`) as the annotation of `frame` in the same segment."""
    if frame == segment.start:
        return key
    if key.error is not None or key.phase == PHASES[-1]:
        return replace(key, copied_from=segment.start)  # a finished task has no sub-task left to progress in
    percent = round(10 * (frame - segment.start) / segment.length) * 10
    progress = f"{key.progress} This sub-task is about {percent}% done.".strip()
    return replace(key, progress=progress, copied_from=segment.start)
