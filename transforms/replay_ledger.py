"""The ledger of replays: each replay of a dead letter is sent by one run only.

URI: ``redis://HOST:PORT/DB?prefix=dlq_replay:&ttl=30d`` (``rediss://`` for TLS; the password as
for the Redis sink: in the URI, ``password_env`` or ``password_secret``).

Each replay has an id, ``ORIGINAL_ID:COUNT`` (`transforms.replay.replay_id`): the same for the
same dead letter whatever sink it was read back from. Before a replay is sent, the run claims
its id, one Lua call per block: ``SET PREFIX+ID CLAIMANT NX``, where ``CLAIMANT`` is the run's
own id and where it read the dead letter (file and line, message id...). A replay whose id was
claimed before by another run, or by this run for another copy of the same dead letter (a sink
writes at least once, so copies happen), is not sent again (counted
``dropped.already_replayed``); one this run claimed for the same copy is sent again when the
runner retries a bundle (a bundle that failed after its claims), so a retry never loses a
replay. A run killed
between a claim and its send leaves that replay claimed and unsent: its dead letter is still
where it was read from, and a run with another ``prefix`` sends it. ``ttl`` makes claims expire
(by default they are kept).

A dry run only reads the ledger (``EXISTS``): it reports what earlier runs replayed and claims
nothing. A ledger that cannot be reached when the run is built (`Ledger.check`) stops it before
it starts; one lost during the run fails the bundle, which the runner retries.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import apache_beam as beam
import redis

from transforms.blocks import Block
from transforms.enrich.redis_lookup import endpoint_duration, lookup_connection
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.message import Record
from transforms.metrics import DROPPED, ReasonCounters
from transforms.replay import replay_id

__all__ = ["ALREADY_REPLAYED", "ClaimReplays", "Ledger"]

ALREADY_REPLAYED = "already_replayed"
_PARAMS = frozenset({"prefix", "ttl", "timeout", "attempts", "password_env", "password_secret"})

# KEYS: the replay ids; ARGV[1]: the time to live in seconds (0: none); ARGV[1 + i]: the
# claimant of KEYS[i]. Returns 1 for each id this claimant may send (claimed now, or by the
# same claimant before: a retried bundle), else 0.
_CLAIM = """
local sent = {}
for i, key in ipairs(KEYS) do
  local claimant = ARGV[i + 1]
  local claimed
  if tonumber(ARGV[1]) > 0 then
    claimed = redis.call('SET', key, claimant, 'NX', 'EX', ARGV[1])
  else
    claimed = redis.call('SET', key, claimant, 'NX')
  end
  if claimed or redis.call('GET', key) == claimant then sent[i] = 1 else sent[i] = 0 end
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

    @classmethod
    def reached(cls, uri: str) -> Ledger:
        """Returns the ledger of ``uri`` once it answered (`check`): how a run builds its own."""
        ledger = cls(Endpoint.parse(uri))
        ledger.check()
        return ledger

    def check(self) -> None:
        """Raises `EndpointError` when the ledger cannot be reached: call it before a run."""
        client = self.connection.connect()
        try:
            client.ping()
        except redis.RedisError as error:
            raise EndpointError(
                f"{self.endpoint}: the ledger cannot be reached ({type(error).__name__}: "
                f"{error}): start it, or fix the URI"
            ) from None
        finally:
            client.close()


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

    def _free(self, keys: list[str], claimants: list[str]) -> list[bool]:
        if self._dry_run:
            with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.exists(key)
                return [not found for found in pipe.execute()]
        return [bool(sent) for sent in self._claim(keys, [self._ledger.ttl, *claimants])]

    def _claimant(self, record: Record) -> str:
        """This run and where it read the dead letter: a retry of its bundle claims alike."""
        where = record.origin.origin.to_dict() if record.origin is not None else {}
        return f"{self._run_id} {json.dumps(where, sort_keys=True, default=str)}"

    def process(self, block: list[Record]) -> Iterator[Block]:
        keys = [self._ledger.prefix + replay_id(record.data) for record in block]
        free = self._free(keys, [self._claimant(record) for record in block])
        kept = Block(record for record, ok in zip(block, free, strict=True) if ok)
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
