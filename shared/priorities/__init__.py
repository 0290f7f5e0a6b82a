"""Lesson 05: a password-reset email and a newsletter share Dramatiq workers.

``design`` says who goes where (queue, priority, worker groups), ``actors``
declares the two email actors on a broker, ``worker`` is the module the
``dramatiq`` command imports in each worker process, ``run`` runs one design
on real workers and measures the reset email's wait, and ``plots`` draws it.
"""

from shared.priorities.design import ActorPlan, Design, DesignError, WorkerGroup
from shared.priorities.run import Job, Outcome, WorkersFailed, run_design

__all__ = ["ActorPlan", "Design", "DesignError", "Job", "Outcome", "WorkerGroup",
           "WorkersFailed", "run_design"]
