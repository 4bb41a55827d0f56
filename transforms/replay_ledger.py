"""The ledger of replays: each replay of a dead letter is sent by one run only.

URI: ``redis://HOST:PORT/DB?prefix=dlq_replay:&ttl=30d`` (``rediss://`` for TLS; the password as
for the Redis sink: in the URI, ``password_env`` or ``password_secret``).

Each replay has an id, ``ORIGINAL_ID:COUNT`` (`transforms.replay.replay_id`): the same for the
same dead letter whatever sink it was read back from. Before a replay is sent, the run claims
its id, one Lua call per block: ``SET PREFIX+ID RUN NX``, where ``RUN`` is the run's own id. A
replay whose id another run claimed before is not sent again (counted
``dropped.already_replayed``); one this run claimed is sent again when the runner retries a
bundle (a bundle that failed after its claims), so a retry never loses a replay. A run killed
between a claim and its send leaves that replay claimed and unsent: its dead letter is still
where it was read from, and a run with another ``prefix`` sends it. ``ttl`` makes claims expire
(by default they are kept).

A dry run only reads the ledger (``EXISTS``): it reports what earlier runs replayed and claims
nothing. A ledger that cannot be reached fails the bundle, which the runner retries.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam

from transforms.blocks import Block
from transforms.enrich.redis_lookup import endpoint_duration, lookup_connection
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.message import Record
from transforms.metrics import DROPPED, ReasonCounters
from transforms.replay import replay_id

__all__ = ["ALREADY_REPLAYED", "ClaimReplays", "Ledger"]

ALREADY_REPLAYED = "already_replayed"
_PARAMS = frozenset({"prefix", "ttl", "timeout", "attempts", "password_env", "password_secret"})

# KEYS: the replay ids; ARGV[1]: the run id; ARGV[2]: the time to live in seconds (0: none).
# Returns 1 for each id this run may send (claimed now, or by this run before), else 0.
_CLAIM = """
local sent = {}
for i, key in ipairs(KEYS) do
  local claimed
  if tonumber(ARGV[2]) > 0 then
    claimed = redis.call('SET', key, ARGV[1], 'NX', 'EX', ARGV[2])
  else
    claimed = redis.call('SET', key, ARGV[1], 'NX')
  end
  if claimed or redis.call('GET', key) == ARGV[1] then sent[i] = 1 else sent[i] = 0 end
end
return sent
"""


class Ledger:
    """Where the replays sent are recorded (see the module's description); picklable.

    Args:
        endpoint: the ledger's ``redis://`` URI.
    """

    def __init__(self, endpoint: Endpoint) -> None:
        if endpoint.scheme not in ("redis", "rediss"):
            raise EndpointError(
                f"{endpoint}: the ledger is a Redis database: redis://HOST:PORT/DB?prefix=P"
            )
        endpoint.check_params(_PARAMS)
        self.endpoint = endpoint
        self.connection = lookup_connection(endpoint, default_timeout=10.0)
        self.prefix = endpoint.params.get("prefix", "dlq_replay:")
        ttl = endpoint_duration(endpoint, "ttl", 0.0)
        if ttl < 0:
            raise EndpointError(f"{endpoint}: ttl must be positive (or left out: no expiry)")
        self.ttl = int(ttl)


@beam.typehints.with_output_types(Block)
class _ClaimFn(beam.DoFn):
    def __init__(self, ledger: Ledger, run_id: str, dry_run: bool) -> None:
        self._ledger = ledger
        self._run_id = run_id
        self._dry_run = dry_run

    def setup(self) -> None:
        self._client = self._ledger.connection.connect(decode=True)
        self._claim = self._client.register_script(_CLAIM)
        self._dropped = ReasonCounters(DROPPED)

    def teardown(self) -> None:
        self._client.close()

    def _free(self, keys: list[str]) -> list[bool]:
        if self._dry_run:
            with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.exists(key)
                return [not found for found in pipe.execute()]
        return [bool(sent) for sent in self._claim(keys, [self._run_id, self._ledger.ttl])]

    def process(self, block: list[Record]) -> Iterator[Block]:
        keys = [self._ledger.prefix + replay_id(record.data) for record in block]
        kept = Block(record for record, free in zip(block, self._free(keys), strict=True) if free)
        if len(kept) < len(block):
            self._dropped.inc(ALREADY_REPLAYED, len(block) - len(kept))
        if kept:
            yield kept


class ClaimReplays(beam.PTransform):
    """Keeps the dead letters whose next replay no other run sent (or parked).

    Input and output: Blocks of `Record`s of decoded dead letters
    (`transforms.replay.SelectDeadLetters`); a dead letter's key in the ledger is the id of its
    next replay (`transforms.replay.replay_id`). The others are counted
    ``dropped.already_replayed``.

    Args:
        ledger: the ledger.
        run_id: this run's id, the same for all its workers.
        dry_run: only read the ledger, claim nothing.
    """

    def __init__(self, ledger: Ledger, run_id: str, dry_run: bool = False) -> None:
        super().__init__()
        self._ledger = ledger
        self._run_id = run_id
        self._dry_run = dry_run

    def expand(self, blocks: beam.PCollection) -> beam.PCollection:
        return blocks | "Claim" >> beam.ParDo(_ClaimFn(self._ledger, self._run_id, self._dry_run))
