"""Every chapter has 3–6 exercises, each asked in its notebook with an answer cell and a collapsed solution, and an
unanswered exercise is not an error."""

import re
from pathlib import Path

import nbformat
import pytest

from arclib.exercises import check, exercises

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_each_exercise_is_asked_answered_and_solved_in_its_chapter(notebook):
    chapter = notebook.name[:2]
    ids = [e.id for e in exercises(chapter)]
    if "_appendix_" in notebook.name:  # an appendix shows the library's details; it asks nothing
        assert ids == [], f"appendix {chapter} has exercises"
        return
    assert 3 <= len(ids) <= 6, f"chapter {chapter} has {len(ids)} exercises"
    cells = nbformat.read(notebook, as_version=4).cells
    asked = [re.match(r"### Exercise (\d\d\.\d+)", c.source) for c in cells if c.cell_type == "markdown"]
    assert [m.group(1) for m in asked if m] == ids, "the chapter's exercise headings and arclib's checkers differ"
    for exercise_id in ids:
        heading = next(i for i, c in enumerate(cells) if c.source.startswith(f"### Exercise {exercise_id}"))
        answer, solution = cells[heading + 1], cells[heading + 2]
        assert answer.cell_type == "code" and f'check("{exercise_id}"' in answer.source
        assert solution.cell_type == "markdown" and solution.source.lstrip().startswith("<details>")
        assert "not answered yet" in "".join(o.get("text", "") + str(o.get("data", {})) for o in answer.outputs), \
            f"exercise {exercise_id} is committed answered"


@pytest.mark.parametrize("exercise_id", [e.id for e in exercises()])
def test_unanswered_is_not_an_error(exercise_id):
    assert check(exercise_id, ...).passed is None
    assert check(exercise_id, None).passed is None
