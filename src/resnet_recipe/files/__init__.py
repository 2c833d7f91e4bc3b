"""Files at the byte level, below everything else.

atomic_files.py  outputs appear complete or not at all (write beside, then rename)
dllogger_log.py  DLLogger JSON lines, the log format of NVIDIA's later MXNet recipe
part_files.py    the part files of a pack in worker processes, and how they join
recordio.py      dmlc RecordIO framing of MXNet image records
tensorboard_events.py  TensorBoard event files of scalars, on disk at every add
user_errors.py   UserError, the error a user can fix, printed as one line by entry points
"""
