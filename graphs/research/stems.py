"""Words and stems: how every check of the research splits text into words (letters and digits
of any script; a CJK run as its character pairs, ``core.cjk``), which of them say something
(``STOPWORDS``, ``FILLER_WORDS``), the light stemmer they are compared by, and a question's
terms for matching (its stems and its adjacent words joined).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from core.cjk import has_cjk, is_cjk, is_cjk_filler, plain_forms, split_cjk, unwrap

#: a word: letters and digits of any script ("für", a run of Chinese): with ASCII only, a question in
#: another script lost every word but its Latin ones, and with them the warning that no source says them
_TOKEN = re.compile(r"[^\W_]+")
_SUFFIXES = ("ations", "ation", "ings", "ing", "ers", "ies", "ied", "ure", "es", "ed", "er", "ly", "s")
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing done down during each either else
    etc even ever every few for from further get gets got had has have having he her here hers him
    his how however i if in into is it its itself just let like may me might more most much must my
    no nor not now of off on once one only or other our ours out over own per rather same shall she
    should so some such than that the their theirs them then there these they this those through
    thus to too under until up upon us use used uses using very via was we well were what when
    where whether which while who whom whose why will with within without would yet you your yours
    e g ie eg""".split()
)
#: words that say what kind of text is wanted, or praise any answer, never what it is about: a
#: search for "httpx redirects guide" is the search for "httpx redirects" ("basic", "reference",
#: "steps", "methods", "usage" are not here: "basic auth", "weak references", "a graph's steps")
FILLER_WORDS = frozenset(
    """guide guides tutorial tutorials example examples overview introduction intro documentation docs doc
    explanation explained explain explains details information howto tips faq summary definition meaning
    way ways best good better recommended properly correctly""".split()
)


#: irregular past forms read as their verb ("Results are kept" answers "how long does it keep");
#: only forms that rarely mean anything else ("left", "bound", "saw" are not here)
_IRREGULAR = {
    form: verb
    for verb, forms in {
        "keep": "kept", "hold": "held", "run": "ran", "build": "built", "send": "sent", "spend": "spent",
        "make": "made", "write": "wrote written", "choose": "chose chosen", "give": "gave given",
        "take": "took taken", "show": "shown", "know": "knew known", "begin": "began begun",
        "break": "broke broken", "hide": "hid hidden", "feed": "fed", "lead": "led", "meet": "met",
        "sell": "sold", "tell": "told", "think": "thought", "catch": "caught", "bring": "brought",
        "buy": "bought", "teach": "taught", "stand": "stood", "understand": "understood",
        "draw": "drew drawn", "grow": "grew grown", "throw": "threw thrown", "freeze": "froze frozen",
        "speak": "spoke spoken", "forget": "forgot forgotten", "drive": "drove driven", "lose": "lost",
        "find": "found", "pay": "paid", "say": "said", "go": "went gone", "see": "seen", "fall": "fell fallen",
        "feel": "felt", "mean": "meant", "seek": "sought", "deal": "dealt",
    }.items()
    for form in forms.split()
}


#: suffixes before which a verb drops its silent "e" (give -> giving, use -> used) or doubles
#: its final consonant (run -> running); ``_verb_base`` undoes either
_VERB_SUFFIXES = frozenset({"ings", "ing", "ed"})
#: a consonant doubled before -ing/-ed (stop -> stopped); not l, s, z, f (fall, pass, buzz, stuff
#: end in a double already), and only where three letters stay ("adding" is "add", not "ad")
_DOUBLED = re.compile(r"(?<=..)([bdgmnprt])\1$")
#: a stem left by -ing/-ed that lost a silent "e": one short syllable ending in a consonant
#: (giv, mak, us, stor, typ; not look, sing, open, visit: the e-less verbs double or are longer),
#: or an ending no English word has without its "e" (solv, handl, judg, merg, pars, forc, siz,
#: queu, valu, issu, argu: a verb in -u has no -ing/-ed forms worth a rule)
_LOST_E = re.compile(r"(?:^[^aeiouy]*[aeiouy][^aeiouwxy]|v|dg|[bcdfgkptz]l|[lnpr]s|rg|(?<!y)[nr]c|[aou]c|[aeiou]z|u)$")
#: an "-es" that is a suffix of its own only after these (classes, buses, aliases, boxes, buzzes,
#: matches, pushes, heroes); elsewhere the "e" is the word's (gives, cases, sizes) and only "s" comes off
_ES_AFTER = ("ss", "us", "ias", "x", "zz", "ch", "sh", "o")
#: a word in -us with a vowel before the "u" is one (status, focus, corpus, bonus), its "s" no
#: plural; the plural of a word in -u is an acronym's (cpus, gpus, vcpus, skus: no vowel before
#: it). In the bench corpus and the installed packages' READMEs: status 575, consensus 37, corpus 20,
#: focus 14 against cpus 10, gpus 4; "menus" and "haikus" (0 there) no longer meet "menu", "haiku"
_SINGULAR_US = re.compile(r"[aeiouy].*u$")
#: words that only look suffixed: "embed" is no "emb" + -ed (its forms embeds, embedded, embedding
#: are "embed"); no letter rule tells it from an -ed form of a 3-letter verb (amped, asked, ebbed)
_UNSUFFIXED = frozenset({"embed"})


def _verb_base(rest: str) -> str:
    """``rest`` (a word less -ing or -ed) as its verb: a doubled consonant single again
    (runn -> run), a lost silent "e" back (giv -> give, us -> use), else as it is."""
    if _DOUBLED.search(rest):
        return rest[:-1]
    return rest + "e" if _LOST_E.search(rest) else rest


def stem(word: str) -> str:
    """A light stem: an irregular past form as its verb (kept -> keep), else one common suffix
    off, then the first six letters (fails/failed -> fail, providers/provided -> provid,
    checkpointer/checkpoints -> checkp). A verb keeps its silent "e" and loses a doubled
    consonant through -ing, -ed and -s (giving/gives/give, used/use, running/run). Where -es
    comes off whole (caches, causes), the word loses its final "e" too (cache, cause -> cach, caus)."""
    if word.isdigit() or word in _UNSUFFIXED:
        return word
    word = _IRREGULAR.get(word, word)
    for suffix in _SUFFIXES:
        if not word.endswith(suffix):
            continue
        rest = word[: -len(suffix)]
        if suffix == "ed" and rest.endswith("e"):
            break  # "speed", "exceed", "proceed": an -eed is the word's (61, 5, 6 against agreed 8, freed 3)
        if suffix in _VERB_SUFFIXES and len(rest) >= 2 and (len(rest) >= 3 or _LOST_E.search(rest)):
            word = _verb_base(rest)
            break
        if suffix == "es" and not rest.endswith(_ES_AFTER):
            continue  # the "e" is the word's: "s" comes off below
        if suffix == "s" and (rest.endswith(("s", "ia")) or _SINGULAR_US.search(rest)):
            break  # "class", "alias", "status": no plural
        if len(rest) >= 3:
            word = rest + ("y" if suffix in ("ies", "ied") else "")
            break
    if word.endswith("e") and len(word) > 3 and word[:-1].endswith(_ES_AFTER):
        word = word[:-1]  # its plural cannot show the "e": "caches" is "cach" as "matches" is "match"
    return word[:6]


def bare_stem(word: str) -> str:
    """``stem`` without a final "e", as the checks that compare one word with another take it:
    ``stem`` keeps "change" whole but cuts "changing" and "changed" to "chang"."""
    base = stem(word)
    return base[:-1] if base.endswith("e") and len(base) > 3 else base


def words_of(text: str) -> list[str]:
    """The words of ``text`` in small letters, as every check splits it (letters and digits); a
    run of Japanese, Chinese or Korean, written without spaces, as its character pairs
    (``cjk.split_cjk``: "設定ファイル" is 設定 定フ ファ ァイ イル), its lines unwrapped (``cjk.unwrap``:
    "再起\n動" is 再起 起動, as the paragraph reads); full-width letters and digits and ligatures as
    plain ones (``cjk.plain_forms``: a source's ８０８０ did not state a sentence's 8080)."""
    text = plain_forms(text)
    if not has_cjk(text):
        return _TOKEN.findall(text.lower())
    return [piece for word in _TOKEN.findall(unwrap(text).lower()) for piece in split_cjk(word)]


def is_content_word(word: str) -> bool:
    """A word of ``words_of`` that says something: no stop word, no single letter (a digit is
    one; a CJK character alone is a word), no pair of Hiragana alone (a particle or an ending:
    です, どこ) nor of a question word (什么, 时候; ``cjk.is_cjk_filler``)."""
    if word in STOPWORDS:
        return False
    if word[:1] < "\u1100":  # no CJK letter: the rule for every other script
        return len(word) > 1 or word.isdigit()
    return (len(word) > 1 or word.isdigit() or is_cjk(word)) and not is_cjk_filler(word)


def content_stems(text: str) -> list[str]:
    """The stems of the content words of ``text`` (stop words and single letters dropped)."""
    return [stem(w) for w in words_of(text) if is_content_word(w)]


def numbers_in(text: str) -> set[str]:
    """The numbers of ``text``, as words: digits of any script, and ½, ¼, ①, Ⅻ (``isnumeric``:
    with ``isdigit``, a sentence's ½ passed against a passage's ¼)."""
    return {w for w in words_of(text) if w.isnumeric()}


def query_terms(query: str) -> set[str]:
    """The stems of ``query`` plus those of adjacent words joined ("fall back" also finds
    "fallback", "check point" "checkpoint")."""
    return set(content_stems(query)) | {stem(joined) for joined, _ in compounds(query)}


def compounds(query: str) -> list[tuple[str, tuple[str, str]]]:
    """Each pair of adjacent content words of ``query``, joined, with the stems of the two:
    ``("fallback", ("fall", "back"))`` of "fall back"."""
    words = [w for w in words_of(query) if w not in STOPWORDS and len(w) > 1]
    # CJK pairs overlap already: two joined are no word ("設定定フ")
    return [(a + b, (stem(a), stem(b))) for a, b in zip(words, words[1:], strict=False) if not (is_cjk(a) or is_cjk(b))]


def says_compound(words: Iterable[str], joined: str) -> bool:
    """Whether ``words`` (of ``words_of``) hold ``joined`` as a word or a word's start
    ("fallbacks" says "fall back"; "backpressure" does not say "back providers")."""
    return any(word.startswith(joined) for word in words)
