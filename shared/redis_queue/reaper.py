"""The reaper: a dead worker's jobs go back to the queue.

A worker that dies (SIGKILL, out of memory, a pulled plug) leaves the job
it held in its processing list. Its heartbeat key then expires. Whoever
runs :func:`reap` (here the app's runner; in Dramatiq, by chance, any
process that sends a broker command) moves
those jobs back to the front of the queue, where another worker takes them.

A heartbeat can also lapse while its worker lives (a pause, a slow Redis),
and come back. So the reaper checks the heartbeat again *at the moment of
each move*, in the same atomic step as the move: a Lua script, which Redis
runs with nothing else in between. Checking first and moving next, in two
commands, would move the job of a worker that came back in between.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.redis_queue.queue import RedisQueue, text

#: One atomic step of the reaper, for one worker. KEYS: heartbeat, processing list,
#: queue, workers set; ARGV: the worker's name. Returns -1 if the worker is alive
#: (nothing done), 1 if it moved one job back, 0 if the list was empty (the worker
#: is then removed from the set).
REQUEUE_ONE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    return -1
end
if redis.call('LMOVE', KEYS[2], KEYS[3], 'RIGHT', 'RIGHT') then
    return 1
end
redis.call('SREM', KEYS[4], ARGV[1])
return 0
"""


@dataclass(frozen=True)
class Recovered:
    """What :func:`reap` did about one dead worker."""

    worker: str
    jobs: int


def reap(queue: RedisQueue) -> list[Recovered]:
    """Requeue the jobs of every registered worker whose heartbeat expired.

    Each job moves in one script that first checks the heartbeat again: a
    worker whose heartbeat came back keeps its jobs and its place in the set.
    """
    recovered = []
    requeue_one = queue.redis.register_script(REQUEUE_ONE)
    for name in sorted(text(w) for w in queue.redis.smembers(queue.workers)):
        if queue.alive(name):
            continue  # a quick look; the script checks again at each move
        keys = [queue.heartbeat(name), queue.processing(name), queue.queue, queue.workers]
        moved = 0
        while (step := requeue_one(keys=keys, args=[name])) == 1:
            moved += 1
        if step == 0 or moved:  # removed as dead, or came back after some of its jobs moved
            recovered.append(Recovered(name, moved))
    return recovered
