"""What went wrong with a submission, as the domain says it: a code and parameters.

The words a visitor reads are chosen at the edge (`app.web.messages`), in one place, so a
second language is a second table there, not a rewrite of the checks that found the
problem. A code names the problem (`phone.not_a_number`); `field` says which part of
the submission it is about (None: the submission as a whole).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Problem:
    field: str | None
    code: str
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class Refusal(Exception):
    """A check refused the submission for `problem`: the visitor can put it right (the
    form again, or a 4xx from the API). Each kind sets its problem, as a class
    attribute or, where it has parameters, for the instance."""

    problem: Problem
