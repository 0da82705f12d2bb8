"""Lookahead: the requests a mode expects to make next, drawn once, handed down as a plan.

A mode that knows its future (a feedback chain, a run of keyframes) plans it here. Seeds come from
the one :class:`~dream_window.values.seeds.SeedSource` at the moment a request is planned, not
when it is made, so the request the mode makes later is *exactly* the one the backend may already
be running; no layer below has to guess a seed. When the plan turns out wrong (the prompt
changed, a cached frame is injected), the seeds already drawn are still used next, in order, so
``seed_policy: increment`` stays gap-free.
"""

from __future__ import annotations

from collections import deque

from dream_window.dream.modes.base import ModeContext
from dream_window.values.generation import GenerationRequest, Plan, Step


class Lookahead:
    def __init__(self, ctx: ModeContext, *, depth: int) -> None:
        if depth < 0:
            raise ValueError(f"a lookahead depth cannot be negative, got {depth}")
        self._ctx = ctx
        self._depth = depth
        self._seeds: deque[int] = deque()

    def _seed(self, i: int) -> int:
        while len(self._seeds) <= i:
            self._seeds.append(self._ctx.seeds.next())
        return self._seeds[i]

    def _request(self, seed: int, prompt: str, denoise: float, return_latent: bool) -> GenerationRequest:
        return self._ctx.request(prompt, denoise=denoise, seed=seed, return_latent=return_latent)

    def next(self, prompt: str, *, denoise: float = 1.0, return_latent: bool = False) -> GenerationRequest:
        """The request to make now: the first planned seed, or a fresh one."""
        self._seed(0)
        return self._request(self._seeds.popleft(), prompt, denoise, return_latent)

    def give_back(self, seeds: list[int]) -> None:
        """Seeds drawn for requests that were never made after all (work asked for ahead and
        dropped): they come next again, in order, so what is shown does not depend on how far
        ahead the work had got."""
        self._seeds.extendleft(reversed(seeds))

    def plan(
        self,
        prompt: str,
        *,
        chained: bool,
        denoise: float = 1.0,
        return_latent: bool = False,
        ts: tuple[float, ...] = (),
        depth: int | None = None,
    ) -> Plan:
        """The next ``depth`` requests for ``prompt``, as the mode will make them if nothing changes."""
        n = self._depth if depth is None else depth
        return Plan(
            tuple(
                Step(self._request(self._seed(i), prompt, denoise, return_latent), chained, ts)
                for i in range(n)
            )
        )
