"""Pocketsphinx word lattices in its own text format (``Lattice.write``), read into a word graph.

The format (pocketsphinx 5, ``ps_lattice_write``)::

    # -logbase 1.000100e+00
    Frames 401
    Nodes 168 (NODEID WORD STARTFRAME FIRST-ENDFRAME LAST-ENDFRAME)
    0 </s> 391 400 400 ; 0
    ...
    Initial 167
    Final 0
    BestSegAscr 0 (NODEID ENDFRAME ASCORE)
    Edges (FROM-NODEID TO-NODEID ASCORE)
    1 0 -172032
    End

A node is a word starting at a frame; an edge ``A B s`` says A's word ends just before B starts, with
acoustic log-likelihood ``s`` (in units of log base ``logbase``). Pronunciation variants are spelled
``word(2)``. Fillers (``<sil>``, ``[NOISE]``, ``<s>`` inside the utterance, ...) are not words of the
transcript: :func:`word_graph` folds them into the neighbouring word arcs.
"""

from __future__ import annotations

import heapq
import math
import re
from dataclasses import dataclass
from pathlib import Path

from asr_lm_quant.errors import InputError
from asr_lm_quant.textio import read_lines, split_fields

_VARIANT = re.compile(r"\(\d+\)$")


def is_filler(word: str) -> bool:
    """Pocketsphinx fillers and sentence markers: ``<sil>``, ``<s>``, ``</s>``, ``[NOISE]``, ``++UH++``."""
    return word.startswith("<") or word.startswith("[") or word.startswith("++")


@dataclass
class PsLattice:
    frames: int
    logbase: float
    words: list[str]        # per node, without the pronunciation-variant suffix
    start_frame: list[int]  # per node
    initial: int
    final: int
    edges: list[tuple[int, int, int]]  # (from, to, acoustic log-likelihood in logbase units)

    @property
    def ln_base(self) -> float:
        return math.log(self.logbase)


def read_ps_lattice(path) -> PsLattice:
    """Parse a pocketsphinx lattice file (plain or .gz); errors name the file and line."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "lattice file does not exist")
    lines = [line.rstrip("\r") for _, line in read_lines(path)]
    logbase, frames, initial, final = 1.0001, None, None, None
    words: list[str] = []
    starts: list[int] = []
    edges: list[tuple[int, int, int]] = []
    section = None
    n_nodes = 0
    for n, line in enumerate(lines, 1):
        fields = split_fields(line)
        if not fields:
            continue
        try:
            if fields[0] == "#":
                if len(fields) >= 3 and fields[1] == "-logbase":
                    logbase = float(fields[2])
                continue
            if line.startswith("#"):
                continue
            head = fields[0]
            if head == "Frames":
                frames = int(fields[1])
            elif head == "Nodes":
                n_nodes = int(fields[1])
                section = "nodes"
                words, starts = [""] * n_nodes, [0] * n_nodes
            elif head == "Initial":
                initial, section = int(fields[1]), None
            elif head == "Final":
                final = int(fields[1])
            elif head == "BestSegAscr":
                section = "bestseg"
            elif head == "Edges":
                section = "edges"
            elif head == "End":
                section = "end"
                break
            elif section == "nodes":
                i = int(fields[0])
                if not 0 <= i < n_nodes:
                    raise ValueError(f"node id {i} outside 0..{n_nodes - 1}")
                words[i] = _VARIANT.sub("", fields[1])
                starts[i] = int(fields[2])
            elif section == "edges":
                a, b, s = int(fields[0]), int(fields[1]), int(fields[2])
                if not (0 <= a < n_nodes and 0 <= b < n_nodes):
                    raise ValueError(f"edge {a} -> {b} names a node outside 0..{n_nodes - 1}")
                edges.append((a, b, s))
            elif section == "bestseg":
                continue
            else:
                raise ValueError(f"unexpected line {line!r}")
        except (ValueError, IndexError) as e:
            raise InputError(path, f"bad pocketsphinx lattice line: {e}", line=n) from None
    if section != "end":
        raise InputError(path, "truncated pocketsphinx lattice (no 'End' line)")
    if frames is None or initial is None or final is None:
        raise InputError(path, "pocketsphinx lattice lacks its Frames/Initial/Final header")
    for name, node in (("Initial", initial), ("Final", final)):
        if not 0 <= node < n_nodes:
            raise InputError(path, f"{name} node {node} outside 0..{n_nodes - 1}")
    return PsLattice(frames, logbase, words, starts, initial, final, edges)


@dataclass
class WordGraph:
    """Fillers folded away: arcs between word nodes, the initial and the final node.

    ``arcs[a]`` lists ``(b, cost, frames)``: from node ``a`` (a word, or the initial node) to node ``b``
    (a word, or the final node) through any fillers; ``cost`` is the lowest acoustic cost (negated
    natural log) of ``a``'s word plus the fillers after it, ``frames`` the frames from ``a``'s start to
    ``b``'s start. Frames of the final ``</s>`` node are counted on the arcs that enter it.
    """
    words: list[str]
    initial: int
    final: int
    frames: int
    arcs: dict[int, list[tuple[int, float, int]]]
    start_frame: list[int]


def word_graph(lat: PsLattice) -> WordGraph:
    """Fold filler nodes of ``lat`` into word-to-word arcs (min cost over filler paths)."""
    out_edges: dict[int, list[tuple[int, int]]] = {}
    for a, b, s in lat.edges:
        out_edges.setdefault(a, []).append((b, s))
    scale = -lat.ln_base
    tail = lat.frames - lat.start_frame[lat.final]

    def is_word(node):
        return node != lat.initial and node != lat.final and not is_filler(lat.words[node])

    arcs: dict[int, list[tuple[int, float, int]]] = {}
    sources = [lat.initial] + [i for i in range(len(lat.words)) if is_word(i)]
    for a in sources:
        # Shortest paths through fillers, visiting nodes in time order (edges only go forward in time).
        dist: dict[int, float] = {}
        best: dict[int, float] = {}
        heap = []
        for b, s in out_edges.get(a, ()):
            _relax(dist, heap, lat.start_frame, b, s * scale)
        while heap:
            _, node = heapq.heappop(heap)
            cost = dist.pop(node, None)
            if cost is None:
                continue
            if node == lat.final or is_word(node):
                best[node] = cost
            elif node != lat.initial:
                for b, s in out_edges.get(node, ()):
                    _relax(dist, heap, lat.start_frame, b, cost + s * scale)
        if best:
            sf = lat.start_frame[a]
            arcs[a] = [(b, c, lat.start_frame[b] - sf + (tail if b == lat.final else 0))
                       for b, c in sorted(best.items())]
    return WordGraph(lat.words, lat.initial, lat.final, lat.frames, arcs, lat.start_frame)


def _relax(dist, heap, start_frame, node, cost):
    if cost < dist.get(node, math.inf):
        if node not in dist:
            heapq.heappush(heap, (start_frame[node], node))
        dist[node] = cost
