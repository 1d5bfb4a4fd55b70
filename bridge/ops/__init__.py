"""Operations: health checks, task state, the status topic, the REST API and its page,
and the command-line tools (tail, status, offsets, verify).

Kept apart from the runtime (``bridge/worker.py``) behind small hooks, so the data path
does not grow with every operational feature and these tools can run with no bridge.
"""
