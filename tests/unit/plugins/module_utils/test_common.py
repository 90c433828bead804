"""common.new_module: the garbage collector's pace for a module's run."""

from __future__ import annotations

import gc
import weakref

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import common


class _Cycle:
    """An object in a reference cycle with itself: only the cyclic collector frees it."""

    def __init__(self):
        self.me = self


@pytest.fixture
def gc_pace():
    before = gc.get_threshold()
    enabled = gc.isenabled()
    gc.enable()
    yield
    gc.set_threshold(*before)
    if not enabled:
        gc.disable()


def test_new_module_slows_the_collector_but_keeps_it(gc_pace):
    made = common.new_module(lambda **kwargs: kwargs, argument_spec={"x": {"type": "str"}})
    assert made == {"argument_spec": {"x": {"type": "str"}}}
    assert gc.get_threshold()[0] == common.GC_YOUNG
    assert gc.isenabled()
    gc.collect()
    first = _Cycle()
    ref = weakref.ref(first)
    del first
    # fewer new objects than GC_YOUNG: no automatic collection yet, the cycle lives
    few = [_Cycle() for _i in range(common.GC_YOUNG // 4)]
    assert ref() is not None
    del few
    # many more: the collector ran by itself and freed the cycle
    many = [[] for _i in range(common.GC_YOUNG * 3)]
    assert ref() is None
    assert len(many) == common.GC_YOUNG * 3
