"""Video tasks: clip generation, the PyAV → decord file path, synthetic tasks, LongVideoBench and MLVU loaders."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from namm_suite.tasks import TASKS, TaskContext, TaskDataError
from namm_suite.tasks.video.clips import (
    CHANCE,
    COLORS,
    KINDS,
    NUMBERS,
    SHAPES,
    clip_rng,
    make_clip,
    spaced_indices,
)
from namm_suite.tasks.video.frames import frame_count, read_frames, uniform_indices, write_video
from namm_suite.tasks.video.prompts import chosen_letter, letter_accuracy, longvideobench_prompt, mlvu_prompt


def gradient_clip(n: int = 12, size: int = 32) -> np.ndarray:
    """Frames whose brightness encodes their index (so sampling can be checked after H.264)."""
    return np.stack([np.full((size, size, 3), 10 + 20 * i, np.uint8) for i in range(n)])


# ---- clips -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(KINDS))
def test_clips_are_deterministic_and_answerable(kind):
    a, b = (make_clip(kind, clip_rng(0, 1, 2, 3), 32, 32) for _ in range(2))
    assert np.array_equal(a.frames, b.frames) and a.question == b.question and a.answer == b.answer
    assert a.frames.shape == (32, 32, 32, 3) and a.frames.dtype == np.uint8
    other = make_clip(kind, clip_rng(1, 1, 2, 3), 32, 32)  # the training stream differs
    assert not np.array_equal(a.frames, other.frames)


def test_clip_contents_match_their_answers():
    needle = make_clip("needle", clip_rng(0, 5), 16, 32)
    frame = needle.frames[needle.metadata["needle_frame"]].reshape(-1, 3).astype(int)
    color = np.array(COLORS[needle.metadata["color"]])
    assert (np.abs(frame - color).sum(1) == 0).sum() > 50  # the shape's pixels carry its exact colour
    assert needle.answer in (needle.metadata["color"], needle.metadata["shape"])
    count = make_clip("count", clip_rng(0, 6), 32, 32)
    bright = [i for i, f in enumerate(count.frames) if f.mean() > 200]
    assert bright == count.metadata["flash_frames"] and count.answer == NUMBERS[len(bright) - 1]
    order = make_clip("order", clip_rng(0, 7), 32, 32)
    assert order.answer == order.metadata["first"] and order.metadata["second"] in order.question
    assert set(CHANCE) == set(KINDS) and CHANCE["needle"] == pytest.approx((1 / 4 + 1 / len(SHAPES)) / 2)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 200), k=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_spaced_indices_are_spaced_and_in_range(n, k, seed):
    if n < 3 * k - 2:
        with pytest.raises(ValueError, match="cannot hold"):
            spaced_indices(np.random.default_rng(seed), n, k)
        return
    idx = spaced_indices(np.random.default_rng(seed), n, k)
    assert len(idx) == k and idx == sorted(idx) and 0 <= idx[0] and idx[-1] < n
    assert all(b - a >= 3 for a, b in itertools.pairwise(idx))  # two other frames between events


# ---- files ---------------------------------------------------------------------------------------------
def test_write_then_read_round_trip_and_uniform_sampling(tmp_path):
    frames = gradient_clip()
    path = write_video(tmp_path / "clip.mp4", frames)
    assert frame_count(path) == 12
    decoded = read_frames(path)
    assert decoded.shape == frames.shape and np.abs(decoded.astype(int) - frames).mean() < 3
    sampled = read_frames(path, 4)
    assert np.array_equal(uniform_indices(12, 4), [1, 4, 7, 10])
    assert np.abs(sampled.astype(int) - frames[[1, 4, 7, 10]]).mean() < 3


@settings(max_examples=100, deadline=None)
@given(total=st.integers(1, 5000), n=st.integers(1, 5000))
def test_uniform_indices_are_increasing_and_in_range(total, n):
    if n > total:
        return
    idx = uniform_indices(total, n)
    assert len(idx) == n and idx[0] >= 0 and idx[-1] < total and np.all(np.diff(idx) > 0)


def test_bad_video_files_name_the_file_and_field(tmp_path):
    with pytest.raises(TaskDataError, match=r"missing\.mp4: field 'video': video file not found"):
        read_frames(tmp_path / "missing.mp4", 4)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video at all" * 100)
    with pytest.raises(TaskDataError, match=r"corrupt\.mp4: field 'video': cannot open video"):
        read_frames(corrupt, 4)
    path = write_video(tmp_path / "short.mp4", gradient_clip(6))
    with pytest.raises(TaskDataError, match=r"short\.mp4: field 'frames': asked for 9 frames but the clip has only 6"):
        read_frames(path, 9)


# ---- synthetic tasks -----------------------------------------------------------------------------------
def test_synthetic_tasks_write_clips_once_and_score_exact_words(tmp_path):
    context = TaskContext(seed=3, limit=2, data_path=tmp_path, options={"frames": 16})
    task = TASKS.get("video_order")()
    episodes = task.episodes(context)
    assert [e.episode_id for e in episodes] == ["s3-0", "s3-1"]
    assert all(e.inputs["frames"] == 16 and read_frames(e.inputs["video"]).shape[0] == 16 for e in episodes)
    mtime = [tmp_path.joinpath(p).stat().st_mtime_ns for p in sorted(tmp_path.iterdir())]
    again = task.episodes(context)
    assert again == episodes and mtime == [p.stat().st_mtime_ns for p in sorted(tmp_path.iterdir())]
    answer = episodes[0].references[0]
    assert task.score(f" {answer.upper()} ", episodes[0]) == 1.0
    assert task.score("", episodes[0]) == 0.0 and task.score(f"not {answer}", episodes[0]) == 0.0
    with pytest.raises(TaskDataError, match="field 'frames'"):
        TASKS.get("video_needle")().episodes(TaskContext(data_path=tmp_path, options={"frames": 2}))


# ---- multiple choice -------------------------------------------------------------------------------------
def test_prompts_follow_the_benchmarks_and_letters_are_parsed():
    assert longvideobench_prompt("Q?", ["x", "y"]) == (
        "Question: Q?\nA. x\nB. y\nAnswer with the option's letter from the given choices directly.")
    assert mlvu_prompt("Q?", ["x", "y"]) == "Question: Q?\nOptions:\n(A) x\n(B) y\nOnly give the best option."
    assert chosen_letter("(B) y", 4) == "B" and chosen_letter("b.", 4) == "B" and chosen_letter("I think C", 4) == "C"
    assert chosen_letter("E", 4) is None and letter_accuracy("A", "A", 2) == 1.0 and letter_accuracy("", "A", 2) == 0.0


def write_longvideobench(root, records):
    (root / "videos").mkdir(parents=True, exist_ok=True)
    write_video(root / "videos" / "v1.mp4", gradient_clip(10))
    (root / "lvb_val.json").write_text(json.dumps(records))
    return root


LVB_RECORD = {"id": "q1", "video_path": "v1.mp4", "question": "What?", "candidates": ["a", "b", "c", "d"],
              "correct_choice": 2, "duration": 1.2, "duration_group": 15, "question_category": "S2E"}


def test_longvideobench_loader_reads_the_published_fields(tmp_path):
    root = write_longvideobench(tmp_path, [LVB_RECORD, {**LVB_RECORD, "id": "q2", "correct_choice": 0}])
    task = TASKS.get("longvideobench")()
    episodes = task.episodes(TaskContext(data_path=root, options={"frames": 5}))
    assert [e.episode_id for e in episodes] == ["q1", "q2"] and [e.references for e in episodes] == [("C",), ("A",)]
    first = episodes[0]
    assert first.inputs["video"] == str(root / "videos" / "v1.mp4") and first.inputs["frames"] == 5
    assert first.inputs["question"].startswith("Question: What?\nA. a\n")
    assert first.metadata == {"duration": 1.2, "duration_group": 15, "question_category": "S2E"}
    assert task.score("C", first) == 1.0 and task.score("(A)", first) == 0.0
    assert len(task.episodes(TaskContext(data_path=root / "lvb_val.json", limit=1))) == 1


@pytest.mark.parametrize("change, field", [
    ({"question": None}, "question"), ({"candidates": ["only"]}, "candidates"), ({"correct_choice": 7}, "correct_choice"),
    ({"video_path": 3}, "video_path"),
])
def test_longvideobench_bad_record_becomes_an_invalid_episode(tmp_path, change, field):
    bad = {k: v for k, v in {**LVB_RECORD, **change}.items() if v is not None}
    root = write_longvideobench(tmp_path, [LVB_RECORD, bad])
    good, invalid = TASKS.get("longvideobench")().episodes(TaskContext(data_path=root))
    good.check()
    message = invalid.error
    assert good.error is None and invalid.inputs == {}
    assert "lvb_val.json" in message and "record 1 (q1)" in message and f"field {field!r}" in message
    with pytest.raises(TaskDataError, match=f"field '{field}'"):
        invalid.check()
    with pytest.raises(TaskDataError, match=f"field '{field}'"):
        TASKS.get("longvideobench")().episodes(TaskContext(data_path=root, options={"strict": True}))


def test_longvideobench_missing_or_malformed_annotation_raises(tmp_path):
    with pytest.raises(TaskDataError, match="lvb_val.json"):
        TASKS.get("longvideobench")().episodes(TaskContext(data_path=tmp_path))
    (tmp_path / "lvb_val.json").write_text('{"not": "a list"}')
    with pytest.raises(TaskDataError, match="expected a JSON list"):
        TASKS.get("longvideobench")().episodes(TaskContext(data_path=tmp_path))


def write_mlvu(root):
    for stem, records in {
        "2_needle": [{"video": "n1.mp4", "question": "Which?", "candidates": ["red", "blue"], "answer": "blue",
                      "question_type": "findNeedle", "duration": 1.0}],
        "4_count": [{"video": "c1.mp4", "question": "How many?", "candidates": ["1", "2", "3"], "answer": "1"},
                    {"video": "c1.mp4", "question": "How many?", "candidates": ["1", "2"], "answer": "5"}],
        "9_summary": [{"video": "s.mp4", "question": "Summarise", "answer": "text"}],
    }.items():
        (root / "json").mkdir(parents=True, exist_ok=True)
        (root / "json" / f"{stem}.json").write_text(json.dumps(records))
        (root / "video" / stem).mkdir(parents=True, exist_ok=True)
        for name in {r["video"] for r in records}:
            write_video(root / "video" / stem / name, gradient_clip(8))
    return root


def test_mlvu_loader_reads_every_multiple_choice_file(tmp_path):
    root = write_mlvu(tmp_path)
    task = TASKS.get("mlvu")()
    episodes = task.episodes(TaskContext(data_path=root))
    assert [e.episode_id for e in episodes] == ["2_needle-0", "4_count-0", "4_count-1"]  # summary skipped
    needle, count, bad = episodes
    assert needle.references == ("B",) and needle.metadata["question_type"] == "findNeedle"
    assert needle.inputs["video"] == str(root / "video" / "2_needle" / "n1.mp4")
    assert needle.inputs["question"] == "Question: Which?\nOptions:\n(A) red\n(B) blue\nOnly give the best option."
    assert count.metadata["question_type"] == "4_count" and count.references == ("A",)
    assert "4_count.json" in bad.error and "field 'answer'" in bad.error
    assert task.score("(B) blue", needle) == 1.0 and task.score("A", needle) == 0.0
    one_file = task.episodes(TaskContext(data_path=root / "json" / "2_needle.json"))
    assert [e.episode_id for e in one_file] == ["2_needle-0"]
    assert len(task.episodes(TaskContext(data_path=root, limit=2))) == 2


def test_read_frames_falls_back_to_pyav_without_decord(tmp_path, monkeypatch):
    """Without decord (no wheel on this platform) frames are read with PyAV: same count, sampling and pixels
    (up to the two decoders' YUV→RGB rounding)."""
    frames = np.stack([np.full((32, 32, 3), 20 * i, dtype=np.uint8) for i in range(10)])
    path = write_video(tmp_path / "clip.mp4", frames)
    with_decord = read_frames(path, 4)
    monkeypatch.setitem(__import__("sys").modules, "decord", None)  # `import decord` now raises ImportError
    with_pyav = read_frames(path, 4)
    assert frame_count(path) == 10 and with_pyav.shape == with_decord.shape == (4, 32, 32, 3)
    assert np.abs(with_pyav.astype(int) - with_decord.astype(int)).max() <= 3
    with pytest.raises(TaskDataError, match="asked for 11 frames"):
        read_frames(path, 11)
