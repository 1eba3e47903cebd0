"""Issue 16: a failed policy says which knob usually helps."""

from __future__ import annotations


def test_knob_hints_name_the_usual_fix() -> None:
    from lethe.filters import knob_hints

    hints = knob_hints(["retain accuracy drop 0.06 > 0.02", "forget accuracy 0.2 > 0.01"])
    assert len(hints) == 2 and "--epochs 16" in hints[0] and "--epochs" in hints[1]
    assert any("lethe erase" in h for h in knob_hints(["relearn ratio 0.3 < 0.5"]))
    assert knob_hints(["retain accuracy drop", "retain accuracy drop"]) == hints[:1]
    assert knob_hints(["something new"]) == []
