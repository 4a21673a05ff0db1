"""What the checker tests of every chapter share (imported by name: pytest puts this folder on sys.path)."""


def never_shows(verdict, value: float) -> None:
    """The verdict on a wrong answer must not print the right one (at 2, 3 or 4 decimals)."""
    for digits in (2, 3, 4):
        assert f"{value:.{digits}f}" not in str(verdict), f"the answer {value} leaks into: {verdict}"
