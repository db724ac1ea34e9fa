"""Kaldi's compiled n-gram LMs as the old LM of rescoring: ``G.fst`` and ``G.carpa``.

Both score a word sequence the way Kaldi's rescoring tools do when they take the old LM out of lattice costs,
in the same units as :class:`~asr_lm_quant.ngram.arpa.ArpaLM` (negated natural logs; ``<s>`` is the start, not a
scored word; ``</s>`` is scored last), with the same methods (``sentence_cost``, ``word_costs``, ``is_oov``,
``has_unk``, and ``begin_state``/``word_cost``/``end_cost`` word by word). Words are mapped to integer ids with
the ``words.txt`` the LM was compiled with.

Two semantics for ``G.fst``, as Kaldi's rescoring offers them (``--use-phi``):

* **min over paths** (the default; Kaldi's ``--use-phi false``, ``lattice-lmrescore`` on ``fstproject
  --project_output=true G.fst``): the cost of a word sequence is that of the cheapest path through G that
  outputs it, back-off arcs (output label epsilon; input label ``#0`` or epsilon) taken as epsilons. This is
  the cost a lattice made by decoding with ``HCLG = H o C o L o G`` holds: the decoder took the cheapest
  path too, and a back-off arc with a negative cost (common in Witten-Bell LMs) makes backing off cheaper
  than the explicit n-gram. It is computed word by word as a weighted subset construction over G (a
  shortest distance restricted to the word sequence): a state is the set of G states the words can end in,
  each with its cost above the cheapest; a word's cost is the cheapest way to read it from the epsilon
  closure of that set. Negative costs allowed: the closure relaxes arcs until nothing improves (back-off
  arcs go to lower orders, so this ends), with no shortest-first assumption. The costs of the words of a
  sentence sum to its min-over-paths cost.
* **ARPA / failure semantics** (``use_phi=True``; Kaldi's ``--use-phi true``, ``lattice-compose
  --phi-label``): from the history state each word follows the arc whose output label is the word, else the
  back-off arc, adding its weight, until a state has the word; the ARPA file's probabilities exactly.
  ``</s>`` is the final weight, found along back-off arcs likewise.

A word G cannot read is an error naming the word and the state.

:class:`ConstArpaLM` reads Kaldi's ``ConstArpaLm`` binary (``arpa-to-const-arpa``, ``utils/build_const_arpa_lm.sh``;
``src/lm/const-arpa-lm.{h,cc}``) and scores as ``ConstArpaLmDeterministicFst`` does in
``lattice-lmrescore-const-arpa``. Layout after Kaldi's binary marker ``\\0B`` (tokens are followed by one space;
each integer is a size byte, 4 or 8, then the value, little-endian)::

    <ConstArpaLm> <LmInfo> bos eos unk(-1: none) order </LmInfo>
    <LmStates> size(int64) size*int32 </LmStates>
    <LmUnigram> num_words(int32) num_words*int64 </LmUnigram>
    <LmOverflow> count(int32) count*int64 </LmOverflow> </ConstArpaLm>

The older layout (no tokens; first byte 4; every array element with its own size byte) is read too.
``<LmStates>`` holds one record per n-gram of order below the highest that is a unigram, has a backoff weight
or has children: logprob (float32 bits), backoff logprob, child count, then (word, child_info) pairs sorted by
word. An even ``child_info`` is the child's logprob with its lowest bit cleared (a leaf); an odd positive one
is twice the child record's offset from its parent, plus one; an odd negative one is ``-(2 i + 1)`` for entry
``i`` of the overflow table. Unigram and overflow entries are record offsets plus one (0: none). Logprobs are
natural logs (the ARPA file's log10 times ln 10, as Kaldi's ARPA parser converts them).

What is verified and what is not: no tool that writes ``G.carpa`` can be installed here (Kaldi's
``arpa-to-const-arpa`` is not packaged). The reader was written from the layout above and is tested on files
that the tests lay out byte by byte following ``ConstArpaLmBuilder`` step by step (record order, leaf
folding, relative offsets, overflow entries), including one small file written out by hand; the costs it gives
for those files agree with kenlm on the ARPA file they encode. It has not been run on a ``G.carpa`` written by
Kaldi itself.
"""

from __future__ import annotations

import bisect
import math
import struct
from pathlib import Path

import numpy as np

from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.symbols import SymbolTable, unknown_word
from asr_lm_quant.textio import split_fields

MAX_BACKOFF_CHAIN = 64  # n-gram orders a backoff chain can cross; more means the backoff arcs form a cycle
FLT_MIN = float(np.finfo(np.float32).tiny)  # Kaldi's "no such unigram" logprob


class _WordLM:
    """What both LMs share: id lookup and the whole-sentence methods built on ``word_cost``/``end_cost``."""

    path: Path
    symbols: SymbolTable
    unk_id: int | None
    has_unk: bool
    order: int | None = None

    def _id(self, word: str) -> int:
        i = self.symbols.word_to_id.get(word)
        if i is None:
            if self.unk_id is None:
                raise InputError(self.path, f"word {word!r} is not in {self.symbols.path} and the LM has no "
                                            "unknown-word symbol")
            return self.unk_id
        return i

    def sentence_cost(self, words) -> float:
        """Cost (negated natural log) of ``<s> words </s>``."""
        return float(sum(self.word_costs(words, eos=True)))

    def word_costs(self, words, eos: bool = True) -> list[float]:
        """Per-word costs of ``<s> words`` (and ``</s>`` last when ``eos``)."""
        if isinstance(words, str):
            words = split_fields(words)
        state = self.begin_state()
        out = []
        for w in words:
            c, state = self.word_cost(state, w)
            out.append(c)
        if eos:
            out.append(self.end_cost(state))
        return out


class FstLM(_WordLM):
    """``G.fst`` as the old LM; ``words`` is the ``words.txt`` it was compiled with; ``use_phi`` picks the
    ARPA back-off walk instead of the min-over-paths cost (see the module docstring)."""

    CACHE_LIMIT = 1 << 20  # (state, word) steps remembered; cleared when full

    def __init__(self, path, words, use_phi: bool = False):
        from asr_lm_quant.kaldi.std_fst import read_std_fst

        self.path = Path(path)
        self.use_phi = bool(use_phi)
        self.semantics = "arpa" if self.use_phi else "min-over-paths"
        self.symbols = SymbolTable.load(words)
        g = self.fst = read_std_fst(self.path)
        if g.start < 0:
            raise InputError(self.path, "the FST has no start state (an empty G.fst)")
        ns = g.num_states
        src = np.repeat(np.arange(ns, dtype=np.int64), np.diff(g.arc_offsets))
        arc_ids = np.arange(g.num_arcs, dtype=np.int64)
        is_backoff = g.olabel == 0
        self.backoff = np.full(ns, -1, np.int64)
        bo_src = src[is_backoff]
        if len(bo_src) != len(np.unique(bo_src)):
            s = int(np.flatnonzero(np.bincount(bo_src, minlength=ns) > 1)[0])
            raise InputError(self.path, f"state {s} has more than one backoff arc (output label epsilon): "
                                        "not an n-gram LM as arpa2fst writes it")
        self.backoff[bo_src] = arc_ids[is_backoff]
        if np.any(g.olabel < 0):
            raise InputError(self.path, "negative arc label")
        keys = (src[~is_backoff] << 32) | g.olabel[~is_backoff].astype(np.int64)
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._arcs = arc_ids[~is_backoff][order]
        dup = np.flatnonzero(self._keys[1:] == self._keys[:-1])
        if len(dup):
            k = int(self._keys[dup[0]])
            raise InputError(self.path, f"state {k >> 32} has two arcs for word id {k & 0xffffffff}: not a "
                                        "deterministic n-gram LM")
        labels = np.unique(g.olabel[~is_backoff])
        unknown = [int(x) for x in labels if int(x) not in self.symbols.id_to_word]
        if unknown:
            raise InputError(self.symbols.path, f"has no word for label {unknown[0]} of {self.path} "
                                                f"({len(unknown)} labels missing): not the words.txt of this G.fst")
        # The unigram state: where the start state's backoff chain ends; its words are the LM's vocabulary.
        root, steps = g.start, 0
        while self.backoff[root] >= 0:
            root = int(g.nextstate[self.backoff[root]])
            steps += 1
            if steps > MAX_BACKOFF_CHAIN:
                raise InputError(self.path, "the backoff arcs from the start state form a cycle")
        lo, hi = np.searchsorted(self._keys, [root << 32, (root + 1) << 32])
        self.vocab_ids = set((self._keys[lo:hi] & 0xffffffff).tolist())
        unk = unknown_word(self.symbols.path)  # oov.txt beside words.txt, else <unk>
        uid = self.symbols.word_to_id.get(unk)
        self.has_unk = uid is not None and uid in self.vocab_ids
        self.unk_id = uid if self.has_unk else None
        self._cache: dict = {}

    def is_oov(self, word: str) -> bool:
        i = self.symbols.word_to_id.get(word)
        return bool(i is None or i not in self.vocab_ids)

    def _arc(self, state: int, label: int) -> int:
        k = (state << 32) | label
        i = int(np.searchsorted(self._keys, k))
        return int(self._arcs[i]) if i < len(self._keys) and self._keys[i] == k else -1

    def _label(self, word) -> int:
        label = int(word) if isinstance(word, (int, np.integer)) else self._id(word)
        if label not in self.vocab_ids and self.unk_id is not None:
            label = self.unk_id
        return label

    def _no_arc(self, state, what: str):
        return InputError(self.path, f"no arc for {what} from state {state} and no backoff arc to follow: "
                                     "this G.fst cannot score the hypothesis (is it the decoder's LM, and "
                                     "words.txt its symbol table?)")

    def _back_off(self, state: int, what: str):
        b = int(self.backoff[state])
        if b < 0:
            raise self._no_arc(state, what)
        return float(self.fst.weight[b]), int(self.fst.nextstate[b])

    # A state is a tuple of (G state, cost above the cheapest) pairs, sorted; with use_phi, one G state.
    def begin_state(self):
        return self.fst.start if self.use_phi else ((int(self.fst.start), 0.0),)

    def word_cost(self, state, word):
        """``(cost_nats, next_state)`` of ``word`` after ``state``."""
        label = self._label(word)
        if self.use_phi:
            return self._phi_word_cost(state, label, word)
        key = (state, label)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._min_word_cost(state, label, word)
            if len(self._cache) >= self.CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def end_cost(self, state) -> float:
        """Cost of ``</s>``: the final weight (reached along back-off arcs when needed)."""
        if not self.use_phi:
            closure = self._closure(state)
            cost = min(d + float(self.fst.final[q]) for q, d in closure.items())
            if not math.isfinite(cost):
                raise self._no_arc(min(closure), "</s> (a final weight)")
            return cost
        cost = 0.0
        for _ in range(MAX_BACKOFF_CHAIN):
            f = float(self.fst.final[state])
            if math.isfinite(f):
                return cost + f
            w, state = self._back_off(state, "</s> (a final weight)")
            cost += w
        raise InputError(self.path, "backoff arcs form a cycle")

    def _phi_word_cost(self, state: int, label: int, word):
        cost = 0.0
        for _ in range(MAX_BACKOFF_CHAIN):
            a = self._arc(state, label)
            if a >= 0:
                return cost + float(self.fst.weight[a]), int(self.fst.nextstate[a])
            w, state = self._back_off(state, f"word {word!r} (id {label})")
            cost += w
        raise InputError(self.path, "backoff arcs form a cycle")

    def _closure(self, state) -> dict:
        """G states reachable from the subset ``state`` along back-off (epsilon) arcs, each with its cheapest
        cost. Arcs are relaxed until nothing improves: right with negative costs on any acyclic back-off graph."""
        dist = dict(state)
        todo = list(dist)
        relaxed = 0
        while todo:
            q = todo.pop()
            b = int(self.backoff[q])
            if b < 0:
                continue
            relaxed += 1
            if relaxed > MAX_BACKOFF_CHAIN * (len(state) + 1):
                raise InputError(self.path, "backoff arcs form a cycle")
            p, c = int(self.fst.nextstate[b]), dist[q] + float(self.fst.weight[b])
            if c < dist.get(p, math.inf):
                dist[p] = c
                todo.append(p)
        return dist

    def _min_word_cost(self, state, label: int, word):
        best: dict = {}
        closure = self._closure(state)
        for q, d in closure.items():
            a = self._arc(q, label)
            if a >= 0:
                t, c = int(self.fst.nextstate[a]), d + float(self.fst.weight[a])
                if c < best.get(t, math.inf):
                    best[t] = c
        if not best:
            raise self._no_arc(min(closure), f"word {word!r} (id {label})")
        low = min(best.values())
        return low, tuple(sorted((t, c - low) for t, c in best.items()))


# --- G.carpa ----------------------------------------------------------------------------------------------
class _CarpaReader:
    def __init__(self, data: bytes, path):
        self.data, self.path, self.pos = data, path, 0

    def error(self, msg, offset=None):
        return InputError(self.path, msg, offset=self.pos if offset is None else offset)

    def need(self, n: int, what: str):
        if self.pos + n > len(self.data):
            raise self.error(f"truncated G.carpa: end of file while reading {what}")

    def token(self, expected: str):
        t = expected.encode() + b" "
        self.need(len(t), expected)
        if self.data[self.pos:self.pos + len(t)] != t:
            got = self.data[self.pos:self.pos + len(t)]
            raise self.error(f"expected the token {expected} here, found {got!r}")
        self.pos += len(t)

    def int(self, what: str, sizes=(4,)) -> int:
        self.need(1, what)
        size = self.data[self.pos]
        if size not in sizes:
            raise self.error(f"bad size byte {size} for {what} (expected {' or '.join(map(str, sizes))})")
        self.need(1 + size, what)
        (v,) = struct.unpack_from("<i" if size == 4 else "<q", self.data, self.pos + 1)
        self.pos += 1 + size
        return v

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        size = np.dtype(dtype).itemsize
        if count < 0:
            raise self.error(f"bad {what} size {count}")
        self.need(size * count, f"{what} ({count} entries)")
        a = np.frombuffer(self.data, dtype, count, self.pos).copy()
        self.pos += size * count
        return a

    def sized_array(self, dtype: str, count: int, what: str) -> np.ndarray:
        """The old layout: every element has its own size byte."""
        size = np.dtype(dtype).itemsize
        if count < 0:
            raise self.error(f"bad {what} size {count}")
        self.need((1 + size) * count, f"{what} ({count} entries)")
        rec = np.frombuffer(self.data, np.dtype([("n", "u1"), ("v", dtype)]), count, self.pos)
        if count and np.any(rec["n"] != size):
            i = int(np.flatnonzero(rec["n"] != size)[0])
            raise self.error(f"bad size byte in {what}", self.pos + i * (1 + size))
        self.pos += (1 + size) * count
        return rec["v"].copy()


class ConstArpaLM(_WordLM):
    """``G.carpa`` as the old LM; ``words`` is the ``words.txt`` it was built with (see the module docstring)."""

    semantics = "arpa"  # as lattice-lmrescore-const-arpa

    def __init__(self, path, words):
        self.path = Path(path)
        self.symbols = SymbolTable.load(words)
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise InputError(self.path, f"cannot read ({e})") from None
        r = _CarpaReader(data, self.path)
        if data[:2] != b"\0B":
            raise r.error("not a Kaldi binary object (no '\\0B' at the start): not a G.carpa", 0)
        r.pos = 2
        if r.pos < len(data) and data[r.pos] == 4:  # the old layout, without tokens
            info = [r.int(n) for n in ("<s> id", "</s> id", "unknown-word id", "order")]
            states = r.sized_array("<i4", r.int("state array size"), "<LmStates>")
            unigrams = r.sized_array("<i8", r.int("number of words"), "unigram table")
            overflow = r.sized_array("<i8", r.int("overflow size"), "overflow table")
        else:
            r.token("<ConstArpaLm>")
            r.token("<LmInfo>")
            info = [r.int(n) for n in ("<s> id", "</s> id", "unknown-word id", "order")]
            r.token("</LmInfo>")
            r.token("<LmStates>")
            states = r.array("<i4", r.int("state array size", (4, 8)), "<LmStates>")
            r.token("</LmStates>")
            r.token("<LmUnigram>")
            unigrams = r.array("<i8", r.int("number of words"), "unigram table")
            r.token("</LmUnigram>")
            r.token("<LmOverflow>")
            overflow = r.array("<i8", r.int("overflow size"), "overflow table")
            r.token("</LmOverflow>")
            r.token("</ConstArpaLm>")
        if r.pos != len(data):
            raise r.error(f"{len(data) - r.pos} bytes after the end of the LM")
        self.bos, self.eos, unk, self.order = info
        self.num_words = len(unigrams)
        nw = self.num_words
        if self.order < 1 or not 0 < self.bos < nw or not 0 < self.eos < nw or not (unk == -1 or 0 < unk < nw):
            raise InputError(self.path, f"bad header: <s> {self.bos}, </s> {self.eos}, unknown word {unk}, order "
                                        f"{self.order}, {nw} words")
        self.states = states
        self.floats = states.view("<f4")
        for name, table in (("unigram", unigrams), ("overflow", overflow)):
            if np.any((table < 0) | (table - 1 > len(states) - 3)):
                raise InputError(self.path, f"{name} table points outside the state array")
        self.unigram = (unigrams - 1).astype(np.int64)  # -1: no such unigram
        self.overflow = (overflow - 1).astype(np.int64)
        for sym, i in (("<s>", self.bos), ("</s>", self.eos)):
            if self.symbols.word_to_id.get(sym, i) != i:
                raise InputError(self.symbols.path, f"{sym} is id {self.symbols.word_to_id[sym]} here but "
                                                    f"{i} in {self.path}: not the words.txt of this G.carpa")
        self.unk_symbol = unk
        self.has_unk = unk != -1 and self.unigram[unk] >= 0
        self.unk_id = unk if unk != -1 else None

    def is_oov(self, word: str) -> bool:
        i = self.symbols.word_to_id.get(word)
        return bool(i is None or i >= self.num_words or self.unigram[i] < 0)

    # Kaldi's ConstArpaLm lookups, record offsets for pointers.
    def _check(self, rec: int, n: int = 0):
        if rec < 0 or rec + 2 + 2 * n >= len(self.states):
            raise InputError(self.path, f"corrupt G.carpa: a state record at {rec} runs past the state array")

    def _child(self, word: int, parent: int):
        """``child_info`` of ``word`` under the record at ``parent``, or None."""
        self._check(parent)
        n = int(self.states[parent + 2])
        if n <= 0:
            return None
        self._check(parent, n)
        words = self.states[parent + 3:parent + 3 + 2 * n:2]
        i = bisect.bisect_left(words, word)
        return int(self.states[parent + 4 + 2 * i]) if i < n and words[i] == word else None

    def _decode(self, info: int, parent: int):
        """``(child record or -1, logprob)``."""
        if info % 2 == 0:
            return -1, float(np.int32(info).view(np.float32))
        off = info // 2 if info > 0 else -((-info) // 2)  # C++ division truncates toward zero
        if off > 0:
            child = parent + off
        else:
            if -off >= len(self.overflow):
                raise InputError(self.path, f"corrupt G.carpa: overflow entry {-off} of {len(self.overflow)}")
            child = int(self.overflow[-off])
        self._check(child)
        return child, float(self.floats[child])

    def _lm_state(self, seq) -> int:
        if not seq or seq[0] >= self.num_words or self.unigram[seq[0]] < 0:
            return -1
        parent = int(self.unigram[seq[0]])
        for w in seq[1:]:
            info = self._child(w, parent)
            if info is None:
                return -1
            parent, _ = self._decode(info, parent)
            if parent < 0:
                return -1
        return parent

    def _history_exists(self, hist) -> bool:
        if not hist:
            return True
        rec = self._lm_state(hist)
        return rec >= 0 and self.states[rec + 2] > 0

    def logprob(self, word: int, hist) -> float:
        """``ConstArpaLm::GetNgramLogprob``: natural-log probability of ``word`` after ``hist`` (ids)."""
        hist = list(hist)[-(self.order - 1):] if self.order > 1 else []
        if self.unk_symbol != -1:
            def known(w):
                return w < self.num_words and self.unigram[w] >= 0
            word = word if known(word) else self.unk_symbol
            hist = [w if known(w) else self.unk_symbol for w in hist]
        backoff = 0.0
        while hist:
            rec = self._lm_state(hist)
            if rec >= 0:
                info = self._child(word, rec)
                if info is not None:
                    return backoff + self._decode(info, rec)[1]
                backoff += float(self.floats[rec + 1])
            hist = hist[1:]
        if word >= self.num_words or self.unigram[word] < 0:
            # Kaldi adds the backoff weights to this marker too; an unknown word is an error here instead.
            return FLT_MIN
        return backoff + float(self.floats[self.unigram[word]])

    def begin_state(self) -> tuple:
        return (self.bos,)

    def word_cost(self, state: tuple, word):
        """``(cost_nats, next_state)`` as ``ConstArpaLmDeterministicFst::GetArc``."""
        wid = word if isinstance(word, (int, np.integer)) else self._id(word)
        lp = self.logprob(wid, state)
        if lp == FLT_MIN:
            raise InputError(self.path, f"word {word!r} (id {wid}) is not in the LM and it has no unknown-word "
                                        "symbol (is words.txt the one this G.carpa was built with?)")
        seq = list(state) + [wid]
        seq = seq[-(self.order - 1):] if self.order > 1 else []
        while not self._history_exists(seq):
            seq = seq[1:]
        return -lp, tuple(seq)

    def end_cost(self, state: tuple) -> float:
        return -self.logprob(self.eos, state)
