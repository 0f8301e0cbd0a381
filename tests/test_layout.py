"""The stage declarations and the config objects (issue: one package, typed hand-offs, one config)."""

from __future__ import annotations

import dataclasses

import pytest

from talkset.items import Clip, Shot, Source
from talkset.stages.base import StageError, field_value


def _stages():
    from talkset.stages.align import AlignStage
    from talkset.stages.clip import ClipStage
    from talkset.stages.download import DownloadStage
    from talkset.stages.faces import FacesStage
    from talkset.stages.people import PeopleStage
    from talkset.stages.pose import PoseStage
    from talkset.stages.shots import ShotsStage
    from talkset.stages.speaking import SpeakingStage
    from talkset.stages.write import WriteStage

    return [DownloadStage(root="r"), ShotsStage(), PeopleStage(), ClipStage(root="r"), PoseStage(), FacesStage(),
            SpeakingStage(), AlignStage(), WriteStage(root="r")]  # fmt: skip


def test_declared_reads_and_writes_are_fields_of_the_items():
    for st in _stages():
        item = Source if st.name in ("download", "shots") else Clip
        names = {f.name for f in dataclasses.fields(item)}
        for r in (*st.reads, *st.optional_reads, *st.writes):
            head, _, rest = r.partition(".")
            assert head in names, (st.name, r)
            if rest:
                assert rest in {f.name for f in dataclasses.fields(Source)}, (st.name, r)


def test_run_checks_reads_before_process():
    from talkset.stages.speaking import SpeakingStage

    shot = Shot("s", 0, 0, 25, 0.0, 1.0)
    clip = Clip(source=Source(url="/x.mp4", source_id="s"), shot=shot, clip_id="s-s0000", clip_fps=25.0)
    with pytest.raises(StageError, match="lacks video_path, audio_path, face_tracks"):
        SpeakingStage().run(clip)
    assert field_value(clip, "source.video_path") is None and field_value(clip, "shot.end_s") == 1.0


def test_train_config_from_yaml_and_one_default(tmp_path):
    from talkset.training.config import TrainConfig

    p = tmp_path / "run.yaml"
    p.write_text("model: paper\nstage1_steps: 7\n")
    cfg = TrainConfig.from_yaml(p, root="/data", stage2_steps=3, lr=None)
    assert (cfg.model, cfg.stage1_steps, cfg.stage2_steps, cfg.root) == ("paper", 7, 3, "/data")
    assert cfg.learning_rate() == 1e-5 and cfg.run_name == "covog-paper"
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        TrainConfig.from_dict({"stage_1_steps": 1})
    # the CLI has no defaults of its own: unset options leave TrainConfig's
    from talkset.cli import build_parser

    args = build_parser().parse_args(["train", "--root", "r"])
    assert args.stage1_steps is None and args.model is None


def test_provenance_reads_installed_versions():
    import importlib.metadata as md

    from talkset import provenance

    assert provenance.version("duckdb") == md.version("duckdb")
    assert provenance.version("no-such-package-xyz") == "not installed"
