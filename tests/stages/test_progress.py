"""The training loop's progress lines tell the truth: interval rates of finished work and
a run ETA that includes validation and the later epochs."""

import logging
import re

from helpers.tiny import TINY_PIPELINE, TINY_SETTINGS, tiny_job

from resnet_recipe.training import run as training

PROGRESS = re.compile(
    r"epoch (\d+)/\d+ batch \d+/\d+ \| ([\d.]+) img/s .* run [\d:]+ \(([\d.]+) s\)(.*)$"
)
DONE = re.compile(r"epoch (\d+)/\d+ done: .* \| ([\d.]+) img/s \|")


def test_progress_rates_and_run_eta_match_the_finished_run(tiny_data, tmp_path, caplog):
    # Long enough batches (32 px) that an interval is well above the clock's resolution.
    settings = TINY_SETTINGS.replace(epochs=5, log_interval=2)
    job = tiny_job(
        tiny_data,
        tmp_path,
        settings,
        pipeline_settings=TINY_PIPELINE.replace(image_size=32, val_resize=36),
    )
    with caplog.at_level(logging.INFO, logger="resnet_recipe"):
        training.train(job)
    lines = [(record.created, record.getMessage()) for record in caplog.records]
    progress = [(when, PROGRESS.search(text)) for when, text in lines if PROGRESS.search(text)]
    done = {int(m[1]): (when, float(m[2])) for when, text in lines if (m := DONE.search(text))}
    assert sorted(done) == [1, 2, 3, 4, 5] and len(progress) == 5 * 3
    end = done[5][0]
    # No forecast beats the machine: on a machine shared with other work the epochs' own
    # rates drift, and the tolerance widens by that drift (on a quiet machine it is ~0).
    rates = [done[epoch][1] for epoch in range(2, 6)]
    drift = (max(rates) - min(rates)) / min(rates)
    checked = 0
    for when, match in progress:
        epoch, rate, eta, note = int(match[1]), float(match[2]), float(match[3]), match[4]
        assert (note == " (training only)") == (epoch == 1)
        if epoch == 1:
            continue
        left = end - when  # 0.05 s: the ETA is logged to 0.1 s
        assert abs(eta - left) <= (0.1 + drift) * left + 0.05, (epoch, eta, left, drift)
        epoch_rate = done[epoch][1]
        assert abs(rate - epoch_rate) <= (0.2 + drift) * epoch_rate, (epoch, rate, epoch_rate)
        checked += 1
    assert checked == 4 * 3
