from __future__ import annotations
import random
from collections import Counter
import pytest
from schemas.errors import GuantongError
from tests.federation.harness import Federation
from tests.reliability.faults import FaultPlan, faulty_uplink, faulty_pull

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "fault", ["drop", "lose_answer", "duplicate", "delay", "truncate", "unavailable", "reset"]
)
async def test_each(fed: Federation, fault: str) -> None:
    fed.add("js.wx.jy.s1")
    fed.write("js.wx.jy.s1", 3)
    counts: Counter[str] = Counter()
    for i in range(6):
        fed.clock.advance(seconds=1)
        up = faulty_uplink(
            fed, "js.wx.jy.s1", rng=random.Random(i), plan=FaultPlan(**{fault: 1.0}), counts=counts
        )
        try:
            r = await up.sync()
            print(fault, "ok", r)
        except GuantongError as e:
            print(fault, "err", e)
        finally:
            await up.client.aclose()
        try:
            r2 = await faulty_pull(
                fed,
                "js.wx.jy.s1",
                rng=random.Random(i),
                plan=FaultPlan(**{fault: 1.0}),
                counts=counts,
            )
            print(fault, "pull ok", r2)
        except GuantongError as e:
            print(fault, "pull err", e)
    print(counts, fed.nodes["js.wx.jy"].log.head("js.wx.jy.s1"))
