"""What the checker tests of every chapter share (imported by name: pytest puts this folder on sys.path)."""


def never_shows(verdict, value: float) -> None:
    """The verdict on a wrong answer must not print the right one (at 2, 3 or 4 decimals)."""
    for digits in (2, 3, 4):
        assert f"{value:.{digits}f}" not in str(verdict), f"the answer {value} leaks into: {verdict}"


def predicts_and_measures(exercise_id: str, choices: tuple[str, ...], actual: str, measured: float, rounded: float,
                          off: float):
    """A predict-then-measure checker: the right measurement passes whatever the prediction (the note says whether
    it was the measured outcome), a wrong one fails without showing the right one. Returns the right verdict."""
    from arclib.exercises import check

    right = check(exercise_id, {"prediction": actual, "measured": rounded})
    assert right.passed is True and "as you predicted" in right.message, str(right)
    for other in set(choices) - {actual}:
        guess = check(exercise_id, {"prediction": other, "measured": measured})
        assert guess.passed is True and "not as you predicted" in guess.message, str(guess)
    wrong = check(exercise_id, {"prediction": actual, "measured": off})
    assert wrong.passed is False, str(wrong)
    never_shows(wrong, measured)
    assert "prediction must be one of" in check(exercise_id, {"prediction": "?", "measured": measured}).message
    return right
