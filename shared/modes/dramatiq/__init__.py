"""The Dramatiq way of running jobs (lessons 04-07): one package.

- :mod:`.broker`: the one broker recipe, the queues, the message of a job,
  and the namespace cleaner.
"""
