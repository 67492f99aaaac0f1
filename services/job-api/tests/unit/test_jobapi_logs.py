"""The text form of execution logs."""

from __future__ import annotations

from automation_job_api.domain.logs import LogBatch, render_log


def _entry(ts: str, stream: str, step: str | None, text: str) -> dict[str, str | None]:
    return {"ts": ts, "stream": stream, "step": step, "text": text}


def test_entries_are_lines_ordered_by_attempt_then_seq_with_attempt_headers() -> None:
    batches = [
        LogBatch(2, 0, [_entry("2026-01-01T00:00:05Z", "stdout", "build", "second try")]),
        LogBatch(1, 1, [_entry("2026-01-01T00:00:02Z", "stderr", "build", "boom")]),
        LogBatch(
            1,
            0,
            [
                _entry("2026-01-01T00:00:00Z", "system", None, "starting"),
                _entry("2026-01-01T00:00:01Z", "stdout", "build", "hello"),
            ],
        ),
    ]
    assert render_log(batches) == (
        "--- attempt 1 ---\n"
        "2026-01-01T00:00:00Z system [-] starting\n"
        "2026-01-01T00:00:01Z stdout [build] hello\n"
        "2026-01-01T00:00:02Z stderr [build] boom\n"
        "--- attempt 2 ---\n"
        "2026-01-01T00:00:05Z stdout [build] second try\n"
    )


def test_a_truncated_batch_is_marked_and_an_empty_log_is_empty_text() -> None:
    assert render_log([]) == ""
    text = render_log([LogBatch(1, 3, [_entry("t", "stdout", "s", "tail")], truncated=True)])
    assert text == "--- attempt 1 ---\n--- output truncated ---\nt stdout [s] tail\n"


def test_the_truncation_marker_stands_once_per_attempt_where_the_cut_is() -> None:
    """Every batch from the cut on is flagged; the text shows the marker once, before the first of them."""
    batches = [
        LogBatch(1, 0, [_entry("t0", "stdout", "s", "kept")]),
        LogBatch(1, 1, [_entry("t1", "system", "s", "[log truncated] output beyond 10 bytes is dropped")], True),
        LogBatch(1, 2, [_entry("t2", "system", "s", "step s succeeded")], truncated=True),
        LogBatch(2, 0, [_entry("t3", "stdout", "s", "again")], truncated=True),
        LogBatch(2, 1, [_entry("t4", "system", "s", "step s succeeded")], truncated=True),
    ]
    assert render_log(batches) == (
        "--- attempt 1 ---\n"
        "t0 stdout [s] kept\n"
        "--- output truncated ---\n"
        "t1 system [s] [log truncated] output beyond 10 bytes is dropped\n"
        "t2 system [s] step s succeeded\n"
        "--- attempt 2 ---\n"
        "--- output truncated ---\n"
        "t3 stdout [s] again\n"
        "t4 system [s] step s succeeded\n"
    )
