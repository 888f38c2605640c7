"""The `mhl` readiness rule: an offload goes once its own ASC MHL history is
complete and each file matches it.

Per offload ("card"): settled files wait until the history in
`<offload>/ascmhl/` has held still for `settle_seconds` and reads complete
(upstream.read_history), and until no file of the offload is still settling.
Then each file is judged:

- listed, same size and hash (verify_source.check_file, in worker threads) ->
  sent, with the xxh64 of the bytes that matched;
- listed but different -> problem `mismatch` (`unreadable` if it cannot be read);
- not listed in any generation -> problem `unlisted` (files the offload tool's
  own ignore patterns leave out are sent unchecked: the tool chose not to
  record them);
- listed, but not in the watch folder -> problem `missing`.

Problems are recorded per file in the journal (offload_checks.py) with the
version judged, so a rescan or a restart never reads such a file again, and
the offload is `source_mismatch` until an operator runs `triplicate accept`,
which the gate picks up within a second and sends those files as they are.
A file that later matches (copied again, or listed by a newer generation)
clears its problem and is sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

import structlog

from . import offload_checks, upstream
from .offload_checks import Problem
from .readiness import LOOK_SECONDS, Gate, GateContext, Settled
from .sequences import group
from .verify_source import Verdict, check_file

log = structlog.get_logger("triplicate.readiness")

PROBLEM_LINES = 20
"""Problems logged one line each per offload and judgement; more are summed up."""


@dataclass
class _Card:
    name: str  # NFC offload name
    disk_name: str
    pending: dict[str, Settled] = field(default_factory=dict)  # settled, not judged yet
    checking: set[str] = field(default_factory=set)  # being hashed now
    history: upstream.History | None = None
    history_sig: upstream.Signature | None = None
    history_since: float = 0.0
    history_problem: str | None = None  # why the settled history cannot be used
    rejudge: bool = False  # a history was (re)loaded: judge even with nothing pending
    is_folder: bool = True  # False for a loose file at the top of the watch folder
    matched: list[str] = field(default_factory=list)  # verified since the last summary
    new_problems: list[tuple[str, str, str]] = field(default_factory=list)  # (relpath, kind, detail)


class MhlGate(Gate):
    rule = "mhl"

    def __init__(self, ctx: GateContext) -> None:
        super().__init__(ctx)
        self.cards: dict[str, _Card] = {}
        watch = str(ctx.root)
        found = offload_checks.problems(ctx.journal, watch) if ctx.journal is not None else []
        self.problems: dict[str, Problem] = {p.relpath: p for p in found}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots: asyncio.Semaphore | None = None
        self._last_look = 0.0

    # ---- what the watcher asks ------------------------------------------------

    def settled(self, files: list[Settled]) -> None:
        for f in files:
            card = self._card(f)
            card.pending[f.relpath] = f
        now = time.monotonic()
        for offload in {f.offload for f in files}:
            self._advance(self.cards[offload], now)

    def holds(self, relpath: str, version: tuple[int, int]) -> bool:
        p = self.problems.get(relpath)
        return p is not None and not p.accepted and p.version == version

    @property
    def idle(self) -> bool:
        return not self._tasks and not any(self._must_wait(c) for c in self.cards.values())

    def busy(self, offload: str) -> bool:
        card = self.cards.get(offload)
        return card is not None and bool(card.pending or card.checking)

    def next_look(self) -> float | None:
        return LOOK_SECONDS if self.ctx.journal is not None or self.cards else None

    def tick(self, now: float) -> None:
        """Offloads with files waiting: every tick. Once a second: operator
        decisions, and offloads with open problems (a new generation may list
        an unlisted file, a missing one may come back)."""
        open_problems: set[str] = set()
        if now - self._last_look >= LOOK_SECONDS:
            self._last_look = now
            self._act_on_decisions()
            open_problems = {p.offload for p in self.problems.values() if not p.accepted}
        for card in list(self.cards.values()):
            if card.pending or card.rejudge or card.name in open_problems:
                self._advance(card, now)

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    # ---- one offload ------------------------------------------------------------

    def _card(self, f: Settled) -> _Card:
        card = self.cards.get(f.offload)
        if card is None:
            card = self.cards[f.offload] = _Card(f.offload, f.disk_path.split("/", 1)[0])
            card.is_folder = "/" in f.relpath
        return card

    def _must_wait(self, card: _Card) -> bool:
        """A one-shot run waits for checks in flight and for histories that are
        still settling; not for a history that is not there at all."""
        if card.checking:
            return True
        if not card.pending or not card.is_folder:
            return False
        return card.history is not None or (card.history_sig is not None and card.history_problem is None)

    def _advance(self, card: _Card, now: float) -> None:
        if not card.is_folder:
            self._waiting(card, "a loose file cannot carry an ASC MHL history; put it in a folder with its history")
            return
        if not self._history_ready(card, now):
            return
        if not (card.pending or card.rejudge) or self.ctx.arriving(card.name):
            return  # judge once every file of the offload is in
        card.rejudge = False
        self._judge(card)

    def _history_ready(self, card: _Card, now: float) -> bool:
        sig = upstream.folder_signature(self.ctx.root / card.disk_name)
        if sig != card.history_sig or sig is None:
            if sig != card.history_sig:
                card.history_sig, card.history_since = sig, now
                card.history, card.history_problem = None, None
            if sig is None:
                self._waiting(card, "no ASC MHL history (ascmhl/ascmhl_chain.xml) in the offload folder yet")
                return False
        if card.history is not None:
            return True
        if card.history_problem is not None:
            return False
        if not self._history_settled(sig, card.history_since, now):
            self._waiting(card, "its ASC MHL history is still being written")
            return False
        try:
            card.history = upstream.read_history(self.ctx.root / card.disk_name)
        except upstream.NotReady as exc:
            card.history_problem = str(exc)
            self._history_unusable(card, str(exc))
            return False
        self._requeue_unlisted(card)
        card.rejudge = True
        return True

    def _history_settled(self, sig: upstream.Signature | None, since: float, now: float) -> bool:
        settle = self.ctx.config.settle_seconds
        if now - since >= settle:
            return True
        newest = max((mtime for _, _, mtime in sig or ()), default=0) / 1e9
        return now > since and time.time() - newest >= settle  # already old when first seen

    def _history_unusable(self, card: _Card, reason: str) -> None:
        chain = self.ctx.root / card.disk_name / upstream.mhl.FOLDER / upstream.mhl.CHAIN_FILE
        if not chain.exists():
            self._waiting(card, reason)
            return
        if self.set_state(card.name, "mhl_invalid", reason):
            log.error("offload_history_unusable", offload=card.name, reason=reason, watch=str(self.ctx.root),
                      fix="let the offload tool finish or run it again; nothing of this offload is sent until it reads complete")

    def _waiting(self, card: _Card, reason: str) -> None:
        if self.set_state(card.name, "waiting", reason):
            log.info("offload_waiting", offload=card.name, reason=reason, watch=str(self.ctx.root))

    # ---- judging --------------------------------------------------------------------

    def _judge(self, card: _Card) -> None:
        history = card.history
        assert history is not None
        prefix = len(card.name) + 1
        unchecked = []
        for relpath, f in list(card.pending.items()):
            del card.pending[relpath]
            inner = relpath[prefix:]
            ref = history.files.get(inner)
            if ref is not None:
                self._check_listed(card, f, ref)
            elif history.ignores(inner):
                unchecked.append(f)
            else:
                detail = f"is listed in no generation of the offload's ASC MHL history (newest: {history.newest})"
                self._problem(card, f.relpath, f.disk_path, "unlisted", detail, f.version, None)
        if unchecked:
            log.info("files_ignored_by_history", offload=card.name, files=len(unchecked),
                     note="the offload tool's ignore patterns leave them out; sent unchecked")
            self.ctx.release([self.ctx.seen(f) for f in unchecked])
        self._look_for_missing(card)
        self._update_state(card)

    def _check_listed(self, card: _Card, f: Settled, ref: upstream.Reference) -> None:
        known = self.problems.get(f.relpath)
        if known is not None and known.version == f.version and known.kind in ("mismatch", "unreadable"):
            # judged before (rescan, restart): the verdict stands without a read
            if known.accepted and not known.released:
                self._release_accepted(known)
            return
        card.checking.add(f.relpath)
        task = asyncio.get_running_loop().create_task(self._verify(card, f, ref))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _verify(self, card: _Card, f: Settled, ref: upstream.Reference) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.ctx.config.verify_workers)
        try:
            async with self._slots:
                verdict = await asyncio.to_thread(check_file, self.ctx.root / f.disk_path, f.size, f.mtime_ns, ref)
        finally:
            card.checking.discard(f.relpath)
        self._on_verdict(card, f, verdict)

    def _on_verdict(self, card: _Card, f: Settled, verdict: Verdict) -> None:
        if verdict.changed:
            self.ctx.look_again(f.disk_path)
        elif verdict.ok:
            if f.relpath in self.problems:
                del self.problems[f.relpath]
                if self.ctx.journal is not None:
                    offload_checks.clear_problem(self.ctx.journal, str(self.ctx.root), card.name, f.relpath)
            card.matched.append(f.relpath)
            self.ctx.release([self.ctx.seen(f, verdict.xxh64)])
        else:
            kind = "unreadable" if verdict.unreadable else "mismatch"
            self._problem(card, f.relpath, f.disk_path, kind, verdict.detail, f.version, verdict.xxh64)
        self._update_state(card)

    def _look_for_missing(self, card: _Card) -> None:
        """Listed files that are neither sent, nor waiting, nor on disk."""
        assert card.history is not None
        for inner in card.history.files:
            relpath = f"{card.name}/{inner}"
            if relpath in self.ctx.known or relpath in card.checking or relpath in card.pending:
                continue
            p = self.problems.get(relpath)
            if p is not None and p.kind != "missing":
                continue
            if self._on_disk(card, inner):
                continue  # still settling, or left out by the exclude list
            if p is None:
                generation = card.history.files[inner].generation
                self._problem(card, relpath, "", "missing", f"is listed in {generation} but is not in the watch folder", None, None)

    def _on_disk(self, card: _Card, inner: str) -> bool:
        folder = self.ctx.root / card.disk_name
        for spelling in {inner, unicodedata.normalize("NFD", inner)}:
            if os.path.lexists(folder / spelling):
                return True
        return False

    def _problem(
        self, card: _Card, relpath: str, disk_path: str, kind: str, detail: str,
        version: tuple[int, int] | None, xxh64: str | None,
    ) -> None:
        size, mtime_ns = version if version is not None else (None, None)
        self.problems[relpath] = Problem(0, str(self.ctx.root), card.name, relpath, disk_path, kind, detail,
                                         size, mtime_ns, xxh64, False, False)
        if self.ctx.journal is not None:
            offload_checks.record_problem(self.ctx.journal, str(self.ctx.root), card.name, relpath, disk_path,
                                          kind, detail, version, xxh64)
        card.new_problems.append((relpath, kind, detail))

    def _requeue_unlisted(self, card: _Card) -> None:
        """A new history may list files that an older one did not."""
        for p in list(self.problems.values()):
            if p.offload == card.name and p.kind == "unlisted" and not p.accepted and p.version is not None:
                card.pending[p.relpath] = Settled(p.relpath, p.disk_path, p.version[0], p.version[1])

    # ---- state and reports --------------------------------------------------------

    def _update_state(self, card: _Card) -> None:
        self._report_problems(card)
        if card.pending or card.checking:
            self.set_state(card.name, "checking", f"{len(card.pending) + len(card.checking)} file(s) left to check")
            return
        mine = [p for p in self.problems.values() if p.offload == card.name]
        undecided = [p for p in mine if not p.accepted]
        if undecided:
            counts = Counter(p.kind for p in undecided)
            detail = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
            if self.set_state(card.name, "source_mismatch", detail):
                log.error("offload_source_mismatch", offload=card.name, watch=str(self.ctx.root), **counts,
                          fix=f"copy the files again from the camera card, or run `triplicate accept {card.name}` to send them as they are")
        elif mine:
            self.set_state(card.name, "accepted", f"{len(mine)} file(s) accepted as they are by an operator")
        elif self.set_state(card.name, "ready", None) or card.matched:
            self._report_matched(card)

    def _report_matched(self, card: _Card) -> None:
        if not card.matched:
            return
        grouped = group(r.split("/", 1)[-1] for r in card.matched)  # inside the offload, as files_ready
        log.info("offload_matches_history", offload=card.name, files=len(card.matched),
                 manifest=card.history.newest if card.history else None, sequences=grouped.lines(5))
        card.matched = []

    def _report_problems(self, card: _Card) -> None:
        found, card.new_problems = card.new_problems, []
        for relpath, kind, detail in found[:PROBLEM_LINES]:
            log.warning("source_file_problem", offload=card.name, file=relpath, problem=kind, detail=detail)
        if len(found) > PROBLEM_LINES:
            rest = group(r for r, _, _ in found[PROBLEM_LINES:])
            log.warning("source_file_problems_more", offload=card.name, files=len(found) - PROBLEM_LINES,
                        sequences=rest.lines(10), see="triplicate status")

    # ---- operator decisions ------------------------------------------------------

    def _act_on_decisions(self) -> None:
        if self.ctx.journal is None:
            return
        decided = offload_checks.accepted_unreleased(self.ctx.journal, str(self.ctx.root))
        for p in decided:
            self.problems[p.relpath] = p
            self._release_accepted(p)
        for offload in sorted({p.offload for p in decided}):
            log.warning("source_problems_accepted", offload=offload, files=sum(1 for p in decided if p.offload == offload),
                        note="sent as they are, recorded as accepted")
            card = self.cards.get(offload)
            if card is not None:
                self._update_state(card)

    def _release_accepted(self, p: Problem) -> None:
        if p.kind != "missing" and p.version is not None and p.relpath not in self.ctx.known:
            self.ctx.release([self.ctx.seen(Settled(p.relpath, p.disk_path or p.relpath, *p.version), p.xxh64)])
        if self.ctx.journal is not None:
            offload_checks.mark_released(self.ctx.journal, str(self.ctx.root), p.offload, [p.relpath])
        self.problems[p.relpath] = dataclasses.replace(p, accepted=True, released=True)
