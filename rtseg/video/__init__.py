"""The live demo: video, webcam, stream or synthetic frames segmented through a pipelined loop.

Library entry points (``rtseg demo`` and ``demos/*.py`` are thin layers over these)::

    from rtseg.video import open_source, run_demo, DemoOptions, model_meta
    source = open_source("synthetic", synthetic_hw=(256, 512), synthetic_frames=120)
    result = run_demo(source, runner, model_meta(runner), DemoOptions(save=Path("out.mp4")))
    result.stats.inference_fps, result.stats.end_to_end_fps, result.record

Modules: :mod:`~rtseg.video.sources` (capture threads), :mod:`~rtseg.video.pipeline` (the staged
loop), :mod:`~rtseg.video.overlay` (colorize, blend, FPS text), :mod:`~rtseg.video.writer` (codec
probing, read-back check), :mod:`~rtseg.video.stats` (what is measured and how).
"""

from rtseg.video.meta import ModelMeta, model_meta
from rtseg.video.pipeline import DemoOptions, DemoResult, run_demo
from rtseg.video.sources import Frame, FrameSource, open_source, render_synthetic_video
from rtseg.video.stats import PipelineStats
from rtseg.video.writer import VideoWriter, WrittenVideo, count_frames, probe_codec

__all__ = [
    "DemoOptions",
    "DemoResult",
    "Frame",
    "FrameSource",
    "ModelMeta",
    "PipelineStats",
    "VideoWriter",
    "WrittenVideo",
    "count_frames",
    "model_meta",
    "open_source",
    "probe_codec",
    "render_synthetic_video",
    "run_demo",
]
