"""Units cross to workers as plain data: pickled, or as JSON (the coverage run)."""

from __future__ import annotations

import json
import pickle

from pagemap.check.fanout import Unit
from pagemap.check.fanout.work import UnitRun
from pagemap.check.strategies.subtree import Subtree
from tests.check.fanout.models import SAFE
from tests.check.fanout.test_ledger import unit


def test_a_unit_survives_json_and_pickle_whole() -> None:
    sleeping = ((1, ((-3, 2), ((7, 1), 1))), (2, ()))  # footprints: tuples all the way down
    u = Unit(
        "load-race",
        (("loaders", 3),),
        "dpor",
        5,
        2,
        3,
        1000,
        part=Subtree((0, 0, 1), 0b110, sleeping, 0b100),
        split=50,
        functions=SAFE,
        timeout=9.5,
    )
    assert Unit.from_json(json.loads(json.dumps(u.to_json()))) == u
    assert pickle.loads(pickle.dumps(u)) == u
    hash(Unit.from_json(json.loads(json.dumps(u.to_json()))))  # frozen through and through


def test_a_unit_runs_the_model_its_import_paths_name() -> None:
    run = UnitRun(unit(SAFE, "dfs", split=None), None)
    while run.step() is not None:
        pass
    assert run.end is not None and run.end.reason == "exhausted"
    assert run.count == run.run.summary.schedules > 1
