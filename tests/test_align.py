"""align stage on real detections: YOLO11n-pose person tracks + YuNet face tracks on a 3 s cut of
visualvoice_interview.mp4 (2-5 s, 75 frames, split screen: anchor left, boxer right).

"pose" annotations are built from the YOLO body keypoints placed in the COCO-WholeBody slots 0-16
(zeros elsewhere): real keypoints, estimated on each track's own box.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import WEIGHTS, clip

from talkset.items import Clip, FaceTrack, PersonTrack, PoseTrack, Shot, Source, SpeakingTrack
from talkset.media import run_ffmpeg
from talkset.stages.align import SUBSET_59, AlignStage, assign_faces, assign_poses
from talkset.stages.base import StageError
from talkset.stages.faces import FacesStage

N = 75


def _copy_task(base: Clip, pose=None, faces=None, speaking=None) -> Clip:
    return Clip(source=base.source, shot=base.shot, clip_id=base.clip_id, clip_fps=25.0, person_tracks=base.person_tracks,
                video_path=base.video_path, width=base.width, height=base.height, num_frames=base.num_frames,
                poses=pose, face_tracks=faces, speaking=speaking)


def _face(fid: int, frame_idx: np.ndarray, boxes: np.ndarray) -> FaceTrack:
    n = len(frame_idx)
    return FaceTrack(fid, frame_idx, boxes, np.ones(n, np.float32), np.zeros((n, 5, 2), np.float32), np.ones(n, bool))


def _part(ft: FaceTrack, keep: np.ndarray, new_id: int | None = None) -> FaceTrack:
    """The frames ``keep`` of a face track (under a new id when given)."""
    return FaceTrack(ft.face_track_id if new_id is None else new_id, ft.frame_idx[keep], ft.boxes[keep], ft.scores[keep],
                     ft.landmarks[keep], ft.detected[keep])


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    from ultralytics import YOLO

    p = tmp_path_factory.mktemp("align") / "vv.mp4"
    run_ffmpeg(["-ss", "2", "-i", str(clip("visualvoice_interview.mp4")), "-t", str(N / 25), "-r", "25",
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-an", str(p)], "cut")
    v = Source(url=str(p), source_id="vv", video_path=str(p))
    shot = Shot(source_id="vv", shot_idx=0, start_frame=0, end_frame=N, start_s=0.0, end_s=N / 25)
    task = Clip(source=v, shot=shot, clip_id="vv-s0000", clip_fps=25.0, video_path=str(p),
                    width=1280, height=720, num_frames=N)
    # person tracks: YOLO11n-pose + ByteTrack
    from talkset.media import iter_frames

    model = YOLO(str(WEIGHTS / "yolo11n-pose.pt"))
    raw: dict[int, dict[str, list]] = {}
    for k, _, img in iter_frames(p):
        r = model.track(img, persist=True, tracker="bytetrack.yaml", classes=[0], imgsz=640, verbose=False)[0]
        if r.boxes.id is None:
            continue
        for j, tid in enumerate(r.boxes.id.cpu().numpy().astype(int)):
            d = raw.setdefault(int(tid), {"f": [], "b": [], "s": [], "k": []})
            d["f"].append(k)
            d["b"].append(r.boxes.xyxy[j].cpu().numpy())
            d["s"].append(float(r.boxes.conf[j]))
            d["k"].append(r.keypoints.data[j].cpu().numpy())
    long = sorted((d for d in raw.values() if len(d["f"]) >= N // 2), key=lambda d: np.median(np.array(d["b"])[:, 0]))
    task.person_tracks = [
        PersonTrack(i, np.array(d["f"], np.int32), np.array(d["b"], np.float32), np.array(d["s"], np.float32),
              np.array(d["k"], np.float32))
        for i, d in enumerate(long)
    ]
    task = FacesStage().process(task)
    pose = {}
    for t in task.person_tracks:
        kp = np.zeros((len(t), 133, 3), np.float32)
        kp[:, :17] = t.body_kpts
        pose[t.track_id] = PoseTrack(t.track_id, t.frame_idx.copy(), kp)
    return replace(task, poses=pose)


def test_real_detections_as_measured(real):
    # 2 people (left anchor, right boxer) over (nearly) all frames, 2 face tracks
    assert len(real.person_tracks) == 2
    assert all(len(t) >= N - 3 for t in real.person_tracks)
    assert real.person_tracks[0].boxes[:, 2].max() < real.person_tracks[1].boxes[:, 0].min() + 50  # left, right
    assert len(real.face_tracks) == 2


def test_each_person_gets_the_face_inside_their_box(real):
    task = AlignStage().process(_copy_task(real, pose=real.poses, faces=real.face_tracks))
    al = task.alignment
    faces = {ft.face_track_id: ft for ft in real.face_tracks}
    assert len(al.face_to_person) == 2
    assert sorted(al.face_to_person.values()) == [0, 1]
    for fid, tid in al.face_to_person.items():
        tr = real.person_tracks[tid]
        fb = faces[fid].boxes
        fi = faces[fid].frame_idx
        rows = np.searchsorted(tr.frame_idx, fi)
        ok = (rows < len(tr)) & (tr.frame_idx[np.minimum(rows, len(tr) - 1)] == fi)
        pb = tr.boxes[rows[ok]]
        cx, cy = (fb[ok, 0] + fb[ok, 2]) / 2, (fb[ok, 1] + fb[ok, 3]) / 2
        assert np.all((cx >= pb[:, 0]) & (cx <= pb[:, 2]) & (cy >= pb[:, 1]) & (cy <= pb[:, 3]))
        col = al.columns[tid]
        assert col["face_track_id"].dtype == np.int32
        assert np.all(col["face_track_id"][rows[ok]] == fid)
        np.testing.assert_array_equal(col["face_box"][rows[ok]], fb[ok])
    assert al.stats["people_without_face"] == 0
    assert al.stats["face_conflicts"] == 0 and al.stats["face_unassigned"] == 0
    # no speaking annotations -> no speaking columns (null in Parquet)
    assert "speaking_score" not in al.columns[0]


def test_keypoints_59_and_own_poses(real):
    task = AlignStage().process(_copy_task(real, pose=real.poses))
    al = task.alignment
    assert al.stats["pose_own"] == al.stats["track_frames"]
    assert al.stats["pose_reassigned"] == 0 and al.stats["pose_dropped"] == 0
    assert len(SUBSET_59) == 59
    for t in real.person_tracks:
        col = al.columns[t.track_id]
        assert set(col) == {"keypoints", "keypoints_59"}  # no faces stage -> no face columns
        assert col["keypoints"].shape == (len(t), 133, 3) and col["keypoints"].dtype == np.float32
        np.testing.assert_array_equal(col["keypoints"], real.poses[t.track_id].keypoints)
        np.testing.assert_array_equal(col["keypoints_59"], col["keypoints"][:, list(SUBSET_59)])
        np.testing.assert_array_equal(col["keypoints_59"][:, :3], col["keypoints"][:, [0, 3, 4]])
        np.testing.assert_array_equal(col["keypoints_59"][:, 17:], col["keypoints"][:, 91:133])


def _shared_frames(a: PersonTrack, b: PersonTrack) -> int:
    return len(np.intersect1d(a.frame_idx, b.frame_idx))


def test_swapped_poses_are_put_back(real):
    pose = real.poses
    a, b = real.person_tracks
    shared = _shared_frames(a, b)
    # each track's pose entry now holds the other person's keypoints, on the other track's frames
    swapped = {a.track_id: pose[b.track_id], b.track_id: pose[a.track_id]}
    task = AlignStage().process(_copy_task(real, pose=swapped))
    al = task.alignment
    st = al.stats
    assert st["pose_reassigned"] == 2 * shared, st
    assert st["pose_own"] == 0 and st["pose_unused"] == 0
    for t in (a, b):
        kp = al.columns[t.track_id]["keypoints"]
        rows = np.flatnonzero(np.isin(t.frame_idx, np.intersect1d(a.frame_idx, b.frame_idx)))
        np.testing.assert_array_equal(kp[rows], pose[t.track_id].keypoints[rows])


def test_a_pose_is_never_given_to_two_people(real):
    pose = real.poses
    a, b = real.person_tracks
    shared = np.intersect1d(a.frame_idx, b.frame_idx)
    # track a's pose entry holds b's keypoints: the pose belongs to b, who keeps their own
    dup = {a.track_id: pose[b.track_id], b.track_id: pose[b.track_id]}
    task = AlignStage().process(_copy_task(real, pose=dup))
    al = task.alignment
    st = al.stats
    assert st["pose_dropped"] == len(shared), st
    assert st["pose_unused"] == len(shared)
    rows_a = np.flatnonzero(np.isin(a.frame_idx, shared))
    assert np.isnan(al.columns[a.track_id]["keypoints"][rows_a]).all()
    np.testing.assert_array_equal(al.columns[b.track_id]["keypoints"], pose[b.track_id].keypoints)


def test_person_without_face_track_gets_null_speaking(real):
    faces = real.face_tracks
    align0 = AlignStage().process(_copy_task(real, faces=faces)).alignment
    fid_left = next(f for f, t in align0.face_to_person.items() if t == 0)
    left_face = next(ft for ft in faces if ft.face_track_id == fid_left)
    ramp = np.linspace(-1, 1, len(left_face.frame_idx)).astype(np.float32)
    speaking = {fid_left: SpeakingTrack(fid_left, left_face.frame_idx, ramp, ramp, ramp, ramp)}
    task = AlignStage().process(_copy_task(real, faces=[left_face], speaking=speaking))
    al = task.alignment
    right = al.columns[1]
    assert np.all(right["face_track_id"] == -1)
    assert np.isnan(right["face_box"]).all()
    for c in ("asd_logit_talkset", "asd_logit_ava", "vad_prob", "speaking_score"):
        assert right[c].dtype == np.float32 and np.isnan(right[c]).all()
    assert al.stats["people_without_face"] == 1
    assert not np.isnan(al.columns[0]["speaking_score"]).any()

    # through the write stage's table: nulls for the right person, values for the left
    from talkset.stages.write import frames_table

    tbl = frames_table(task).to_pydict()
    right_rows = [i for i, t in enumerate(tbl["track_id"]) if t == 1]
    assert all(tbl["speaking_score"][i] is None and tbl["face_track_id"][i] is None for i in right_rows)
    assert all(tbl["keypoints"][i] is None for i in right_rows)  # no pose stage here


def test_speaking_lands_on_the_right_frames(real):
    faces = real.face_tracks
    align0 = AlignStage().process(_copy_task(real, faces=faces)).alignment
    fid, tid = next((f, t) for f, t in align0.face_to_person.items() if t == 1)
    ft = next(f for f in faces if f.face_track_id == fid)
    # the face track covers only frames 20..49 of the person track
    keep = (ft.frame_idx >= 20) & (ft.frame_idx < 50)
    part = _part(ft, keep)
    other = [f for f in faces if f.face_track_id != fid]
    fi = part.frame_idx
    speaking = {fid: SpeakingTrack(fid, fi, asd_logit_talkset=fi * 0.1, asd_logit_ava=-fi * 0.1,
                                   vad_prob=fi / 100.0, speaking_score=(fi - 35) / 15.0)}
    task = AlignStage().process(_copy_task(real, faces=other + [part], speaking=speaking))
    al = task.alignment
    assert al.face_to_person[fid] == tid
    col = al.columns[tid]
    tf = real.person_tracks[tid].frame_idx
    inside = (tf >= 20) & (tf < 50)
    np.testing.assert_allclose(col["speaking_score"][inside], (tf[inside] - 35) / 15.0, rtol=1e-6)
    np.testing.assert_allclose(col["vad_prob"][inside], tf[inside] / 100.0, rtol=1e-6)
    np.testing.assert_allclose(col["asd_logit_ava"][inside], -tf[inside] * 0.1, rtol=1e-6)
    assert np.isnan(col["speaking_score"][~inside]).all()
    assert np.all(col["face_track_id"][inside] == fid) and np.all(col["face_track_id"][~inside] == -1)
    assert al.stats["speaking_frames"] == int(inside.sum())


def test_overlapping_face_tracks_one_per_person(real):
    faces = real.face_tracks
    left = next(f for f in faces if np.mean(f.boxes[:, 0]) < 640)
    sl = _part
    # the same face split in two non-overlapping face tracks: both go to the left person
    a = sl(left, left.frame_idx < 40, 10)
    b = sl(left, left.frame_idx >= 40, 11)
    f2p, st = assign_faces(real.person_tracks, [a, b])
    assert f2p == {10: 0, 11: 0} and st["face_conflicts"] == 0
    # a shorter copy overlapping in time: the longer one is kept, the shorter is a conflict
    c = sl(left, left.frame_idx < 30, 12)
    f2p, st = assign_faces(real.person_tracks, [left, c])
    assert f2p == {left.face_track_id: 0} and st["face_conflicts"] == 1


def test_upper_part_of_box_preferred():
    # a seated guest's face inside the upper half of her box and the lower half of a taller,
    # overlapping box of someone standing in front: it goes to the guest
    f = np.arange(5, dtype=np.int32)
    ones = np.ones((5, 1), np.float32)
    guest = PersonTrack(0, f, ones * [[300, 100, 400, 300]], np.ones(5, np.float32), np.zeros((5, 17, 3), np.float32))
    standing = PersonTrack(1, f, ones * [[250, -100, 420, 360]], np.ones(5, np.float32), np.zeros((5, 17, 3), np.float32))
    face = _face(0, f, ones * [[330, 120, 370, 170]])
    f2p, _ = assign_faces([standing, guest], [face])
    assert f2p == {0: 0}
    # a face outside every box goes to nobody
    far = _face(1, f, ones * [[600, 10, 640, 60]])
    f2p, st = assign_faces([standing, guest], [far])
    assert f2p == {} and st["face_unassigned"] == 1


def test_no_annotations_and_malformed_pose(real):
    al = AlignStage().process(_copy_task(real)).alignment
    assert al.columns == {0: {}, 1: {}} and al.face_to_person == {}
    bad = {0: PoseTrack(0, real.person_tracks[0].frame_idx, np.zeros((len(real.person_tracks[0]), 17, 3)))}
    with pytest.raises(StageError, match="133"):
        AlignStage().process(_copy_task(real, pose=bad))
    kps, _ = assign_poses(real.person_tracks, {})
    assert all(np.isnan(v).all() for v in kps.values())
