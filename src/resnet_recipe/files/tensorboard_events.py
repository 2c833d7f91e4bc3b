"""TensorBoard event files of scalars, written and flushed in the caller's thread.

tensorboardX's SummaryWriter hands events to a thread through a queue and writes them to
disk up to flush_secs later; its flush() writes only what that thread has taken off the
queue. A process killed right after a training state was saved then lost events logged
before that state, which the resumed run never logs again. Here each add() is on disk (in
the operating system's cache, as the states are: a kill of the process loses none) when it
returns, and a watcher sees it at once.

The file is in TensorBoard's format (TFRecord framing of Event protocol buffers: length,
masked CRC-32C of the length, data, masked CRC-32C of the data); the protocol buffers and
the checksum are tensorboardX's, imported here only (the stage scripts' imports stay
light).

    events = ScalarEvents(folder, purge_step=121)   # a new events file in folder
    events.add({"train/loss": 2.3, "train/lr": 0.1}, step=140)
    events.close()
"""

import os
import socket
import struct
import time

EVENTS_NAME = "events.out.tfevents"


class ScalarEvents:
    """A new event file in `folder` (made if missing). With `purge_step`, TensorBoard hides
    the steps from there on written to the folder's earlier files: a resumed run's own
    steps replace those a stopped attempt logged after the resumed position."""

    def __init__(self, folder, purge_step=None):
        from tensorboardX.proto.event_pb2 import Event, SessionLog
        from tensorboardX.proto.summary_pb2 import Summary
        from tensorboardX.record_writer import masked_crc32c

        self.event, self.summary, self.checksum = Event, Summary, masked_crc32c
        os.makedirs(folder, exist_ok=True)
        self.handle = new_events_file(folder)
        self.write(Event(wall_time=time.time(), file_version="brain.Event:2"))
        if purge_step is not None:
            start = SessionLog(status=SessionLog.START)
            self.write(Event(wall_time=time.time(), step=purge_step, session_log=start))
        self.handle.flush()

    def add(self, scalars, step):
        """{tag: number} at `step`, on disk when this returns."""
        now = time.time()
        for tag, value in scalars.items():
            scalar = self.summary.Value(tag=tag, simple_value=float(value))
            summary = self.summary(value=[scalar])
            self.write(self.event(wall_time=now, step=step, summary=summary))
        self.handle.flush()

    def write(self, event):
        data = event.SerializeToString()
        length = struct.pack("<Q", len(data))
        self.handle.write(length + struct.pack("<I", self.checksum(length)))
        self.handle.write(data + struct.pack("<I", self.checksum(data)))

    def close(self):
        self.handle.close()


def new_events_file(folder):
    """A file opened for writing in `folder`, named as TensorBoard's writers name theirs
    (the time, the host) and never one that exists: two attempts of a run may start in
    the same second."""
    stem = os.path.join(folder, f"{EVENTS_NAME}.{int(time.time()):010d}.{socket.gethostname()}")
    for number in range(1000):
        try:
            return open(f"{stem}.{number}", "xb")
        except FileExistsError:
            continue
    raise FileExistsError(f"{stem}.0 to .999 all exist")
