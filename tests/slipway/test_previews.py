"""The preview policy: which branches qualify, and how many previews may live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from slipway.errors import GateRefused
from slipway.previews import PreviewPolicy, check_patterns

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("patterns", "branch", "allowed"),
    [
        (("*",), "anything/at-all", True),
        (("feature/*",), "feature/login", True),
        (("feature/*",), "feature/a/b", True),  # * also spans /
        (("feature/*",), "Feature/login", False),  # case matters, as in git
        (("feature/*", "fix-*"), "fix-42", True),
        (("feature/*",), "main-hotfix", False),
        ((), "feature/login", False),
    ],
)
def test_a_branch_qualifies_when_it_matches_a_pattern(patterns, branch, allowed) -> None:
    assert PreviewPolicy(patterns, limit=3).allows(branch) is allowed


def test_a_limit_of_zero_turns_previews_off() -> None:
    assert not PreviewPolicy(("*",), limit=0).allows("feature/x")


def test_a_new_preview_past_the_limit_is_refused_naming_the_live_ones() -> None:
    policy = PreviewPolicy(("*",), limit=2)
    live = {"preview-a": NOW + timedelta(hours=1), "preview-b": None}
    with pytest.raises(GateRefused, match=r"2 live preview environments \(preview-a, preview-b\)"):
        policy.check("pay", "preview-c", live, branch="c", now=NOW)
    policy.check("pay", "preview-a", live, branch="a", now=NOW)  # an existing one is extended


def test_expired_previews_do_not_count() -> None:
    policy = PreviewPolicy(("*",), limit=1)
    live = {"preview-old": NOW - timedelta(minutes=1)}
    policy.check("pay", "preview-new", live, branch="new", now=NOW)


def test_a_branch_that_does_not_qualify_is_refused_even_for_an_existing_preview() -> None:
    policy = PreviewPolicy(("feature/*",), limit=5)
    with pytest.raises(GateRefused, match="matches none of the preview branches"):
        policy.check("pay", "preview-wip", {"preview-wip": None}, branch="wip", now=NOW)
    policy.check("pay", "preview-wip", {}, branch=None, now=NOW)  # a person asked, not a push


@pytest.mark.parametrize("bad", ["", " ", " feature/*"])
def test_blank_patterns_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="empty or has spaces"):
        check_patterns([bad])
