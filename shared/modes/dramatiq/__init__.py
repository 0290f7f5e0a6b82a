"""The Dramatiq way of running jobs (lessons 04-06): one package, one mode.

- :mod:`.broker`: the one broker recipe, the queues, the message of a job,
  and the namespace cleaner (queues, acks, heartbeats, dead letters, delay
  queues and results).
- :mod:`.status`: the middleware that writes every job status on this path
  (running, done, queued for a retry, failed with the reason).
- :mod:`.actors`: the actors, for worker processes
  (``dramatiq shared.modes.dramatiq.actors``); they only run the work.
- :mod:`.workers`: the ``dramatiq`` worker groups, and the supervisor that
  restarts a group when it dies.
- :mod:`.dead_letters`: the messages Dramatiq gave up on, and an atomic
  requeue (Dramatiq has none).
- :mod:`.mode`: the ``dramatiq`` mode's runner, which puts them together.

Importing the package imports none of them: the web app needs ``mode``, a
worker process ``actors``, and neither needs the other.
"""
