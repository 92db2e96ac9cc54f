"""How the docker runtime makes whole lines of an engine's log frames: each stream
joined on its own, long lines cut, unfinished ones ended where the output ends, and
a tail counted over lines."""

from __future__ import annotations

from moorage.runtimes.docker_logs import STDERR, STDOUT, LineAssembler, backlog


def test_a_line_written_in_pieces_is_one_line() -> None:
    lines = LineAssembler()

    assert lines.feed(STDOUT, b"four") == []
    assert lines.feed(STDOUT, b"\n") == [b"four\n"]
    assert lines.flush() == []


def test_a_stderr_line_amid_a_half_written_stdout_line_stays_apart() -> None:
    lines = LineAssembler()

    assert lines.feed(STDOUT, b"from-6de49760 ") == []
    assert lines.feed(STDERR, b"Serving HTTP on 0.0.0.0 port 8000\n") == [
        b"Serving HTTP on 0.0.0.0 port 8000\n"
    ]
    assert lines.feed(STDOUT, b"\n") == [b"from-6de49760 \n"]


def test_several_lines_in_one_frame_and_the_rest_waits() -> None:
    lines = LineAssembler()

    assert lines.feed(STDOUT, b"a\nb\nc") == [b"a\n", b"b\n"]
    assert lines.feed(STDOUT, b"d\n") == [b"cd\n"]


def test_unfinished_lines_end_where_the_output_ends_first_begun_first() -> None:
    lines = LineAssembler()
    lines.feed(STDERR, b"err")
    lines.feed(STDOUT, b"out")

    assert lines.flush() == [b"err\n", b"out\n"]
    assert lines.flush() == []


def test_a_line_without_newlines_is_cut() -> None:
    lines = LineAssembler(max_line_bytes=4)

    assert lines.feed(STDOUT, b"abcdefghij") == [b"abcd\n", b"efgh\n"]
    assert lines.flush() == [b"ij\n"]


FRAMES = [(STDOUT, b"a\nb\n"), (STDOUT, b"c"), (STDERR, b"e\n"), (STDOUT, b"d\n"), (STDOUT, b"x")]


def test_a_tail_counts_whole_lines_not_frames() -> None:
    # Podman's own tail makes "b\nc" + "d\n" into "bc\n", "d\n".
    lines, count = backlog(iter(FRAMES), 3, LineAssembler(), ended=True)

    assert lines == [b"e\n", b"cd\n", b"x\n"]
    assert count == len(FRAMES)


def test_all_lines_without_a_tail() -> None:
    lines, _ = backlog(iter(FRAMES), None, LineAssembler(), ended=True)

    assert lines == [b"a\n", b"b\n", b"e\n", b"cd\n", b"x\n"]


def test_a_follower_keeps_the_unfinished_line_for_what_comes_next() -> None:
    assembler = LineAssembler()
    lines, _ = backlog(iter(FRAMES), 2, assembler, ended=False)

    assert lines == [b"e\n", b"cd\n"]
    assert assembler.feed(STDOUT, b"y\n") == [b"xy\n"]
