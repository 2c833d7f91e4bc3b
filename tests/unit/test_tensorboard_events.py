"""TensorBoard event files as TensorBoard's own reader reads them: every add on disk when
it returns, a second file in the same second beside the first, and a purge step that
hides the steps an earlier file logged from there on."""

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from resnet_recipe.files.tensorboard_events import ScalarEvents


def read_scalars(folder, tag):
    events = EventAccumulator(str(folder))
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def test_each_add_is_read_back_before_the_file_is_closed(tmp_path):
    events = ScalarEvents(tmp_path)
    events.add({"train/loss": 2.5, "train/lr": 0.25}, step=1)
    events.add({"train/loss": 1.5, "train/lr": 0.125}, step=2)
    assert read_scalars(tmp_path, "train/loss") == [(1, 2.5), (2, 1.5)]
    assert read_scalars(tmp_path, "train/lr") == [(1, 0.25), (2, 0.125)]  # float32: exact here
    events.close()


def test_a_resumed_writer_purges_the_steps_from_its_position(tmp_path):
    stopped = ScalarEvents(tmp_path)
    for step in range(1, 6):
        stopped.add({"train/loss": float(step)}, step)
    # No close: a process killed without warning.
    resumed = ScalarEvents(tmp_path, purge_step=4)
    resumed.add({"train/loss": 40.0}, 4)
    resumed.add({"train/loss": 50.0}, 5)
    resumed.close()
    assert len(list(tmp_path.iterdir())) == 2
    assert read_scalars(tmp_path, "train/loss") == [(1, 1), (2, 2), (3, 3), (4, 40), (5, 50)]
