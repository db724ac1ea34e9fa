"""Decode a Kaldi data dir with pocketsphinx and write a Kaldi decode dir.

One job of ``nj`` takes a contiguous block of the (sorted) utterances, as Kaldi's ``split_data.sh``
does, and writes ``lat.JOB.gz`` (CompactLattices with n-gram graph costs, see :mod:`.expand`),
``ps_hyp.JOB`` (pocketsphinx's own 1-best, ``utt w1 w2 ...``) and ``stats.JOB.json``; the per-utterance
pocketsphinx lattices are kept in ``ps_lat/``.
"""

from __future__ import annotations

import json
import math
import shlex
import time
from pathlib import Path


from asr_lm_quant.atomic import atomic_open
from asr_lm_quant.decode.expand import expand_with_lm, prune_word_graph
from asr_lm_quant.decode.pocketsphinx import PocketsphinxDecoder, read_wav_16k
from asr_lm_quant.decode.pslattice import read_ps_lattice, word_graph
from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.algorithms import prune
from asr_lm_quant.kaldi.archive import LatticeWriter
from asr_lm_quant.kaldi.symbols import SymbolTable
from asr_lm_quant.progress import bar as progress_bar


def read_table(path) -> list[tuple[str, str]]:
    """``key rest-of-line`` pairs of a Kaldi text table (wav.scp, text); errors name file and line."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip("\n").split(maxsplit=1)
            if not parts:
                continue
            if len(parts) < 2:
                raise InputError(path, "expected 'key value'", line=n)
            out.append((parts[0], parts[1]))
    return out


def job_block(items: list, job: int, nj: int) -> list:
    """Items of job ``job`` (1-based) of ``nj``: contiguous, sizes differing by at most one. (Interleaving would
    balance voices that decode at different speeds, but pocketsphinx carries its running cepstral mean from one
    utterance to the next, so a different split gives different lattices and first-pass WER.)"""
    if not 1 <= job <= nj:
        raise ValueError(f"job {job} outside 1..{nj}")
    n = len(items)
    lo, hi = (job - 1) * n // nj, job * n // nj
    return items[lo:hi]


def decode_job(data_dir, lm_path, words_txt, decode_dir, *, job: int, nj: int, config: dict | None = None,
               cache_dir=None, lattice_beam: float = 8.0, graph_beam: float = 16.0) -> dict:
    """Decode job ``job`` of ``nj`` of ``data_dir``; see the module docstring for what is written.

    ``graph_beam``: bigram-estimate pruning of the recogniser's word graph before the exact trigram
    expansion (:func:`~.expand.prune_word_graph`); ``lattice_beam``: exact pruning of the result at
    acoustic scale 0.1, as Kaldi's ``--lattice-beam``.
    """
    from asr_lm_quant.ngram.arpa import ArpaLM

    data_dir, decode_dir = Path(data_dir), Path(decode_dir)
    wavs = sorted(read_table(data_dir / "wav.scp"), key=lambda kv: kv[0].encode())
    mine = job_block(wavs, job, nj)
    word_ids = SymbolTable.load(words_txt).word_to_id
    decoder = PocketsphinxDecoder(lm_path, config=config, cache_dir=cache_dir)
    acoustic_scale = 10.0 / decoder.config["lw"]
    lm = ArpaLM(lm_path)
    ps_dir = decode_dir / "ps_lat"
    t0 = time.time()
    audio_s = 0.0
    n_states = n_arcs = 0
    with LatticeWriter(f"ark:| gzip -c > {shlex.quote(str(decode_dir / f'lat.{job}.gz'))}") as lat_w, \
            atomic_open(decode_dir / f"ps_hyp.{job}") as hyp_f:
        for utt, wav in progress_bar(mine, desc=f"decode job {job}/{nj}", unit=" utt", mininterval=5.0):
            samples = read_wav_16k(wav.strip())
            audio_s += len(samples) / 16000
            ps_path = ps_dir / f"{utt}.lat.gz"
            words = decoder.decode(samples, ps_path)
            hyp_f.write(" ".join([utt] + words) + "\n")
            graph = word_graph(read_ps_lattice(ps_path))
            if graph_beam and math.isfinite(graph_beam):
                graph = prune_word_graph(graph, lm, graph_beam, acoustic_scale=acoustic_scale)
            lat = expand_with_lm(graph, lm, word_ids, acoustic_scale=acoustic_scale, key=utt)
            if lattice_beam and math.isfinite(lattice_beam):
                lat = prune(lat, lattice_beam, acoustic_scale=0.1)
            if lat.num_states == 0:
                raise InputError(ps_path, "lattice has no complete path", key=utt)
            n_states += lat.num_states
            n_arcs += lat.num_arcs
            lat_w.write(utt, lat)
    elapsed = time.time() - t0
    stats = {"job": job, "utterances": len(mine), "audio_seconds": round(audio_s, 2),
             "seconds": round(elapsed, 2), "real_time_factor": round(elapsed / audio_s, 3) if audio_s else None,
             "states": n_states, "arcs": n_arcs, "acoustic_scale": acoustic_scale, "lattice_beam": lattice_beam,
             "graph_beam": graph_beam,
             "config": decoder.config}
    with atomic_open(decode_dir / f"stats.{job}.json") as f:
        json.dump(stats, f, indent=2)
    return stats
