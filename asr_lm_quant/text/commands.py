"""``asr-lm-quant prepare-text {kaldi-swbd,ldc-swbd,lhotse-swbd,plain}``: corpora -> LM text and vocabulary."""

from __future__ import annotations

import json

from asr_lm_quant.cli_args import add_command, add_quiet_option


def _plain(args):
    from asr_lm_quant.text.plain import prepare_plain

    stats = prepare_plain(args.train, args.valid, args.test, args.out, min_count=args.min_count,
                          max_size=args.max_vocab, normalize=args.normalize, map_unk=not args.keep_oov,
                          vocab=args.vocab, unk=args.unk, overwrite=args.overwrite)
    print(json.dumps({k: stats[k] for k in ("vocab_size", "train", "valid", "test")}, indent=2))


def _kaldi_swbd(args):
    from asr_lm_quant.text.kaldi_swbd import prepare_kaldi_swbd

    stats = prepare_kaldi_swbd(args.kaldi_dir, args.out, train=args.train_text, valid=args.valid_text,
                               test=args.test_text, fisher=args.fisher_text, words=args.words,
                               unk=args.unk, overwrite=args.overwrite)
    print(json.dumps({k: stats[k] for k in ("vocab_size", "train", "valid", "test")}, indent=2))


def _ldc_swbd(args):
    from asr_lm_quant.text.ldc import prepare_ldc_swbd

    stats = prepare_ldc_swbd(args.swbd_trans, args.out, fisher_dirs=args.fisher, eval2000=args.eval2000,
                             dev_utterances=args.dev_utterances, words=args.words, dictionary=args.dictionary,
                             unk=args.unk, overwrite=args.overwrite)
    print(json.dumps({k: stats[k] for k in ("vocab_size", "train", "valid", "test")}, indent=2))


def _lhotse_swbd(args):
    from asr_lm_quant.text.lhotse_swbd import prepare_lhotse_swbd

    stats = prepare_lhotse_swbd(args.swbd_supervisions, args.out, dictionary=args.dictionary,
                                eval2000=args.eval2000, fisher=args.fisher, dev_utterances=args.dev_utterances,
                                words=args.words, unk=args.unk, overwrite=args.overwrite)
    print(json.dumps({k: stats[k] for k in ("vocab_size", "train", "valid", "test")}, indent=2))


def register(subparsers):
    p = add_command(
        subparsers, "prepare-text", help="prepare LM text (train/valid/test) and a vocabulary",
        example=["asr-lm-quant prepare-text plain --train wiki.train.tokens --valid wiki.valid.tokens "
                 "--test wiki.test.tokens --normalize asr --out data/lm",
                 "asr-lm-quant prepare-text kaldi-swbd ~/kaldi/egs/swbd/s5c --out data/lm"],
        description="Prepare LM training text and a vocabulary. Writes train.txt valid.txt test.txt "
                    "words.txt stats.json into OUT (all together, or nothing on error).")
    sub = p.add_subparsers(dest="source", metavar="SOURCE", required=True)
    _register_kaldi_swbd(sub)
    _register_ldc_swbd(sub)
    _register_lhotse_swbd(sub)
    _register_plain(sub)


def _add_common_options(q):
    """The options every source takes."""
    q.add_argument("--out", required=True, help="output directory (e.g. data/lm)")
    q.add_argument("--unk", default=None,
                   help="unknown-word symbol of the given words.txt (default: its lang dir's oov.txt, "
                        "else <unk>); it becomes <unk> in the LM vocabulary")
    q.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    add_quiet_option(q)


def _register_kaldi_swbd(sub):
    q = add_command(
        sub, "kaldi-swbd", example="asr-lm-quant prepare-text kaldi-swbd ~/kaldi/egs/swbd/s5c --out data/lm",
        help="from a Kaldi egs/swbd/s5c setup, as its local/pytorchnn/data_prep.sh does",
        description="From a Kaldi swbd s5c directory: train = train_nodev + Fisher + train_nodev twice "
                    "(Switchboard:Fisher 3:1), valid = train_dev, test = eval2000; utterance ids cut, each "
                    "conversation in start-time order, lower case, Fisher hesitations mapped "
                    "(hmm->hum, mmm/mm->um, mhm->um-hum); words.txt from data/lang/words.txt plus <unk>. "
                    "File options are relative to KALDI_DIR unless absolute.")
    q.add_argument("kaldi_dir", metavar="KALDI_DIR", help="the s5c directory (holds data/)")
    q.add_argument("--train-text", default="data/train_nodev/text", help="Switchboard training transcripts")
    q.add_argument("--valid-text", default="data/train_dev/text", help="held-out transcripts (valid.txt)")
    q.add_argument("--test-text", default="data/eval2000/text", help="test transcripts (test.txt)")
    q.add_argument("--fisher-text", default="data/local/lm/fisher/text1.gz",
                   help="Fisher LM text made by local/swbd1_train_lms.sh; 'none' to leave Fisher out")
    q.add_argument("--words", default="data/lang/words.txt", help="the recogniser's vocabulary")
    _add_common_options(q)
    q.set_defaults(func=_kaldi_swbd)


def _register_ldc_swbd(sub):
    q = add_command(
        sub, "ldc-swbd",
        example="asr-lm-quant prepare-text ldc-swbd /data/LDC/swb_ms98_transcriptions --fisher "
                "/data/LDC/fe_03_p1_tran --eval2000 /data/LDC/LDC2002T43 --out data/lm",
        help="straight from the LDC Switchboard/Fisher/eval2000 transcripts (no Kaldi needed)",
        description="From LDC layouts: Switchboard ms98 transcripts (swb_ms98_transcriptions, with "
                    "sw-ms98-dict.text), Fisher transcript directories (LDC2004T19/LDC2005T19, each holding "
                    "data/trans) and the eval2000 references (LDC2002T43, holding reference/hub5e00.english."
                    "000405.stm or an .stm file). Applies Kaldi's swbd1_data_prep.sh word mapping, acronym "
                    "mapping and local/fisher_map_words.pl, then lays the text out as kaldi-swbd does.")
    q.add_argument("swbd_trans", metavar="SWB_MS98_DIR", help="swb_ms98_transcriptions directory")
    q.add_argument("--fisher", action="append", default=[], metavar="DIR",
                   help="Fisher transcripts directory (repeatable), e.g. fe_03_p1_tran")
    q.add_argument("--eval2000", metavar="DIR_OR_STM", help="LDC2002T43 directory or its .stm file")
    q.add_argument("--dev-utterances", type=int, default=4000,
                   help="hold out the first N Switchboard utterances as valid.txt, as s5c's train_dev")
    q.add_argument("--dictionary", default=None,
                   help="Switchboard dictionary (default: SWB_MS98_DIR/sw-ms98-dict.text)")
    q.add_argument("--words", default=None,
                   help="vocabulary, Kaldi's data/lang/words.txt or ours (default: the words of the "
                        "Switchboard dictionary as Kaldi's lexicon has them, plus <s> </s>)")
    _add_common_options(q)
    q.set_defaults(func=_ldc_swbd)


def _register_lhotse_swbd(sub):
    q = add_command(
        sub, "lhotse-swbd",
        example="asr-lm-quant prepare-text lhotse-swbd manifests/swbd_supervisions_all.jsonl.gz --dictionary "
                "/data/LDC/swb_ms98_transcriptions/sw-ms98-dict.text --eval2000 /data/LDC/LDC2002T43 --out data/lm",
        help="from lhotse supervision manifests of Switchboard/Fisher (normalised as ldc-swbd)",
        description="From the supervision manifests of 'lhotse prepare switchboard' (best made with "
                    "--retain-silence: the default drops segments that start with [silence], which Kaldi keeps) "
                    "and 'lhotse prepare fisher-english': their texts are the raw transcripts and get the "
                    "ldc-swbd normalisation. eval2000: lhotse's own eval2000 manifest holds the raw LDC "
                    "transcripts, not the stm, and is refused; give the LDC2002T43 directory or .stm, or a "
                    "manifest of stm words (Kaldi's data/eval2000 through 'lhotse kaldi import').")
    q.add_argument("swbd_supervisions", metavar="SWBD_SUPERVISIONS",
                   help="swbd_supervisions_all.jsonl.gz of 'lhotse prepare switchboard'")
    q.add_argument("--dictionary", required=True,
                   help="sw-ms98-dict.text (in swb_ms98_transcriptions, beside the transcripts lhotse read)")
    q.add_argument("--eval2000", required=True, metavar="MANIFEST_DIR_OR_STM",
                   help="supervision manifest of stm words, or the LDC2002T43 directory or its .stm file")
    q.add_argument("--fisher", action="append", default=[], metavar="SUPERVISIONS",
                   help="fisher-english_supervisions_all.jsonl.gz of 'lhotse prepare fisher-english' "
                        "(repeatable)")
    q.add_argument("--dev-utterances", type=int, default=4000,
                   help="hold out the first N Switchboard utterances as valid.txt, as s5c's train_dev")
    q.add_argument("--words", default=None,
                   help="vocabulary, Kaldi's data/lang/words.txt or ours (default: the words of the "
                        "Switchboard dictionary as Kaldi's lexicon has them, plus <s> </s>)")
    _add_common_options(q)
    q.set_defaults(func=_lhotse_swbd)


def _register_plain(sub):
    q = add_command(
        sub, "plain",
        example="asr-lm-quant prepare-text plain --train wiki.train.tokens --valid wiki.valid.tokens "
                "--test wiki.test.tokens --normalize asr --out data/lm",
        help="any corpus with one sentence per line (WikiText, PTB)",
        description="Plain corpora, one sentence per line (.gz/.xz/.bz2 read transparently). The "
                    "vocabulary comes from --train: <s>, <unk>, then words by frequency. Other words are "
                    "written as <unk>. stats.json reports the OOV rate of each split.")
    q.add_argument("--train", required=True, help="training text; the vocabulary comes from it")
    q.add_argument("--valid", required=True, help="validation text")
    q.add_argument("--test", required=True, help="test text")
    q.add_argument("--min-count", type=int, default=1, help="keep words seen at least this often")
    q.add_argument("--max-vocab", type=int, default=None,
                   help="cap on vocabulary size (with <s>, <unk>; no cap unless given)")
    q.add_argument("--normalize", choices=("none", "asr"), default="none",
                   help="'asr': sentences split, lower case, punctuation and WikiText markup removed")
    q.add_argument("--words", dest="vocab", metavar="WORDS_TXT", default=None,
                   help="use this words.txt (ours or Kaldi's) instead of building one from --train")
    q.alias("--vocab", "--words")
    q.add_argument("--keep-oov", action="store_true", help="write OOV words as they are, not as <unk>")
    _add_common_options(q)
    q.set_defaults(func=_plain)
