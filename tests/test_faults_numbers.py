import pytest

from chaos.faults.numbers import MAX_DEPTH, MAX_NUMBER, NumberProblem, plain_number, too_deep


@pytest.mark.parametrize("value", [0, 1, -3, 2.5, MAX_NUMBER, -MAX_NUMBER, float(MAX_NUMBER)])
def test_plain_numbers_pass(value):
    assert plain_number(value) == value


@pytest.mark.parametrize(
    "value, problem",
    [
        (10**400, "at most 9007199254740992"),
        (MAX_NUMBER + 1, "at most"),
        (1e300, "at most"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (True, "expected a number, got bool"),
        ("5", "expected a number, got str"),
        (None, "expected a number, got NoneType"),
    ],
)
def test_other_values_say_what_is_wrong_without_printing_them_whole(value, problem):
    with pytest.raises(NumberProblem) as caught:
        plain_number(value)
    assert problem in str(caught.value)
    assert len(str(caught.value)) < 100


def nested(depth):
    value = "x"
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_within_the_limit_passes():
    assert too_deep({"trigger": {"flap": {"period_s": 1}}, "match": {"roles": ["registry"]}}) is None
    assert too_deep({"a": nested(MAX_DEPTH - 1)}) is None


def test_the_first_too_deep_path_is_named():
    assert too_deep({"match": {"roles": nested(MAX_DEPTH)}}) == "match.roles" + "[0]" * (MAX_DEPTH - 2)


def test_hostile_nesting_is_walked_without_recursion():
    assert too_deep(nested(100_000)) is not None  # would be a RecursionError if walked recursively
