"""Kaldi's Switchboard/Fisher word mapping rules, each case checked against what the Kaldi scripts print."""

import pytest

from asr_lm_quant.text.fisher import map_fisher_line, map_hesitations
from asr_lm_quant.text.swbd_words import acronym_form, find_acronyms, lexicon_words, map_acronyms, map_swbd_word


@pytest.mark.parametrize("word, expected", [
    ("[laughter-story]", "story"),
    ("[LAUGHTER-Story]", "Story"),          # case-insensitive, case kept
    ("[laughter-yes]-", "yes-"),            # a trailing - is kept
    ("[it'n/isn't]", "it'n"),               # mispronunciation: the spoken form
    ("[lem[guini]-/linguini]", "lem-"),     # ... whose spoken form is a partial word
    ("-[an]y", "-y"),                        # partial words
    ("[an]y", "-y"),
    ("ab[solute]-", "ab-"),
    ("ab[solute]", "ab-"),
    ("-[a]b[out]-", "-b-"),
    ("ex[specially]-/especially]", "ex"),  # a transcription mistake, as Kaldi handles it
    ("ammu[n]it-", "ammn-t-"),             # Kaldi's rule keeps the bracketed letter, drops its neighbours
    ("{yuppiedom}", "yuppiedom"),
    ("them_1", "them"),
    ("them_1's", "them's"),
    ("[noise]", "[noise]"),
    ("[vocalized-noise]", "[vocalized-noise]"),
    ("[laughter]", "[laughter]"),
    ("uh-huh", "uh-huh"),
])
def test_swbd_word_map(word, expected):
    assert map_swbd_word(word) == expected


@pytest.mark.parametrize("line, expected", [
    ("YEAH I'M (( NOT )) SURE *MANDATORY", "yeah i'm not sure mandatory"),
    ("(( ))", None),                                  # blank once parentheses go: skipped
    ("<german (( ja wohl )) >", ""),                  # blank only after <...> goes: printed empty
    ("well,i think so, yeah", "well i think so yeah"),
    ("'cause i 'course 'okay 'plainly", " cause i course -okay -plainly"),  # consumed spaces: Kaldi's quirk
    ("tell 'em 'em", "tell -em -em"),
    ("'kay' and 'bout' 'til' 'fore'", " kay and bout til fore"),
    ("'a- 'b what 'c", " what"),
    ("a - b - ", "a b"),
    ("is it? yes?", "is it yes"),
    ("non-stop non-x nonstop non-", " non stop non-x nonstop non-"),
    ("a- what- -york -cause- okay- ball-room", "a- what york cause okay ball room"),
    ("[[skip]] [pause] [breath] [cough] [lipsmack] [sigh] [sneeze] [mn] [laugh] [noise]",
     " [noise] [noise] [noise] [noise] [noise] [vocalized-noise] [laughter] [noise]"),
    ("'bout 'round 'n' ", " bout -round"),
    ("  leading   spaces  and trailing   ", " leading spaces and trailing"),
    ("'quoted phrase here' ok", " quoted phrase here ok"),
    ("i'm it's 'tis", "i'm it's -tis"),
    ("naïve CAFÉ", "naïve cafÉ"),                      # Perl's lc is ASCII-only here
])
def test_fisher_map_line(line, expected):
    assert map_fisher_line(line) == expected


def test_hesitations_as_awk_does():
    assert map_hesitations("well mhm hmm   i think") == "well um-hum hum i think"
    assert map_hesitations("mm mmm hmmm") == "um um hmmm"
    assert map_hesitations(" no hesitation   here") == " no hesitation   here"  # untouched, byte for byte


def test_acronym_forms():
    assert acronym_form("ibm", "ay b iy eh m") == "i._b._m."
    assert acronym_form("ibm's", "ay b iy eh m z") == "i._b._m.'s"
    assert acronym_form("tvs", "t iy v iy z") == "t._v.s"
    assert acronym_form("w", "d ah b ax l y uw") == "w."
    assert acronym_form("bus", "b ah s") is None
    assert acronym_form("a", "ax") is None
    assert acronym_form("hi", "hh ay") is None
    assert acronym_form("it'n", "ih t n") is None


def test_map_acronyms_never_rewrites_lone_i():
    acronyms = find_acronyms([("ibm", "ay b iy eh m"), ("i", "ay"), ("t", "t iy"), ("b", "b iy")])
    assert acronyms["i"] == "i." and acronyms["I"] == "i." and acronyms["B"] == "b."
    assert map_acronyms("i like ibm and t b m".split(), acronyms) == \
        ["i", "like", "i._b._m.", "and", "t.", "b.", "m"]
    # An upper-case I spelled among letters is part of the acronym (Kaldi's first pass).
    assert map_acronyms(["I", "B", "M", "and", "I"], acronyms) == ["i.", "b.", "m.", "and", "i"]


def test_lexicon_words_like_kaldi_lexicon():
    lexicon = [("ibm", "ay b iy eh m"), ("i", "ay"), ("hi", "hh ay"), ("them", "dh eh m")]
    words = lexicon_words(lexicon, find_acronyms(lexicon))
    assert words[:5] == ["!sil", "<unk>", "[laughter]", "[noise]", "[vocalized-noise]"]
    assert {"i", "i.", "i._b._m.", "hi", "them", "a.", "z."} <= set(words)
    assert "ibm" not in words and "A" not in words
    assert words == sorted(words)
