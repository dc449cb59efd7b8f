"""llama.cpp's slot caches as text: each slot's prefix cache and the host-memory prompt cache,
with llama.cpp's own rules for what a request finds there and what it overwrites (probed on
the real server; `tests/test_real_model.py` checks the prediction). The scheduler's router
places requests by it (ponder.runtime.slots); the scripted backend plays it in tests."""

from __future__ import annotations

from dataclasses import dataclass

from ponder.types import GenRequest


def common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix of two strings (slice comparisons run in C)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def prompt_key(req: GenRequest) -> str:
    """What a request's prompt begins with, for prefix matching: a raw prompt itself; a
    conversation as its messages in a plain template of our own. Matching needs only that a
    conversation extending another (an answer, then a question about it) has a key extending
    the other's key followed by its reply, which any fixed template gives."""
    if req.prompt is not None:
        return req.prompt
    assert req.messages is not None
    turns = "".join(f"<|{m.role}|>{m.content}<|end|>" for m in req.messages)
    if req.continue_final:  # the last (assistant) message goes on, unclosed
        return turns.removesuffix("<|end|>")
    return turns + "<|assistant|>"


@dataclass(frozen=True)
class Outcome:
    """What placing a prompt on a slot would do: characters of the prompt found cached,
    characters of the slot's text overwritten without being saved, the saved prompt (index
    into host memory) that would be loaded into the slot first."""

    reused: int
    destroyed: int
    load: int | None = None


class CacheModel:
    """llama.cpp's prompt caches, as text: what each slot's cache holds and the prompts kept
    in host memory. The rules (llama.cpp's server; checked against the embedded model by
    tests/test_real_model.py):

    - a prompt placed on a slot reuses the longest prefix it shares with the slot's text;
    - if that prefix is less than half of the slot's text, the slot's text is saved to host
      memory first (unless a saved prompt contains it; saved prompts it contains are
      dropped), and the saved prompt that shares at least a quarter of itself with the new
      prompt, and more than the slot would keep, is moved into the slot instead;
    - otherwise the rest of the slot's text is overwritten, unsaved;
    - an empty slot neither saves nor loads."""

    def __init__(self, slots: int, memory_chars: int = 32_000_000) -> None:
        self.texts = [""] * slots
        self.memory: list[str] = []  # oldest first
        self.memory_chars = memory_chars

    def outcome(self, key: str, slot: int, *, save: bool = False) -> Outcome:
        """`save`: the slot is saved whatever it keeps (llama.cpp's own least-recently-used
        choice does that)."""
        held = self.texts[slot]
        if not held:
            return Outcome(0, 0)
        shared = common_prefix(key, held)
        if shared * 2 >= len(held) and not save:
            return Outcome(shared, len(held) - shared)
        keep, sim, load = shared / len(held), shared / max(1, len(key)), None
        for i, saved in enumerate(self.memory):
            got = common_prefix(key, saved)
            if got * 4 < len(saved):  # llama.cpp will not trash most of a saved prompt
                continue
            if keep < got / len(saved) and sim < got / max(1, len(key)):
                keep, sim, load, shared = got / len(saved), got / max(1, len(key)), i, got
        return Outcome(shared, 0, load)

    def from_memory(self, key: str) -> int:
        """Characters of `key` a slot holding unrelated text would find: what it would load
        from host memory (any such slot does the same, so it says nothing about which)."""
        best, keep, sim = 0, 0.0, 0.0
        for saved in self.memory:
            got = common_prefix(key, saved)
            if got * 4 >= len(saved) and keep < got / len(saved) and sim < got / max(1, len(key)):
                best, keep, sim = got, got / len(saved), got / max(1, len(key))
        return best

    def place(self, key: str, slot: int, *, save: bool = False) -> int:
        """Put `key` on the slot as llama.cpp would; returns the characters found cached."""
        out = self.outcome(key, slot, save=save)
        held = self.texts[slot]
        if held and (save or common_prefix(key, held) * 2 < len(held)):
            if out.load is not None:
                self.memory.pop(out.load)  # moved into the slot, so no longer kept apart
            self._save(held)
        self.texts[slot] = key
        return out.reused

    def _save(self, text: str) -> None:
        if any(common_prefix(text, m) == len(text) for m in self.memory):
            return
        self.memory = [m for m in self.memory if common_prefix(text, m) < len(m)]
        self.memory.append(text)
        while len(self.memory) > 1 and sum(map(len, self.memory)) > self.memory_chars:
            self.memory.pop(0)
