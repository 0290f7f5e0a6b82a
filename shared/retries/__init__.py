"""Lesson 06: retries, dead letters, idempotency and time limits, on real parts.

- :mod:`shared.retries.flaky_smtp`: a real SMTP server that fails on purpose
  (refuses the first attempts, bounces addresses, loses its reply after
  accepting a message), and one that never answers at all.
- :mod:`shared.retries.lab`: a real Redis broker in a namespace of its own,
  an in-process Dramatiq worker, and a log of every attempt.
- :mod:`shared.retries.backoff`: Dramatiq's retry backoff as a formula, and a
  plot of the delays it chose against it, with the poll lag apart.
- :mod:`shared.retries.mail`: the welcome email with a Message-ID of your choosing.
- :mod:`shared.retries.timelines`: a poison message beside the good ones, and what
  ``time_limit`` stops, each on one time axis.

Which email errors deserve a retry is not an experiment but the app's
policy: :mod:`shared.retry_policy`, which the ``dramatiq`` mode's email actor
follows (:mod:`shared.modes.dramatiq`).
"""
