"""CollapseMonitor in a training loop: scans every N steps, logs through accelerate's TensorBoard tracker (read back
from the event files), reports the collapse onset as it happens and asks to stop."""
import logging

import pytest
import torch
from diffusers import DDIMScheduler

from collapsecheck.errors import UsageError
from collapsecheck.monitor import CollapseMonitor, Onset, tag_safe
from helpers_models import tiny_class_unet

pytest.importorskip("accelerate")
pytest.importorskip("tensorboard")

SCAN = dict(classes=[0, 1, 2], seeds=4, steps=3, lpips=False)


def sample_scheduler():
    """A scheduler whose network predicts x0 itself: a network with a constant output is a perfect decoder."""
    return DDIMScheduler(prediction_type="sample", clip_sample=False)


def become_a_decoder(model):
    """Every seed now gives the same image: the output no longer depends on x_t (nor on the class)."""
    with torch.no_grad():
        model.conv_out.weight.zero_()


def train_step(model, optimizer):
    x = torch.randn(4, 1, 8, 8)
    loss = model(x, torch.full((4,), 10), class_labels=torch.tensor([0, 1, 2, 3])).sample.pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(folder.rglob("events.out.tfevents.*"))
    assert files, f"no event file under {folder}"
    acc = EventAccumulator(str(files[0].parent), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def scalar(acc, tag):
    return {e.step: e.value for e in acc.Scalars(tag)}


def test_monitor_logs_through_accelerate_and_reports_the_onset(tmp_path, caplog):
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True, log_with="tensorboard", project_dir=str(tmp_path))
    accelerator.init_trackers("run")
    model = tiny_class_unet(seed=1).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    onsets = []
    monitor = CollapseMonitor(every=2, early_stop=True, on_onset=onsets.append, **SCAN)
    records = {}
    with caplog.at_level(logging.WARNING, logger="collapsecheck.monitor"):
        for step in range(5):
            train_step(model, optimizer)
            if step == 3:
                become_a_decoder(model)
            record = monitor.step(step, model, sample_scheduler(), accelerator=accelerator)
            if record is not None:
                records[step] = record
                assert model.training  # the loop's model is handed back in train mode
            if monitor.should_stop:
                break
    accelerator.end_training()

    assert sorted(records) == [0, 2, 4]
    assert [records[s].verdict for s in (0, 2, 4)] == ["healthy", "healthy", "collapsed"]
    assert monitor.onset == onsets[0] and isinstance(onsets[0], Onset)
    assert (onsets[0].step, onsets[0].verdict, onsets[0].previous_step) == (4, "collapsed", 2)
    assert monitor.should_stop
    assert any("collapse onset at step 4" in r.getMessage() for r in caplog.records)
    assert records[0].cost_fraction is None and records[2].cost_fraction > 0
    assert records[2].cost_fraction == pytest.approx(records[2].scan_seconds / records[2].train_seconds)

    acc = events(tmp_path / "run")
    assert scalar(acc, "collapsecheck/verdict_level") == {0: 0.0, 2: 0.0, 4: 2.0}
    assert scalar(acc, "collapsecheck/onset_step") == {4: 4.0}
    assert scalar(acc, "collapsecheck/pixel_rms")[4] < 1e-3 < scalar(acc, "collapsecheck/pixel_rms")[2]
    assert scalar(acc, "collapsecheck/pixel_rms")[0] == pytest.approx(records[0].scalars["pixel_rms"], rel=1e-5)
    # the decoder's guidance level, as its scan judged it (a decoder that reads its condition perfectly at every
    # w holds adherence at its ceiling; issue 12's definition decides, not the null branch)
    from collapsecheck.monitor import GUIDANCE_LEVELS
    assert scalar(acc, "collapsecheck/guidance_level")[4] == GUIDANCE_LEVELS[records[4].result.guidance.verdict]
    assert set(scalar(acc, "collapsecheck/cost_fraction")) == {2, 4}
    share = scalar(acc, "collapsecheck/seed_share/00_class_0")
    assert {0, 2} <= set(share) and share[0] == pytest.approx(records[0].result.conditions[0].seed_share, rel=1e-5)
    assert "collapsecheck/null_residual" in acc.Tags()["scalars"]
    assert "collapsecheck/eps_ratio" in acc.Tags()["scalars"]
    sheets = acc.Images("collapsecheck/contact_sheet")
    assert [s.step for s in sheets] == [0, 2, 4] and sheets[0].width > 100


def test_monitor_writes_a_summary_writer_folder_without_accelerate(tmp_path):
    model = tiny_class_unet(seed=2)
    monitor = CollapseMonitor(every=1, log_dir=str(tmp_path / "tb"), images=False, onset="collapsed", **SCAN)
    monitor(0, model, sample_scheduler())
    assert monitor(0, model, sample_scheduler()) is None and len(monitor.history) == 1  # gradient accumulation
    become_a_decoder(model)
    monitor(1, model, sample_scheduler())
    monitor.close()
    assert monitor.onset.step == 1 and not monitor.should_stop  # early_stop is off by default
    acc = events(tmp_path / "tb")
    assert scalar(acc, "collapsecheck/verdict_level") == {0: 0.0, 1: 2.0}
    assert "collapsecheck/onset/text_summary" in acc.Tags()["tensors"]  # add_text


def test_steps_between_scans_do_nothing():
    monitor = CollapseMonitor(every=100, **SCAN)
    assert monitor(7, object()) is None and monitor.history == []


@pytest.mark.parametrize("kwargs, words", [
    (dict(every=0), "CollapseMonitor(every=...): must be a positive int"),
    (dict(early_stop="soon"), "CollapseMonitor(early_stop=...): must be 'at_risk' or 'collapsed'"),
    (dict(onset="healthy"), "CollapseMonitor(onset=...): must be 'at_risk' or 'collapsed'"),
])
def test_bad_settings_are_one_line(kwargs, words):
    with pytest.raises(UsageError) as err:
        CollapseMonitor(**kwargs)
    assert words in str(err.value)


def test_tags_are_safe():
    assert tag_safe("a photo of a cat, 4k!") == "a_photo_of_a_cat_4k"
    assert tag_safe("!!!") == "cond"


def test_the_worked_example_runs_and_logs_through_accelerates_tracker(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, str(root / "examples" / "monitor" / "train_with_monitor.py"), "--out",
                          str(tmp_path), "--steps", "2", "--every", "2", "--seeds", "2"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "step    0: healthy" in run.stdout  # digits-healthy before any fine-tuning
    assert "TensorBoard files:" in run.stdout.splitlines()[-1]
    acc = events(tmp_path / "train_with_monitor")
    assert set(scalar(acc, "collapsecheck/verdict_level")) == {0, 2}
    assert set(scalar(acc, "train/loss")) == {0, 1}
    assert len(scalar(acc, "collapsecheck/pixel_rms/00_class_0")) == 2
