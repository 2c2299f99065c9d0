"""Sources on real files, FIFOs and videos: order, pacing, newest-frame dropping, hostile lines."""
from __future__ import annotations

import os
import sqlite3

import cv2
import numpy as np
import pytest

from drivers.sources import SourceError, TextScan
from drivers.sources.camera import FrameSource
from drivers.sources.frames import CaptureReader, replay_reader
from drivers.sources.lines import LineSplitter, LinesSource
from edge.common.backoff import Backoff

from .conftest import qr_image
from .waiting import wait_until


def drain(source, limit=1000, timeout=0.5):
    items = []
    while not source.finished and len(items) < limit:
        item = source.get(timeout)
        if item is not None:
            items.append(item)
    return items


def test_splitter_terminators_caps_and_chunks():
    s = LineSplitter(max_line=8)
    assert s.feed(b"one\r\ntwo\rthr") == [b"one", b"two"]
    assert s.feed(b"ee\n\n\r\n") == [b"three"]
    assert s.feed(b"0123456789ABCDEF" * 1000) == []
    assert s.feed(b"tail\nnext\n") == [b"01234567", b"next"]  # capped at 8 bytes, the rest dropped
    assert s.feed(b"   \n") == []
    assert s.feed(b"last") == [] and s.flush() == [b"last"]


def test_lines_from_a_file_end_at_eof(tmp_path):
    path = tmp_path / "scans.txt"
    path.write_bytes(b"A1\r\nPh\xe1\xba\xa1m\n\n\xff\xfe binary\n" + b"x" * 100_000 + b"\nlast")
    source = LinesSource(str(path), max_line=2049)
    source.start()
    items = drain(source)
    source.close()
    assert [i.data for i in items] == [b"A1", "Phạm".encode(), b"\xff\xfe binary", b"x" * 2049, b"last"]
    assert all(isinstance(i, TextScan) for i in items) and source.finished


def test_fifo_survives_writers_coming_and_going(tmp_path):
    fifo = tmp_path / "scanner.fifo"
    os.mkfifo(fifo)
    source = LinesSource(str(fifo), max_line=100)
    source.start()
    taken = []
    for batch, count in ((b"first\n", 1), (b"second\nthird\n", 2)):
        with open(fifo, "wb") as writer:
            writer.write(batch)
        # The writer is gone before the lines are taken: a writer leaving is no end of the FIFO.
        taken += [source.get(10.0).data for _ in range(count)]
        assert not source.finished
    assert taken == [b"first", b"second", b"third"]
    assert source.get(0.0) is None and not source.finished  # nothing more, and no end: the next writer may come
    source.close()


def test_missing_lines_path_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="cannot open"):
        LinesSource(str(tmp_path / "nope"), max_line=10).start()


@pytest.fixture
def frames_dir(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (1, 2, 10):
        cv2.imwrite(str(folder / f"f{i}.png"), qr_image(f"code-{i}"))
    (folder / "notes.md").write_text("not an image")
    return folder


def test_replay_folder_in_natural_order_every_frame(frames_dir):
    from edge.decode.reader import make_decoder

    source = FrameSource(replay_reader(str(frames_dir)), name="r")
    source.start()
    frames = drain(source)
    decoder = make_decoder("zxing")
    assert [decoder.decode(f.image)[0].text for f in frames] == ["code-1", "code-2", "code-10"]
    assert [f.index for f in frames] == [1, 2, 3] and source.stats.dropped == 0


def test_replay_list_file_skips_unreadable_and_loops(tmp_path, frames_dir):
    listing = tmp_path / "list.txt"
    (tmp_path / "broken.png").write_bytes(b"nope")
    listing.write_text("# frames\nframes/f2.png\nbroken.png\nframes/f1.png\n")
    source = FrameSource(replay_reader(str(listing)), name="r", loop=True)
    source.start()
    frames = [source.get(0.1) for _ in range(5)]
    assert all(f is not None for f in frames) and not source.finished
    assert source.reader.skipped >= 2


def test_paced_replay_drops_stale_frames_for_a_slow_consumer(frames_dir):
    source = FrameSource(replay_reader(str(frames_dir)), name="r", fps=100, loop=True)
    source.start()
    try:  # nothing takes frames meanwhile: a decoder that fell behind
        wait_until(lambda: source.stats.dropped >= 10, 30, what="stale frames dropped", interval=0.1)
        frame = source.get(1)
    finally:
        source.close()
    assert frame is not None and source.stats.dropped >= 10  # kept the newest, dropped the rest


def test_paced_replay_once_finishes(frames_dir):
    source = FrameSource(replay_reader(str(frames_dir)), name="r", fps=50)
    source.start()
    frames = drain(source)
    assert 1 <= len(frames) <= 3 and source.finished


def write_video(path, texts, size=(320, 320)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size, False)
    for text in texts:
        writer.write(qr_image(text, size=size) if text else np.full(size, 200, np.uint8))
    writer.release()


def test_video_file_replay_and_opencv_source_share_the_capture_path(tmp_path):
    from drivers.sources import open_source
    from edge.settings.schema import parse_settings

    video = tmp_path / "clip.avi"
    write_video(video, ["v1", None, "v2"])
    for table in ({"type": "replay", "path": str(video), "fps": 0}, {"type": "opencv", "device": str(video)}):
        source = open_source(parse_settings({"source": table}).source, max_line=10)
        assert isinstance(source.reader, CaptureReader)
        source.start()
        assert len(drain(source)) == 3


def test_bad_replay_targets(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no image files"):
        replay_reader(str(empty))
    not_video = tmp_path / "x.mp4"
    not_video.write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceError, match="cannot open"):
        FrameSource(replay_reader(str(not_video)), name="v").start()
    with pytest.raises(SourceError, match="does not exist"):
        FrameSource(replay_reader(str(tmp_path / "gone.avi")), name="v").start()


def test_missing_camera_keeps_trying_and_closes_promptly():
    source = FrameSource(CaptureReader("/dev/video-not-here"), name="cam", live=True,
                         backoff=Backoff(initial=60, maximum=60))
    source.start()
    wait_until(lambda: source.backoff.attempts >= 1, 30, what="the wait before opening the camera again")
    assert source.get(0.0) is None and not source.finished
    assert source.stats.state in ("missing", "reopening")
    source.close()  # within the minute's wait: close() wakes the thread rather than waiting it out
    assert not source._thread.is_alive()


def read_rest(fd) -> bytes:
    """Whatever is still in a FIFO, read through the test's own non-blocking end."""
    rest = b""
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return rest
        if not data:
            return rest
        rest += data


def test_lines_source_reads_no_further_than_what_was_asked_for(tmp_path):
    """The pipe is the queue: after k lines were taken, exactly the lines after them are still in the FIFO."""
    fifo = tmp_path / "scanner.fifo"
    os.mkfifo(fifo)
    keep = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # the test's end: keeps the pipe, and what is in it
    try:
        lines = [f"burst-{i:04d}".encode() for i in range(500)]
        os.write(keep, b"".join(line + b"\n" for line in lines))
        for k in (0, 1, 7, 3):
            source = LinesSource(str(fifo), max_line=100)
            source.start()
            taken = [source.get(10.0).data for _ in range(k)]
            source.close()
            assert taken == lines[:k]
            lines = lines[k:]
            rest = read_rest(keep)
            assert rest == b"".join(line + b"\n" for line in lines)
            os.write(keep, rest)  # back in the pipe, in order, for the next round
    finally:
        os.close(keep)


def test_a_killed_daemon_leaves_every_unhandled_line_in_the_fifo(tmp_path, make_config):
    """SIGKILL in a burst loses at most the line in hand: what was not recorded is still in the pipe."""
    from .conftest import checkpoint_process

    fifo = tmp_path / "scanner.fifo"
    os.mkfifo(fifo)
    config = make_config(f'[source]\ntype = "lines"\npath = "{fifo}"\n', mode="record", debounce_ms=0)
    keep = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    lines = [f"burst-{i:04d}" for i in range(3000)]  # 33 KB: within the pipe's 64 KB
    burst = "".join(line + "\n" for line in lines).encode()
    os.write(keep, burst)
    db_path = tmp_path / "state" / "entries.db"

    def recorded() -> list[str]:
        if not db_path.exists():
            return []
        db = sqlite3.connect(db_path)
        try:
            return [row[0] for row in db.execute("SELECT code FROM entries ORDER BY seq")]
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()

    proc = checkpoint_process("run", "--config", config)
    try:
        wait_until(lambda: len(recorded()) >= 20, 60, what="entries recorded")
    finally:
        proc.kill()
        proc.wait(30)
    rest = read_rest(keep)
    os.close(keep)
    done = recorded()
    assert done == lines[:len(done)] and len(done) < len(lines)
    unrecorded = "".join(line + "\n" for line in lines[len(done):]).encode()
    # The rest is exactly the lines not recorded, but for (part of) the one the daemon had in hand.
    assert unrecorded.endswith(rest)
    assert len(unrecorded) - len(rest) <= len(lines[len(done)]) + 1


def test_a_line_without_end_waits_in_the_source_between_calls(tmp_path):
    """A writer streaming bytes with no line end cannot hold the pipeline: get() gives up at its timeout,
    keeping the part read, and the line comes out whole (capped) once it ends."""
    fifo = tmp_path / "scanner.fifo"
    os.mkfifo(fifo)
    keep = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    source = LinesSource(str(fifo), max_line=100)
    source.start()
    try:
        os.write(keep, b"x" * 5000)
        assert source.get(0.0) is None and source.get(0.0) is None
        os.write(keep, b"\nnext\n")
        assert [source.get(10.0).data for _ in range(2)] == [b"x" * 100, b"next"]
        assert read_rest(keep) == b""
    finally:
        source.close()
        os.close(keep)
