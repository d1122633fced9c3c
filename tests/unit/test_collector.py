"""The broker process's collector settings (``zbroker/collector.py``), in a child
process so the suite's own collector is left as it is."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.support import child_env

CHILD = """
import gc, json
import zbroker.server  # what serving imports, made before the tuning
from zbroker import collector
collector.tune_for_serving()
frozen = gc.get_freeze_count()

class Node:
    pass

made = [Node() for _ in range(1000)]  # made after: the broker's own objects
for node in made:
    node.me = node                    # each in a cycle with itself
del made, node
print(json.dumps({"threshold": gc.get_threshold(), "frozen": frozen,
                  "frozen_after": gc.get_freeze_count(), "collected": gc.collect()}))
"""


def test_serving_freezes_the_imports_spaces_young_collections_and_still_frees_cycles() -> None:
    out = subprocess.run([sys.executable, "-c", CHILD], env=child_env(), capture_output=True, text=True,
                         timeout=60, check=True).stdout
    facts = json.loads(out)
    assert facts["threshold"] == [50_000, 10, 10]
    assert facts["frozen"] > 10_000  # the imports' objects (modules, functions, classes)
    assert facts["frozen_after"] == facts["frozen"]  # nothing made later is frozen
    assert facts["collected"] >= 1000  # so cycles made later are still found and freed
