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
from bisect import bisect_left
from collections.abc import Sequence

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


class HappensBefore:
    """Vector clocks and direct dependences of every step of `log`.

    `rebase(log, keep)` moves the object to another run that shares its
    first `keep` steps with the current one (the schedule DPOR runs next
    replays the last one up to its branch point): the steps after `keep` are
    undone and the new run's are added.  A search pays for the steps past the
    branch point only, not for the whole run again (test_hb_incremental.py
    compares every rebase with a fresh computation).

    What a step reads of the steps before it is each object's accesses, kept
    as a stack of segments per object: a write and the reads since it
    (-1 for no write yet).  A write pushes a segment, a read appends to the
    top one, so undoing a step needs only its footprint, read backwards.

    With `pending`, each step's races with pending steps (`pending_races`)
    are found as it is added, and kept with it: `new_pending_races` hands
    out those of the steps added since it was last called."""

    def __init__(self, log: EventLog, release_races: bool = False, pending: bool = False) -> None:
        self.release_races = release_races
        self.tracks_pending = pending
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
        self._clear()
        self.rebase(log, 0)

    def _clear(self) -> None:
        """No step at all."""
        for lst in (self.local, self.vc, self.preds, self.prev, self.fps):
            lst.clear()
        self.acquired_after.clear()
        self.no_race.clear()
        # The state after the last step: each task's last step and count of
        # steps, each object's segments and acquisitions, each step's
        # successors (the normal form's), each task's steps.
        self._last_of = [-1] * self.ntasks
        self._count = [0] * self.ntasks
        self._segs: dict[object, list[list[int]]] = {}
        self._acqs: dict[object, list[int]] = {}
        self._succs: list[list[int]] = []
        self._queues: list[list[int]] = [[] for _ in range(self.ntasks)]
        self._pairs: list[Sequence[tuple[int, int]]] = []  # each step's pending races
        self._told = 0  # steps whose pending races new_pending_races handed out

    def rebase(self, log: EventLog, keep: int) -> None:
        """Become the happens-before of `log`, whose first `keep` steps are
        the current log's."""
        width = max(log.tids, default=-1) + 1
        if width > self.ntasks:
            keep = 0  # clocks grow a component: start over
            self.ntasks = width
        keep = max(0, min(keep, len(self.vc)))
        if keep:
            self._rollback(keep)
        else:
            self._clear()
        self.log = log
        self._extend(keep)

    def _rollback(self, keep: int) -> None:
        """Undo steps keep.. of the current log, latest first."""
        segs, acqs, succs = self._segs, self._acqs, self._succs
        after, preds_of, fps = self.acquired_after, self.preds, self.fps
        for i in range(len(self.vc) - 1, keep - 1, -1):
            fp = fps[i]
            for k, a in reversed(fp) if len(fp) > 1 else fp:
                s = segs[k]
                if a & WRITE:
                    s.pop()
                    if a == ACQUIRE:
                        acqs[k].pop()
                    if not s:
                        del segs[k]
                else:
                    s[-1].pop()
            for q in preds_of[i]:
                if q < keep:  # (the successors of a step undone go with it)
                    succs[q].pop()  # i is q's latest successor
        for e in [e for e in after if e >= keep]:  # once, rather than a pop per step undone
            del after[e]
        # Each task's steps, last step and count: its kept steps.
        last_of, count = self._last_of, self._count
        for t, steps in enumerate(self._queues):
            n = bisect_left(steps, keep)
            del steps[n:]
            count[t] = n
            last_of[t] = steps[-1] if n else -1
        for lst in (self.local, self.vc, self.preds, self.prev, fps, succs, self._pairs):
            del lst[keep:]
        self._told = min(self._told, keep)
        if self.no_race:
            self.no_race = {pair for pair in self.no_race if pair[1] < keep}

    def _extend(self, start: int) -> None:
        """Add the steps start.. of the log."""
        log = self.log
        tids = log.tids
        last_of, count = self._last_of, self._count
        segs, acqs, succs, queues = self._segs, self._acqs, self._succs, self._queues
        objs, accs, extra, key = log.objs, log.accs, log.extra, log.key
        vcs, preds_of, local, prev = self.vc, self.preds, self.local, self.prev
        fps, after, no_race = self.fps, self.acquired_after, self.no_race
        pairs = self._pairs if self.tracks_pending else None
        release_races = self.release_races
        zeros = [0] * self.ntasks
        for i in range(start, len(tids)):
            t = tids[i]
            p = last_of[t]
            prev.append(p)
            obj, acc = objs[i], accs[i]
            more = extra.get(i)
            one = bool(acc) and obj is not None and not more and acc != ACQUIRE
            if one:
                # The usual step: one object, no lock taken.  The general
                # case below, with the object's segments looked up once.
                k = getattr(obj, "sid", 0) or key(obj)  # log.key(obj), without the call
                fp = [(k, acc)]
                s = segs.get(k)
                if s is None:
                    preds: list[int] = []
                else:
                    top = s[-1]
                    w = top[0]
                    if acc & WRITE:
                        preds = top.copy() if w >= 0 else top[1:]
                    else:
                        preds = [w] if w >= 0 else []
            else:
                # log.key(obj): the object's sid, or the object itself for an
                # int or a tuple (key raises for anything else without a sid).
                fp = [(getattr(obj, "sid", 0) or key(obj), acc)] if acc and obj is not None else []
                if more:
                    fp.extend((key(o), a) for o, a in more)
                preds = []
                for k, a in fp:
                    s = segs.get(k)
                    if s is None:
                        w = -1
                    else:
                        top = s[-1]
                        w = top[0]
                        if w >= 0:
                            preds.append(w)
                        if a & WRITE and len(top) > 1:
                            preds.extend(top[1:])
                    if a == ACQUIRE:
                        acq = acqs.get(k)
                        q = acq[-1] if acq else -1
                        if q >= 0 and tids[q] != t and w >= 0:
                            after[i] = (q, w)
                        if w >= 0 and not release_races and isinstance(obj, SpinLock):
                            no_race.add((w, i))  # a release, then the acquire it allowed
                        if acq is None:
                            acqs[k] = [i]
                        else:
                            acq.append(i)
            if len(preds) > 1:
                # One predecessor once (the last write of an object may also
                # be a read of another): races and the normal form count each once.
                preds = list(dict.fromkeys(preds))
            # The clock: the task's previous step's, joined with each
            # predecessor's not already below it (a clock is downward closed).
            base = clock = vcs[p] if p >= 0 else zeros
            for q in preds:
                if clock[tids[q]] <= local[q]:
                    clock = list(map(max, clock, vcs[q]))
                succs[q].append(i)
            if pairs is not None:
                # The scan meets the step's predecessors first, and stops
                # there if all happen before the task's previous step (the
                # clock took nothing from them): no race then.
                pairs.append(self._races_of_pending(t, p, fp) if clock is not base else ())
            if clock is base:
                clock = base.copy()
            n = count[t]
            local.append(n)
            count[t] = clock[t] = n + 1
            vcs.append(clock)
            preds_of.append(preds)
            succs.append([])
            queues[t].append(i)
            last_of[t] = i
            fps.append(fp)
            if one:
                if s is None:
                    segs[k] = [[i]] if acc & WRITE else [[-1, i]]
                elif acc & WRITE:
                    s.append([i])
                else:
                    top.append(i)
                continue
            for k, a in fp:
                s = segs.get(k)
                if a & WRITE:
                    if s is None:
                        segs[k] = [[i]]
                    else:
                        s.append([i])
                elif s is None:
                    segs[k] = [[-1, i]]
                else:
                    s[-1].append(i)

    def before(self, i: int, j: int) -> bool:
        """Step i happens before step j (i < j)."""
        return self.vc[j][self.log.tids[i]] > self.local[i]

    def races(self, start: int = 0) -> list[tuple[int, int]]:
        """Reversible-looking races (i, j) with j >= start, in order of j."""
        tids, preds_of, no_race = self.log.tids, self.preds, self.no_race
        after = self.acquired_after
        out: list[tuple[int, int]] = []
        for j in range(start, len(tids)):
            preds = preds_of[j]
            if not preds:
                continue
            tj = tids[j]
            for i in preds:  # distinct (_extend)
                if tids[i] == tj or (i, j) in no_race:
                    continue
                if self._only_through(i, j, i):
                    out.append((i, j))
            pair = after.get(j)
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
        if not self.tracks_pending:
            return HappensBefore(self.log, self.release_races, pending=True).pending_races(pending)
        return self._pending_since(0, pending)

    def new_pending_races(self, pending: dict[int, Footprint]) -> list[tuple[int, int]]:
        """pending_races, less those of the steps kept from the runs before
        (rebase): the ones the steps added since the last call find, and the
        ones of `pending`.  A search that acted on every race it was handed
        has acted on the rest already."""
        assert self.tracks_pending, "made with pending=True"
        start, self._told = self._told, len(self.vc)
        return self._pending_since(start, pending)

    def _pending_since(self, start: int, pending: dict[int, Footprint]) -> list[tuple[int, int]]:
        out: set[tuple[int, int]] = set()
        for found in self._pairs[start:]:
            if found:
                out.update(found)
        for p, fp in pending.items():
            prev = self._last_of[p] if p < self.ntasks else -1
            out.update(self._races_of_pending(p, prev, fp))
        return sorted(out)

    def _races_of_pending(
        self, p: int, prev: int, fp: Sequence[tuple[object, int]]
    ) -> Sequence[tuple[int, int]]:
        """The races of p's step `fp`, pending since p's step `prev`, with
        the steps so far: on each object it touches, the dependent steps of
        other tasks that do not happen before `prev`, all those since it
        and the latest before it (newest first, the segments read backwards)."""
        out: list[tuple[int, int]] = []
        tids, local = self.log.tids, self.local
        seen_by_p = self.vc[prev] if prev >= 0 else None
        segs = self._segs
        for obj, acc in fp:
            s = segs.get(obj)
            if not s:
                continue
            writes = acc & WRITE
            done = False
            for g in range(len(s) - 1, -1, -1):
                seg = s[g]
                # Its reads, newest first, then its write (a read after a
                # read is no race: skipped unless this step writes).
                for k in range(len(seg) - 1, 0, -1) if writes else ():
                    i = seg[k]
                    t = tids[i]
                    if seen_by_p is not None and (t == p or seen_by_p[t] > local[i]):
                        continue
                    out.append((i, p))
                    if i < prev:
                        done = True
                        break
                if done:
                    break
                i = seg[0]
                if i < 0:
                    break  # reads with no write before them: the object's first segment
                t = tids[i]
                if seen_by_p is not None and (t == p or seen_by_p[t] > local[i]):
                    break  # every older step on obj happens before this write
                out.append((i, p))
                if i < prev:
                    break  # the latest one before p's previous step is enough
        return out or ()

    def initials(self, i: int, j: int) -> set[int]:
        """The tasks whose first step in notdep(i).j depends on no other step
        of that sequence: the tasks DPOR may schedule before step i to
        reverse the race (i, j)."""
        tids, vc, local = self.log.tids, self.vc, self.local
        ti, li = tids[i], local[i]
        first: dict[int, int] = {}  # task -> its first step in notdep(i)
        for e in range(i + 1, j):
            t = tids[e]
            if t in first or vc[e][ti] > li:
                continue  # not its first, or it depends on i
            first[t] = e
        tj = tids[j]
        if tj not in first:
            first[tj] = j
        out: set[int] = set()
        for t, x in first.items():
            clock = vc[x]
            if all(u == t or clock[u] <= local[y] or y > x for u, y in first.items()):
                out.add(t)
        return out

    def signature(self) -> tuple[int, ...]:
        """The trace's lexicographic normal form: the order of task ids in
        which, at every step, the lowest-numbered task whose next step has
        all its predecessors done goes next.  Equal for two runs exactly when
        they are the same Mazurkiewicz trace (of one deterministic program)."""
        tids = self.log.tids
        n = len(tids)
        queues, succs = self._queues, self._succs
        # Kahn's algorithm, the ready task with the lowest id first: a task
        # is ready when the next step in its queue has no predecessor left
        # (a step's predecessors are distinct, _extend).
        missing = list(map(len, self.preds))
        pos = [0] * len(queues)
        ready = [t for t, q in enumerate(queues) if q and not missing[q[0]]]
        out: list[int] = []
        push, pop = heapq.heappush, heapq.heappop
        while ready:
            t = pop(ready)
            q = queues[t]
            k = pos[t]
            while True:
                out.append(t)
                k += 1
                pos[t] = k
                for s_ in succs[q[k - 1]]:
                    missing[s_] -= 1
                    if not missing[s_]:
                        ts = tids[s_]
                        if ts != t and queues[ts][pos[ts]] == s_:
                            push(ready, ts)
                if k == len(q) or missing[q[k]]:
                    break
                # t's next step is ready: it goes next unless a lower task is
                # ready too (the same as pushing t and popping the least, cheaper).
                if ready and ready[0] < t:
                    push(ready, t)
                    break
        if len(out) < n:  # pragma: no cover - the dependence graph of a run has no cycle
            raise AssertionError("no step is ready: the dependence graph has a cycle")
        return tuple(out)


__all__ = ["Footprint", "HappensBefore", "footprint", "independent"]
