"""The checker's own tests catch an unsound checker: each engine mutant
(check/engine_mutants.py) is applied, and the judge it names must fail.

The judges are the engine tests of this directory, run here in small:

- reference: DFS and DPOR against the brute-force reference
  (tests/check/reference.py) on the known counterexamples and on generated
  programs of every primitive, at bounds 0, 1, 2 and none;
- pinned: DPOR's distinct traces at bound 2 on scenarios, against the counts
  pinned in tests/check/pinned_traces.json;
- verdicts: a failure on the last schedule an exploration runs is reported.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, seed, settings

from pagemap.check.engine_mutants import ENGINE_MUTANTS, JUDGES, EngineMutant
from pagemap.check.explore import explore_model
from pagemap.check.scenarios import registry
from tests.check.programs import (
    FINDING_BOUND_1,
    RELAX_MISS,
    TIMED_BOUND_0,
    Program,
    programs,
    show,
)
from tests.check.test_pinned import BOUND, pinned
from tests.check.test_reference import disagreements
from tests.check.test_verdicts import fail_on, model, passing

# Scenarios the pinned judge explores: quick, and among them every primitive
# the engine mutants touch (semaphores: flusher-writers' kswapd and writeback
# wait on their kicks, which its writers up; flusher-pwrite's one writer no
# longer shows an unrecorded up, since the flusher's stop flag names the
# steps that read and write it and orders kswapd's look by itself).
PINNED_SCENARIOS = ("flusher-writers", "load-race", "store-remove", "eio-load")


# Two CASes of one per-frame word: the one that fails must see the other
# succeed, which a successful CAS recorded as a read hides from DPOR.
ARRAY_CAS_TWICE: Program = (
    (("", (("acas", 0, 0, 3),)), ("", (("up", 0, 0, 0),))),
    (("sem", (("acas", 0, 0, 3),)),),
)


class Caught(AssertionError):
    """A judge failed: the mutant is caught."""


def reference_judge() -> None:
    for program in (FINDING_BOUND_1, RELAX_MISS, TIMED_BOUND_0, ARRAY_CAS_TWICE):
        _judge_program(program)

    @seed(28)
    @settings(
        max_examples=120,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(programs())
    def generated(program: Program) -> None:
        _judge_program(program)

    generated()


def _judge_program(program: Program) -> None:
    try:
        problems = disagreements(program)
    except AssertionError as exc:  # an exploration that is not even sound any more
        raise Caught(f"{show(program)}\n{exc}") from None
    if problems:
        raise Caught(show(program) + "\n" + "\n".join(problems))


def pinned_judge() -> None:
    counts = pinned()["scenarios"]
    for name in PINNED_SCENARIOS:
        s = explore_model(registry()[name].model(), "dpor", bound=BOUND, shrink=False)
        if s.distinct < counts[name]["distinct"]:
            raise Caught(f"{name}: {s.distinct} traces, {counts[name]['distinct']} pinned")


def verdicts_judge() -> None:
    for strategy, bound in (("dfs", None), ("dpor", None), ("dpor", 2)):
        _, ran = passing(strategy, bound, None)
        got = explore_model(model(fail_on(ran[-1])), strategy, bound=bound, shrink=False)
        if got.trace is None:
            raise Caught(f"{strategy} at bound {bound} dropped the last schedule's failure")


_JUDGES = {"reference": reference_judge, "pinned": pinned_judge, "verdicts": verdicts_judge}


def test_every_judge_is_named_and_every_mutant_names_one() -> None:
    assert set(_JUDGES) == set(JUDGES)
    assert {m.judge for m in ENGINE_MUTANTS} <= set(JUDGES)
    assert len({m.name for m in ENGINE_MUTANTS}) == len(ENGINE_MUTANTS)


def test_the_known_programs_pass_on_the_real_engine() -> None:
    # The judges in full pass on the real engine in their own files
    # (test_reference.py, test_pinned.py, test_verdicts.py); this is the
    # program that only this file adds.
    _judge_program(ARRAY_CAS_TWICE)


@pytest.mark.parametrize("mutant", ENGINE_MUTANTS, ids=lambda m: m.name)
def test_the_engine_mutant_is_caught_by_its_judge(mutant: EngineMutant) -> None:
    with mutant.applied(), pytest.raises(Caught):
        _JUDGES[mutant.judge]()
