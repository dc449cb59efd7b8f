from __future__ import annotations

from ponder.search.tree import Tree, outcome_below, preference_pairs


def planted() -> tuple[Tree, dict[int, bool]]:
    """root ─ a (0.9) ─ a1 (terminal, right)
    └ b (0.2) ─ b1 (terminal, wrong)
              └ b2 (0.7, terminal, no gold known)"""
    t = Tree("What is 2+2?")
    a = t.add(t.root, "2+2 is 4.", score=0.9, tokens=5)
    b = t.add(t.root, "2+2 is 5.", score=0.2, tokens=5)
    a1 = t.add(a, "\\boxed{4}", terminal=True, answer="4", score=0.95, tokens=3)
    b1 = t.add(b, "\\boxed{5}", terminal=True, answer="5", score=0.1, tokens=3)
    t.add(b, "so \\boxed{22}", terminal=True, answer="22", score=0.7, tokens=4)
    return t, {a1.id: True, b1.id: False}


def test_paths_text_and_counts() -> None:
    t, _ = planted()
    a1 = t.nodes[3]
    assert t.steps(a1) == ("2+2 is 4.", "\\boxed{4}")
    assert t.text(a1) == "2+2 is 4.\n\n\\boxed{4}"  # terminal: no trailing separator
    assert t.text(t.nodes[1]) == "2+2 is 4.\n\n"  # more steps follow
    assert t.text(t.root) == ""
    assert [n.depth for n in t.path(a1)] == [1, 2]
    assert t.tokens() == 20 and len(list(t.leaves())) == 3 and len(list(t.terminals())) == 3
    assert len(t.records()) == 6 and t.records()[3]["answer"] == "4"


def test_outcomes_below() -> None:
    t, gold = planted()
    assert outcome_below(t, t.nodes[1], gold) is True
    assert outcome_below(t, t.nodes[2], gold) is False  # b1 wrong, b2 unknown
    assert outcome_below(t, t.nodes[5], gold) is None


def test_pairs_prefer_the_correct_subtree_then_the_higher_score() -> None:
    t, gold = planted()
    pairs = preference_pairs(t, gold)
    top = next(p for p in pairs if p["depth"] == 0)
    assert top["chosen"] == "2+2 is 4." and top["rejected"] == "2+2 is 5."
    assert top["basis"] == "outcome" and top["chosen_correct"] and not top["rejected_correct"]
    below_b = next(p for p in pairs if p["depth"] == 1)
    # b1 wrong vs b2 unknown: decided by score (0.7 > 0.1)
    assert below_b["basis"] == "score" and below_b["chosen"] == "so \\boxed{22}"
    assert below_b["prefix"] == "2+2 is 5.\n\n" and below_b["prompt"] == "What is 2+2?"
    assert len(pairs) == 2
    assert preference_pairs(t, gold, min_margin=0.7) == [top]  # 0.6 apart is not enough
    # without gold, the scores decide the top pair too
    assert preference_pairs(t)[0]["basis"] == "score"
