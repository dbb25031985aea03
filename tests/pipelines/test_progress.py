"""Progress lines of a non-interactive run: one per tenth of the work (and at the end), with rate and ETA."""

import logging

from pipelines.progress import Progress, duration


def test_one_line_per_tenth_with_rate_and_eta(caplog):
    caplog.set_level(logging.INFO)
    p = Progress("shard demo", 1000, "files", logger=logging.getLogger("t"))
    for _ in range(1000):
        p.update()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10  # 10 %, 20 %, … 100 %: the log grows with the work, not per update or per second
    assert lines[0].startswith("shard demo: 100/1,000 files (10%), ") and "files/s, ETA " in lines[0]
    assert lines[-1].startswith("shard demo: 1,000/1,000 files (100%), ") and ", done in 0:0" in lines[-1]
    assert duration(3725) == "1:02:05" and duration(125) == "2:05"


def test_a_slow_tenth_still_logs_every_interval(caplog):
    caplog.set_level(logging.INFO)
    p = Progress("evaluate", 10**6, "images", every_s=0.0, logger=logging.getLogger("t"))
    p.update(3)
    assert caplog.records and "3/1,000,000 images (0%)" in caplog.records[-1].getMessage()


def test_training_progress_is_in_the_runs_totals_with_an_eta():
    from pipelines.train_loop import progress

    assert progress({"epochs": 4, "total_steps": 188}, 2, 141, 2.0) == "epoch 3/4 step 141/188 (75%), ETA 0:23"
    assert progress({"epochs": 4, "total_steps": 188}, 3, 188, 2.0) == "epoch 4/4 step 188/188 (100%)"
    # a run bounded in iterations only (UNIT, MUNIT, StarGAN v2): no epoch total
    assert progress({"epochs": None, "total_steps": 1000}, 0, 10, 0.0) == "epoch 1 step 10/1000 (1%)"
