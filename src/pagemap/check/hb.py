"""Happens-before over the steps of one run: races, and the run's Mazurkiewicz trace.

Two steps of different tasks are *dependent* when their footprints share an
object and one of them writes it (sync/core.py).  Happens-before is the
transitive closure of program order (a task's steps in order) and of
dependence in the order the run took.  Two runs with the same steps and the
same order of every dependent pair are the same Mazurkiewicz trace: they end
in the same state, and every task saw the same values on the way.

`HappensBefore(log)` computes, for every step, a vector clock (how many steps
of each task happen before it, itself included) and its direct dependence
predecessors: the last write of each object it touches and, if it writes,
the reads since that write.  From those:

- `races(start)`: the pairs (i, j), j >= start, where i and j are dependent,
  of different tasks, and i happens before j only through their own
  dependence, so that swapping them gives another trace (what DPOR reverses).
  Acquisitions are special: a lock's release and the next acquire are
  ordered (the lock was held until the release, so the acquire could never
  have gone first), and the race is between the two acquisitions, which
  happen in order only through the critical section between them.  Under a
  preemption bound the release still counts (`release_races`): running the
  acquirer's task before the release makes it block there, which is a free
  switch back, and may be the only way to reach a trace within the bound;
- `initials(i, j)`: the tasks that could take the first step of
  notdep(i).j (the steps after i that do not depend on it, then j), the
  source set of Abdulla et al., "Optimal dynamic partial order reduction"
  (POPL 2014);
- `signature()`: a canonical name of the trace (its lexicographic normal
  form), so that runs can be counted as distinct traces.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

from pagemap.sync.core import ACQUIRE, WRITE
from pagemap.sync.locks import SpinLock
from pagemap.sync.sim import EventLog

Footprint = tuple[tuple[object, int], ...]


def footprint(log: EventLog, i: int) -> Footprint:
    """Every (object, access) step i touched, objects by their stable
    identity (EventLog.key), so footprints of different runs compare."""
    key = log.key
    obj = log.objs[i]
    main = ((key(obj), log.accs[i]),) if log.accs[i] and obj is not None else ()
    extra = log.extra.get(i)
    if extra:
        return main + tuple((key(o), a) for o, a in extra)
    return main


def independent(a: Footprint, b: Footprint) -> bool:
    """True when no object is touched by both with a write on either side."""
    for obj, acc in a:
        for obj2, acc2 in b:
            if obj2 == obj and (acc | acc2) & WRITE:
                return False
    return True


_MISSING = object()  # the key was not in the map
_APPENDED = object()  # the step appended to the list
# What a step overwrote: (map, key, old value or _MISSING), or (list, _APPENDED, None).
_Undo = tuple[Any, object, object]


class HappensBefore:
    """Vector clocks and direct dependences of every step of `log`.

    `rebase(log, keep)` moves the object to another run that shares its
    first `keep` steps with the current one (the schedule DPOR runs next
    replays the last one up to its branch point): the steps after `keep` are
    undone, through the record each step keeps of what it overwrote, and the
    new run's are added.  A search pays for the steps past the branch point
    only, not for the whole run again (test_hb.py compares every rebase with
    a fresh computation)."""

    def __init__(self, log: EventLog, release_races: bool = False) -> None:
        self.release_races = release_races
        self.log = log
        self.ntasks = 0
        self.local: list[int] = []  # index of step i among its task's steps
        self.vc: list[list[int]] = []
        self.preds: list[list[int]] = []
        self.prev: list[int] = []  # the task's previous step
        self.fps: list[list[tuple[object, int]]] = []  # each step's footprint
        # For an acquisition: (the previous acquisition by another task, the
        # release it follows), the race DPOR must consider instead of release->acquire.
        self.acquired_after: dict[int, tuple[int, int]] = {}
        self.no_race: set[tuple[int, int]] = set()
        # The state after the last step, and each step's record of what it
        # overwrote there: (map, key, old value or _MISSING).
        self._last_of: list[int] = []
        self._count: list[int] = []
        self._last_write: dict[object, int] = {}
        self._reads: dict[object, list[int]] = {}
        self._last_acquire: dict[object, int] = {}
        self._undo: list[list[_Undo]] = []
        self.rebase(log, 0)

    def rebase(self, log: EventLog, keep: int) -> None:
        """Become the happens-before of `log`, whose first `keep` steps are
        the current log's."""
        width = max(log.tids, default=-1) + 1
        if width > self.ntasks:
            keep = 0  # clocks grow a component: start over
            self.ntasks = width
        keep = max(0, min(keep, len(self.vc)))
        self._rollback(keep)
        self.log = log
        self._extend(keep)

    def _rollback(self, keep: int) -> None:
        """Undo steps keep.. of the current log, latest first."""
        for i in range(len(self.vc) - 1, keep - 1, -1):
            for table, k, old in reversed(self._undo[i]):
                if k is _APPENDED:
                    table.pop()
                elif old is _MISSING:
                    del table[k]
                else:
                    table[k] = old
            self.acquired_after.pop(i, None)
        self.no_race = {pair for pair in self.no_race if pair[1] < keep}
        for lst in (self.local, self.vc, self.preds, self.prev, self.fps, self._undo):
            del lst[keep:]
        # Each task's last kept step, found from the end of the kept prefix:
        # its count of steps is that step's index among them, plus one.
        self._last_of = [-1] * self.ntasks
        self._count = [0] * self.ntasks
        tids, left = self.log.tids, self.ntasks
        for i in range(keep - 1, -1, -1):
            t = tids[i]
            if self._last_of[t] < 0:
                self._last_of[t] = i
                self._count[t] = self.local[i] + 1
                left -= 1
                if not left:
                    break

    def _extend(self, start: int) -> None:
        """Add the steps start.. of the log."""
        log = self.log
        tids = log.tids
        width = self.ntasks
        last_of, count = self._last_of, self._count
        last_write, reads, last_acquire = self._last_write, self._reads, self._last_acquire
        objs, accs, extra, key = log.objs, log.accs, log.extra, log.key
        vcs, preds_of, local, prev = self.vc, self.preds, self.local, self.prev
        fps, undo_of = self.fps, self._undo
        release_races = self.release_races
        zeros = [0] * width
        for i in range(start, len(tids)):
            t = tids[i]
            p = last_of[t]
            prev.append(p)
            clock = list(vcs[p]) if p >= 0 else list(zeros)
            obj, acc = objs[i], accs[i]
            if acc and obj is not None:
                tp = type(obj)
                fp = [(obj if tp is int or tp is tuple else key(obj), acc)]
            else:
                fp = []
            more = extra.get(i)
            if more:
                fp.extend((key(o), a) for o, a in more)
            preds: list[int] = []
            undo: list[_Undo] = []
            for k, a in fp:
                w = last_write.get(k)
                if w is not None:
                    preds.append(w)
                if a & WRITE:
                    seen = reads.get(k)
                    if seen:
                        preds.extend(seen)
                if a == ACQUIRE:
                    q = last_acquire.get(k)
                    if q is not None and tids[q] != t and w is not None:
                        self.acquired_after[i] = (q, w)
                    if w is not None and not release_races and isinstance(obj, SpinLock):
                        self.no_race.add((w, i))  # a release, then the acquire it allowed
                    undo.append((last_acquire, k, _MISSING if q is None else q))
                    last_acquire[k] = i
            if len(preds) > 1:
                # One predecessor once (the last write of an object may also
                # be a read of another): races and the normal form count each once.
                preds = list(dict.fromkeys(preds))
            for q in preds:
                clock = [a if a > b else b for a, b in zip(clock, vcs[q], strict=True)]
            local.append(count[t])
            count[t] += 1
            clock[t] = count[t]
            vcs.append(clock)
            preds_of.append(preds)
            last_of[t] = i
            fps.append(fp)
            for k, a in fp:
                if a & WRITE:
                    undo.append((last_write, k, last_write.get(k, _MISSING)))
                    undo.append((reads, k, reads.get(k, _MISSING)))
                    last_write[k] = i
                    reads[k] = []
                else:
                    seen = reads.get(k)
                    if seen is None:
                        undo.append((reads, k, _MISSING))
                        reads[k] = [i]
                    else:
                        undo.append((seen, _APPENDED, None))
                        seen.append(i)
            undo_of.append(undo)

    def before(self, i: int, j: int) -> bool:
        """Step i happens before step j (i < j)."""
        return self.vc[j][self.log.tids[i]] > self.local[i]

    def races(self, start: int = 0) -> list[tuple[int, int]]:
        """Reversible-looking races (i, j) with j >= start, in order of j."""
        tids = self.log.tids
        out: list[tuple[int, int]] = []
        for j in range(start, len(tids)):
            preds = self.preds[j]
            if not preds:
                continue
            tj = tids[j]
            seen: set[int] = set()
            for i in preds:
                if i in seen or tids[i] == tj or (i, j) in self.no_race:
                    continue
                seen.add(i)
                if self._only_through(i, j, i):
                    out.append((i, j))
            pair = self.acquired_after.get(j)
            if pair is not None:
                a, release = pair
                if self._only_through(a, j, release):
                    out.append((a, j))
        return out

    def _only_through(self, i: int, j: int, via: int) -> bool:
        """i happens before j through no predecessor of j but `via` (i itself,
        or the release between two acquisitions): neither j's previous step
        nor any other direct predecessor of j is after i."""
        ti, li = self.log.tids[i], self.local[i]
        p = self.prev[j]
        if p >= 0 and self.vc[p][ti] > li:
            return False
        vc = self.vc
        return all(q in (via, i) or vc[q][ti] <= li for q in self.preds[j])

    def pending_races(self, pending: dict[int, Footprint]) -> list[tuple[int, int]]:
        """Races with a task's *next* step, as Flanagan and Godefroid's DPOR
        (POPL 2005) finds them: at every state of the run, for every task p,
        the latest step i of another task that is dependent with p's pending
        step and does not happen before it.  Pairs (i, p).

        A task's pending step at the states between two of its steps is the
        later one, so each executed step j of p stands for the states from
        p's previous step up to j; `pending` adds the step each unfinished
        task was about to take when the run stopped (blocked, or cut short).
        This is what bounded DPOR needs beyond `races`: the race that would
        reverse an acquisition may only be direct in a schedule past the
        bound, and then only the blocked task's pending step shows it
        (../findings: a lock taken twice by one task, once by another)."""
        tids = self.log.tids
        history: dict[object, list[tuple[int, int]]] = {}  # object -> (step, access)
        last_of = [-1] * max(self.ntasks, max(pending, default=-1) + 1)
        out: set[tuple[int, int]] = set()
        vc, local, fps = self.vc, self.local, self.fps
        # The steps of other tasks dependent with p's step (footprint fp) that
        # do not happen before p's previous step: all since it, and the
        # latest before it.  Each executed step first, then the pending ones.
        work: list[tuple[int, int, Sequence[tuple[object, int]]]]
        work = [(tids[j], j, fps[j]) for j in range(len(tids))]
        work.extend((p, -1, fp) for p, fp in pending.items())
        for p, j, fp in work:
            prev = last_of[p]
            seen_by_p = vc[prev] if prev >= 0 else None
            for obj, acc in fp:
                steps = history.get(obj)
                if steps:
                    for k in range(len(steps) - 1, -1, -1):
                        i, a = steps[k]
                        t = tids[i]
                        if seen_by_p is not None and (t == p or seen_by_p[t] > local[i]):
                            if a & WRITE:
                                break  # every older step on obj happens before this write
                            continue
                        if not (a | acc) & WRITE:
                            continue
                        out.add((i, p))
                        if i < prev:
                            break  # the latest one before p's previous step is enough
            if j < 0:
                continue
            for obj, acc in fp:
                steps = history.get(obj)
                if steps is None:
                    history[obj] = [(j, acc)]
                else:
                    steps.append((j, acc))
            last_of[p] = j
        return sorted(out)

    def initials(self, i: int, j: int) -> set[int]:
        """The tasks whose first step in notdep(i).j depends on no other step
        of that sequence: the tasks DPOR may schedule before step i to
        reverse the race (i, j)."""
        tids = self.log.tids
        ti, li = tids[i], self.local[i]
        first: dict[int, int] = {}  # task -> its first step in notdep(i)
        for e in range(i + 1, j):
            t = tids[e]
            if t in first or self.vc[e][ti] > li:
                continue  # not its first, or it depends on i
            first[t] = e
        tj = tids[j]
        if tj not in first:
            first[tj] = j
        out: set[int] = set()
        for t, x in first.items():
            clock = self.vc[x]
            if all(u == t or clock[u] <= self.local[y] or y > x for u, y in first.items()):
                out.add(t)
        return out

    def signature(self) -> tuple[int, ...]:
        """The trace's lexicographic normal form: the order of task ids in
        which, at every step, the lowest-numbered task whose next step has
        all its predecessors done goes next.  Equal for two runs exactly when
        they are the same Mazurkiewicz trace (of one deterministic program)."""
        tids = self.log.tids
        n = len(tids)
        queues: dict[int, list[int]] = {}
        for e in range(n):
            q = queues.get(tids[e])
            if q is None:
                queues[tids[e]] = [e]
            else:
                q.append(e)
        # Kahn's algorithm, the ready task with the lowest id first: a task
        # is ready when the next step in its queue has no predecessor left
        # (a step's predecessors are distinct, _extend).
        missing = [len(p) for p in self.preds]
        succs: dict[int, list[int]] = {}
        for e, preds in enumerate(self.preds):
            for r in preds:
                s = succs.get(r)
                if s is None:
                    succs[r] = [e]
                else:
                    s.append(e)
        pos = dict.fromkeys(queues, 0)
        ready = [t for t, steps in queues.items() if not missing[steps[0]]]
        heapq.heapify(ready)
        out: list[int] = []
        push, pop = heapq.heappush, heapq.heappop
        while ready:
            t = pop(ready)
            q = queues[t]
            e = q[pos[t]]
            out.append(t)
            k = pos[t] = pos[t] + 1
            if k < len(q) and not missing[q[k]]:
                push(ready, t)
            for s_ in succs.get(e, ()):
                missing[s_] -= 1
                if not missing[s_]:
                    ts = tids[s_]
                    if queues[ts][pos[ts]] == s_:
                        push(ready, ts)
        if len(out) < n:  # pragma: no cover - the dependence graph of a run has no cycle
            raise AssertionError("no step is ready: the dependence graph has a cycle")
        return tuple(out)


__all__ = ["Footprint", "HappensBefore", "footprint", "independent"]
