import pytest

from chaos.faults.triggers import Flap, Trigger, TriggerError, TriggerState, parse_trigger


def decisions(trigger, count, at=lambda n: 0.0, added_at=0.0):
    state = TriggerState(trigger, added_at)
    return [state.decide(at(n)) for n in range(count)]


def test_no_trigger_fires_for_every_matching_request():
    assert decisions(Trigger(), 3) == [True, True, True]


def test_first_fires_for_the_first_n_only():
    assert decisions(Trigger(first=2), 5) == [True, True, False, False, False]


def test_after_skips_then_every_picks_each_nth():
    assert decisions(Trigger(after=2), 4) == [False, False, True, True]
    assert decisions(Trigger(every=3), 7) == [False, False, True, False, False, True, False]
    assert decisions(Trigger(after=1, every=2), 5) == [False, False, True, False, True]


def test_first_is_a_budget_over_what_the_other_fields_pick():
    assert decisions(Trigger(every=2, first=2), 8) == [False, True, False, True, False, False, False, False]


def test_time_window_opens_after_start_and_lasts_duration():
    trigger = Trigger(start_after_s=10, duration_s=5)
    times = [0, 9.9, 10, 14.9, 15, 100]
    assert decisions(trigger, len(times), at=lambda n: 1000 + times[n], added_at=1000) == [
        False, False, True, True, False, False,
    ]  # fmt: skip


def test_flap_is_down_for_the_first_fraction_of_each_period():
    trigger = Trigger(flap=Flap(period_s=10, down_fraction=0.3))
    times = [0, 2.9, 3, 9.9, 10, 12.9, 13]
    assert decisions(trigger, len(times), at=lambda n: times[n]) == [
        True, True, False, False, True, True, False,
    ]  # fmt: skip


def test_probability_with_a_seed_repeats_its_decisions():
    trigger = Trigger(probability=0.3, seed=42)
    first = decisions(trigger, 200)
    assert first == decisions(trigger, 200)
    assert 30 <= sum(first) <= 90  # about 30 %
    assert first != decisions(Trigger(probability=0.3, seed=43), 200)


def test_probability_draws_for_every_matching_request_even_outside_the_window():
    # The k-th request's draw depends only on the seed and k, not on the window.
    plain = decisions(Trigger(probability=0.5, seed=1), 20)
    windowed = decisions(Trigger(probability=0.5, seed=1, after=10), 20)
    assert windowed == [False] * 10 + plain[10:]


@pytest.mark.parametrize("probability, expected", [(0, [False] * 5), (1, [True] * 5)])
def test_probability_bounds(probability, expected):
    assert decisions(Trigger(probability=probability, seed=0), 5) == expected


def test_counters_count_matching_and_fired_requests():
    state = TriggerState(Trigger(first=1), 0)
    for _ in range(3):
        state.decide(0)
    assert (state.matched, state.fired) == (3, 1)


def test_missing_seed_is_chosen_and_shown():
    trigger = parse_trigger({"probability": 0.5})
    assert isinstance(trigger.seed, int)
    assert trigger.to_dict() == {"probability": 0.5, "seed": trigger.seed}


@pytest.mark.parametrize(
    "raw, expected",
    [
        (None, Trigger()),
        ({}, Trigger()),
        ({"probability": 1, "seed": 3}, Trigger(probability=1.0, seed=3)),
        ({"first": 2, "every": 3, "after": 1}, Trigger(first=2, every=3, after=1)),
        ({"first": 2.0}, Trigger(first=2)),
        ({"start_after_s": 1.5, "duration_s": 2}, Trigger(start_after_s=1.5, duration_s=2.0)),
        ({"flap": {"period_s": 4, "down_fraction": 1}}, Trigger(flap=Flap(4.0, 1.0))),
    ],
)
def test_good_triggers(raw, expected):
    assert parse_trigger(raw) == expected
    assert parse_trigger(expected.to_dict()) == expected


@pytest.mark.parametrize(
    "raw, field, message",
    [
        ({"probability": 1.5}, "trigger.probability", "expected a number from 0 to 1, got 1.5"),
        ({"probability": -0.1}, "trigger.probability", "from 0 to 1"),
        ({"probability": "0.5"}, "trigger.probability", "from 0 to 1"),
        ({"probability": True}, "trigger.probability", "from 0 to 1"),
        ({"probability": float("nan")}, "trigger.probability", "from 0 to 1"),
        ({"seed": 3}, "trigger.seed", "only used with trigger.probability"),
        ({"probability": 0.5, "seed": -1}, "trigger.seed", "whole number"),
        ({"probability": 0.5, "seed": 1.5}, "trigger.seed", "whole number"),
        ({"first": 0}, "trigger.first", ">= 1"),
        ({"first": 1.5}, "trigger.first", "whole number"),
        ({"every": 0}, "trigger.every", ">= 1"),
        ({"after": -1}, "trigger.after", ">= 0"),
        ({"start_after_s": -1}, "trigger.start_after_s", ">= 0"),
        ({"duration_s": 0}, "trigger.duration_s", "> 0"),
        ({"duration_s": float("inf")}, "trigger.duration_s", "> 0"),
        ({"flap": 3}, "trigger.flap", "mapping"),
        ({"flap": {"period_s": 0, "down_fraction": 0.5}}, "trigger.flap.period_s", "> 0"),
        ({"flap": {"period_s": 1}}, "trigger.flap.down_fraction", "above 0"),
        ({"flap": {"period_s": 1, "down_fraction": 0}}, "trigger.flap.down_fraction", "above 0"),
        ({"flap": {"period_s": 1, "down_fraction": 1.2}}, "trigger.flap.down_fraction", "at most 1"),
        ({"flap": {"period_s": 1, "down_fraction": 0.5, "phase": 1}}, "trigger.flap.phase", "unknown"),
        ({"probabilty": 0.5}, "trigger.probabilty", "unknown field"),
        (["first"], "trigger", "mapping"),
    ],
)
def test_bad_triggers_name_the_field(raw, field, message):
    with pytest.raises(TriggerError) as caught:
        parse_trigger(raw)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert message in str(caught.value)
