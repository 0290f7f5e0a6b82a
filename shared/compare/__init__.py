"""Lesson 08: the task queues side by side, on the same Redis, each run as its users run it.

One module per candidate (``celery_queue``, ``rq_queue``, ``huey_queue``, ``arq_queue``), each
with a class that follows :class:`shared.compare.base.Candidate`: it starts the tool's own
worker command as a child process, sends the same two jobs (``noop`` and ``sleep``), and
lets :mod:`shared.compare.base` count what ran, from Redis, as the jobs record it
themselves. Each candidate keeps to a key prefix (or Redis database) of its own, and leaves
nothing behind.
"""
