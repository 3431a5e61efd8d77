"""How long a consumer's fetches wait: short while records flow, long once the stack rests.

tansu answers a waiting fetch only some time after data arrives, later the longer the wait (up to the wait itself),
so the wait is both what each pipeline hop may add and how often every consumer polls the broker (1000 / wait times
a second, per consumer, each fetch costing the broker in proportion to the partitions it names). While records flow
the short wait keeps hops quick; with none for `rest_after_s` nobody is waiting on a hop, and the long wait lets
broker, workers and gateway rest. The first record after a rest is read within the long wait (decision 0011 measures
how late); those after it, at the short one again. On a real Kafka, which answers a fetch as soon as data arrives,
the long wait costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

FETCHER_TURN_MS = 1_000
"""aiokafka's `consumer_timeout_ms` for every consumer of the stack: the longest its fetch routine sleeps between
looks at every assigned partition (default 200). It also wakes whenever a fetch returns, records are taken,
partitions are assigned or resumed, or metadata is missing, so this only paces an idle consumer's turns."""


@dataclass
class FetchPacer:
    busy_ms: int
    """The fetch wait while records flow."""
    rest_ms: int
    """The fetch wait at rest (at least `busy_ms`)."""
    rest_after_s: float = 10.0
    """Seconds without a record before the consumer rests."""
    last_record_at: float = 0.0
    """Monotonic time a fetch last returned records."""

    def wait_ms(self, now: float, got_records: bool) -> int:
        """The wait for the next fetch, after one that returned records or not at monotonic time `now`."""
        if got_records:
            self.last_record_at = now
        return max(self.rest_ms, self.busy_ms) if self.resting(now) else self.busy_ms

    def resting(self, now: float) -> bool:
        """Whether no record came for `rest_after_s` before monotonic time `now`."""
        return now - self.last_record_at >= self.rest_after_s

    def wake(self, now: float) -> None:
        """Fetch as if a record had just come (after a rebalance: the partitions just assigned may hold a backlog)."""
        self.last_record_at = now
