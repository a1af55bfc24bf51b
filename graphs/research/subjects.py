"""What a question is about, by name, and which of those names no source found ever says.

A report quoted from the nearest passages answers an off-topic question ("How do I set
Kubernetes memory limits for a pod?" against docs that never say Kubernetes) with a sentence that
shares two common words with it ("set", "limit"), and every sentence of it is backed by the passage
it cites. Words counted, or weighted by how rare they are among the passages, do not tell such a
question from a real one (measured on the research quality bench: a gold question's opening shared
35% of the question's weight, an off-topic one 39%). What does tell them apart is the question's
subject: the names it gives (Kubernetes, Australia, Celery) are in no source found, while every name
a gold question gives is. The sentence-initial capital of an ordinary word is no name; a word in
small letters is one only where the question says so: before a version ("numpy 2.0"; not an
ordinary word, nor before an amount: "take 2.5 seconds", "roughly 1.5 GB") or as what "the ...
package" (library, module, crate, ...) names ("the flask package"; not "the best library"); an
amount's unit ("1.5 GB", "540s") names nothing either; what the question
writes as code, in backticks ("What does `swarm doctor` check?"), is a name as a whole. A question that
gives no name at all is about its own words, less those any question may use (``_ORDINARY``:
"configure", "install", "package", "best", "fast"): where no source found says one of those words,
the sources say nothing of what it asks ("configure nginx", "How do I install kubectl?"), and those
words are its subject no source says. Where a source says one ("Does tinyq cache stale results?"),
a word the sources lack is no subject, and a lower-case name beside it ("Can tinyq run behind
nginx?") is not told apart from an ordinary word either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.cjk import is_cjk, joined_pairs
from graphs.research.stems import (
    FILLER_WORDS,
    STOPWORDS,
    bare_stem,
    content_stems,
    is_content_word,
    query_terms,
    stem,
    words_of,
)

#: a word as written: letters (any script), digits and the joints of identifiers (``load_dotenv``,
#: ``os.path``, ``C++``); a trailing dot, hyphen or apostrophe is punctuation
_WORD = re.compile(r"[^\W_][\w.+#-]*[\w+#]|[^\W_]")
#: words in capitals that name nothing a source would have to say
_GENERIC_CAPS = frozenset("OK OKAY FAQ TODO FYI ASAP AI ETA TLDR IMO IMHO PS NB ELI5 TIL".split())
#: a question with three or more capitalised words, at least this share of its words (a name-heavy
#: question still writes its verbs and adjectives in small letters), is written in
#: Title Case: its capitals are style, and only identifiers and words in capitals name something
_TITLE_CASE_SHARE = 0.9
#: a number or a version ("2018", "v20.1", "3.12.0"): no name of anything
_VERSION = re.compile(r"[vV]?\d+(?:\.\d+)*")
#: what a quantity is counted in: a number with one of these after it is an amount, not a version
_UNITS = (r"%|percent|pct|times|secs?|seconds?|ms|msecs?|milliseconds?|[uµn]s|microseconds?|nanoseconds?"
          r"|mins?|minutes?|hrs?|hours?|days?|weeks?|months?|years?|[kmgtp]i?b|bytes?|[kmgt]?bits?|[kmgt]bps"
          r"|[kmg]?hz|bn|thousand|million|billion|tokens?|rps|qps|fps|px|dpi")
#: one-letter units, an amount's only when written onto the number ("540s", "2x", "16k"): after a
#: space a letter is a name's ("Python 3.12 B-tree", "HTTP 2 X-Forwarded-For")
_FUSED_UNITS = r"x|s|h|b|k|m"
#: a unit where it is one: the next character is no letter, digit, %, ( or - ("min()" is a call)
_UNIT = rf"\s*+(?:{_UNITS}|(?<=\d)(?:{_FUSED_UNITS}))(?![\w%(-])"
#: an amount, written as one word or two ("540s", "1.5 GB", "2x"): its unit names nothing. Possessive
#: and never starting inside a number: "1,1,1,..." took quadratic time (2,000 characters: 0.17 s)
_QUANTITY = re.compile(rf"(?<![\w.,])\d++(?:[.,]\d++)*+\s*+((?:{_UNITS})|(?<=\d)(?:{_FUSED_UNITS}))(?![\w%(-])",
                       re.IGNORECASE)
#: a word in small letters before a version of two or more parts ("numpy 2.0", "python 3.12"); not
#: before an amount ("take 2.5 seconds", "roughly 1.5 GB")
_BEFORE_VERSION = re.compile(rf"\b([a-z][\w.+-]*[a-z0-9+])\s+v?\d+(?:\.\d+)+\b(?!\.\d)(?!(?i:{_UNIT}))")
#: a word in small letters that "the ... package" names ("the flask package", "the xxhash Python library")
_PACKAGE = re.compile(r"\bthe\s+([a-z][\w.+-]*[a-z0-9+])\s+(?:(?:python|js|javascript|node|rust|go|ruby|java)\s+)?"
                      r"(?:package|library|module|crate|gem|plugin|extension|framework)\b", re.IGNORECASE)
#: a code span of the question: what it writes in backticks names something, as a whole
_CODE_SPAN = re.compile(r"`([^`\n]{2,80})`")
#: words that come before a version or after "the" without naming anything a source must say: what
#: counts releases or parts, and the adjectives that pick one ("the best library", "the official module")
_NOT_NAMES = frozenset("""version versions release releases v step chapter section page part phase level tier stage
    option number item rule standard same new old latest following above below main default major minor patch beta
    alpha best better good great fine official unofficial recommended preferred suggested right correct proper wrong
    appropriate newer newest older oldest first second third last next previous current existing original actual
    real whole entire single separate specific particular relevant corresponding respective required optional
    necessary needed missing installed deprecated legacy stable experimental public private internal external
    underlying shared common generic core popular famous well-known third-party built-in builtin native usual
    typical simple simplest easiest fast faster fastest lightest smallest largest biggest modern""".split())
#: ordinary words before a number that only say how much or what happens ("take 2.5", "roughly 1.5",
#: "since 1.2", "support 3.12"): verbs, adverbs, prepositions, quantifiers, what a number measures
_BEFORE_NUMBER = frozenset("""take takes took taking last lasts lasted wait waits waited need needs needed require
 requires required requiring support supports supported supporting run runs ran running cost costs reach reaches
 reached exceed exceeds exceeded hit hits set sets allow allows allowed accept accepts return returns returned
 give gives gave show shows showed say says said report reports reported measure measures measured score scores
 scored weigh weighs hold holds keep keeps stay stays become becomes became remain remains goes went grow grows
 increase increases increased decrease decreases drop drops dropped rise rises raise raises lower lowers limit
 limits cap caps capped install installs installed installing upgrade upgrades upgraded upgrading downgrade
 downgrades downgraded update updates updated updating bump bumped pin pins pinned move moved change changes changed
 fix fixes fixed add adds added remove removes removed introduce introduces introduced deprecate deprecates
 ship ships shipped land landed break breaks broke work works worked stop stops stopped start starts started
 begin begins began target targets targeted equal equals average averages total totals read reads print prints
 output outputs yield yields makes made spend spends spent consume consumes consumed allocate allocates
 load loads loaded sit sits roughly around approximately approx nearly almost exactly precisely least max maximum
 minimum mostly typically usually normally generally always never often sometimes still already currently
 since later earlier prior pre post past beyond near toward towards across along among behind beside besides
 despite inside outside onto till unlike versus vs plus minus times several many less fewer half double twice
 triple quarter another value values ratio rate rates factor threshold weight size price delay latency""".split())
#: where a word in small letters is said to be a name, and the words that are none there
_SAID_RULES = ((_BEFORE_VERSION, _NOT_NAMES | _BEFORE_NUMBER), (_PACKAGE, _NOT_NAMES))
#: words any question may use whatever it is about: what one does with a thing, what a thing is
#: called in general, what one wants of it (with ``FILLER_WORDS``). A source that says only these
#: of a question says nothing of its subject
_ORDINARY = FILLER_WORDS | frozenset("""configure configuration config configurable set setting settings setup
    install installation installing uninstall reinstall run running work working handle handling support
    deploy deployment start starting stop restart enable disable create creating make making add adding
    remove delete update updating upgrade upgrading connect connecting integrate integration build building
    load loading call calling import importing fix fixing debug debugging troubleshoot troubleshooting manage
    managing tune tuning optimize optimise host hosting serve serving launch need want require requirement
    change changing write writing read reading check checking try find learn know understand implement
    package library module tool app application program software project code system server client
    service thing stuff feature option version error problem issue question difference
    fast faster fastest slow slower quick easy easier simple safe secure possible different same new old
    right wrong bad efficient reliable default
    behind across onto toward towards among around beyond inside outside near unlike versus vs""".split())
_ORDINARY_STEMS = frozenset(bare_stem(word) for word in _ORDINARY)
#: "How does X work?" ("how X works", "How does X work in Y?"): its "work" asks how, and X is what
#: it asks about; in "How does work stealing work?" the last one
_HOW_IT_WORKS = re.compile(r"^(\s*how\b.*?\S)\s+(?:work|works|working)\b"
                           r"((?:\s+(?:in|on|with|for|under|inside|within|across|when|if|together)\b.*?)?[\s?.!]*)$",
                           re.IGNORECASE | re.DOTALL)
#: a word glued of two others ("timeout": "time out") is said where both are, each this long at least
_GLUED_PART_CHARS = 3
#: where a sentence of the question starts: its first word's capital says nothing
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n)\s*[\"'(\[]*$")


def _is_name(word: str, capital_counts: bool) -> bool:
    """A word that names something: an identifier (a digit beside letters, ``_``, an inner dot,
    a capital after a small letter: ``h11``, ``load_dotenv``, ``useEffect``), a word in capitals
    (``HTTPX``; not ``OK`` or ``FAQ``), or, where ``capital_counts``, a capitalised word
    (``Kubernetes``)."""
    if len(word) < 2 or word.lower() in STOPWORDS or word.upper() in _GENERIC_CAPS or _VERSION.fullmatch(word):
        return False
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return False
    identifier = ("_" in word or "." in word.strip(".") or any(c.isdigit() for c in word)
                  or re.search(r"[^\W\d_](?<!\w[A-Z])[A-Z]", word) is not None and not word.isupper())
    shouted = len(letters) >= 2 and all(c.isupper() for c in letters)
    return identifier or shouted or (capital_counts and word[0].isupper())


def named_terms(question: str) -> list[str]:
    """The names ``question`` gives, as written, each once, in order. The capital a sentence starts
    with is no name; in a question written in Title Case no capital is."""
    words = [(m.group(), _SENTENCE_START.search(question[: m.start()]) is not None) for m in _WORD.finditer(question)]
    inner = [w for w, start in words if not start and w.lower() not in STOPWORDS and w[0].isalpha()]
    capitalised = sum(w[0].isupper() and not w.isupper() for w in inner)  # Speed, not MCP
    title_case = capitalised >= 3 and capitalised >= _TITLE_CASE_SHARE * len(inner)
    said = {m.start(1): m.group(1) for rule, plain in _SAID_RULES for m in rule.finditer(question)
            if m.group(1).islower() and m.group(1) not in STOPWORDS and m.group(1) not in plain}
    units = {m.start(1) for m in _QUANTITY.finditer(question)}
    names: dict[str, None] = {}
    for span in _CODE_SPAN.finditer(question):
        code = " ".join(span.group(1).split())
        if any(c.isalpha() for c in code) and code.lower() not in STOPWORDS and not _VERSION.fullmatch(code):
            names.setdefault(code, None)
    for match, (word, start) in zip(_WORD.finditer(question), words, strict=True):
        if match.start() in units or _QUANTITY.fullmatch(word):  # "1.5 GB", "540s": an amount
            continue
        if _is_name(word, capital_counts=not start and not title_case) or said.get(match.start()) == word:
            names.setdefault(word, None)
    return list(names)


def written_words(text: str) -> set[str]:
    """The words of ``text`` as written, in small letters, identifiers whole (``tavily_api_key``,
    ``load_dotenv``): what says a name as a word of its own."""
    return {m.group().lower().rstrip(".") for m in _WORD.finditer(text)}


def source_texts(sources: Iterable[Mapping[str, Any]], passages: Mapping[Any, Sequence[Mapping[str, Any]]]) -> list[str]:
    """What the sources found say, as read: each one's title and snippet, and each passage read
    from it with its heading (tables and code included: a word in a table row is said)."""
    texts = [f"{s.get('title') or ''}\n{s.get('snippet') or ''}" for s in sources]
    texts += [f"{p.get('heading') or ''}\n{p.get('text') or ''}" for read in passages.values() for p in read]
    return texts


#: the past forms of common irregular verbs that no stem reaches: "When did he leave the project?"
#: was called unanswered beside "he left the project in 2023"
IRREGULAR: dict[str, tuple[str, ...]] = {base: tuple(forms.split("/")) for base, forms in (
    pair.split(":") for pair in """leave:left begin:began/begun break:broke/broken bring:brought build:built
    buy:bought choose:chose/chosen come:came do:did/done drive:drove/driven fall:fell/fallen feel:felt
    find:found forget:forgot/forgotten freeze:froze/frozen get:got/gotten give:gave/given go:went/gone
    grow:grew/grown hold:held keep:kept know:knew/known lead:led lose:lost make:made mean:meant meet:met
    pay:paid run:ran say:said see:saw/seen sell:sold send:sent shut:shut sit:sat speak:spoke/spoken
    spend:spent stand:stood steal:stole/stolen take:took/taken teach:taught tell:told think:thought
    throw:threw/thrown understand:understood win:won write:wrote/written""".split())}


@dataclass(frozen=True)
class Vocabulary:
    """What some texts say, read once for every question asked of them: their words, the stems
    of their content words, and those as ``bare_stem`` has them."""

    words: frozenset[str]
    stems: frozenset[str]
    bare: frozenset[str]

    @classmethod
    def of(cls, texts: Iterable[str]) -> Vocabulary:
        words = frozenset(word for text in texts for word in words_of(text))
        content = [word for word in words if is_content_word(word)]
        return cls(words, frozenset(map(stem, content)), frozenset(map(bare_stem, content)))

    def says(self, word: str) -> bool:
        """``word`` is said in another form ("caching" by "cache", "leave" by "left") or split in
        two ("timeout" by "times out")."""
        if bare_stem(word) in self.bare or any(form in self.words for form in IRREGULAR.get(word, ())):
            return True
        return any(bare_stem(word[:cut]) in self.bare and (word[cut:] in self.words or bare_stem(word[cut:]) in self.bare)
                   for cut in range(_GLUED_PART_CHARS, len(word) - _GLUED_PART_CHARS + 1))


def subjects(question: str, texts: Iterable[str] | Vocabulary) -> tuple[list[str], list[str]]:
    """What ``question`` is about, and what of it none of ``texts`` says: its names (each of their
    word stems somewhere in the texts: "Sorted Containers" is said by a text that says "sorted"
    and "containers"); in a question that gives none, its words less ``_ORDINARY`` ones, when the
    texts say none of them ("configure nginx": nginx), else nothing."""
    said = texts if isinstance(texts, Vocabulary) else Vocabulary.of(texts)
    names = named_terms(question)
    # a word in a script without Latin letters (Chinese, Cyrillic, ...) that no text says: a question
    # asked in Chinese about RunPod was answered from RunPod's pages, every word but "RunPod" unseen
    foreign = [w for w in dict.fromkeys(words_of(question)) if _unlatin(w) and not said.says(w)]
    if names:
        return [*names, *foreign], [name for name in names if not set(content_stems(name)) <= said.stems] + foreign
    own = list(dict.fromkeys(w for w in words_of(question) if is_content_word(w) and not _ordinary(w)))
    unsaid = [word for word in own if not said.says(word)]
    # most of what it asks is in no source ("When should I prune cucumber plants?" against garden
    # notes that say "plant" only): said, though the rest may be quoted
    if not own or len(unsaid) * 2 < len(own) or not unsaid:
        return [], []
    return own, unsaid


def _unlatin(word: str) -> bool:
    """A word with letters and none of them Latin (``words_of`` gives small letters)."""
    return not word.isdigit() and not any("a" <= c <= "z" or "\u00c0" <= c <= "\u024f" for c in word)


def unmentioned(question: str, texts: Iterable[str] | Vocabulary) -> list[str]:
    """What ``question`` is about that none of ``texts`` says (``subjects``)."""
    return subjects(question, texts)[1]


def without_frame(question: str) -> str:
    """``question`` less the "work" of "How does X work?", which asks how X does what it does,
    not about work: what passages are matched on. "worker" has its stem: "How does langgraph
    checkpointing work?" ranked SearXNG's set-up ("allow the worker's address") among the LangGraph
    passages, and the opening quoted only the project overview ("a RunPod Serverless worker"): the
    LangGraph document, which never says "work", said less of the question than it."""
    return _HOW_IT_WORKS.sub(r"\1\2", question)


def asked_terms(query: str) -> set[str]:
    """The terms of ``query`` (``query_terms``) less its ordinary words (``_ordinary``): what it
    asks about. A passage that says only "configure" of "How do I configure Tinyq?" configures
    something else."""
    return query_terms(" ".join(w for w in words_of(query) if is_content_word(w) and not _ordinary(w)))


#: of a question's CJK character pairs (``asked_terms``), a passage that says none of its other
#: words must say this many (all of them, where it has fewer)
MIN_CJK_PAIRS = 2


def says_asked(asked: set[str], said: set[str] | frozenset[str]) -> bool:
    """Whether the stems ``said`` say what a query asks about (``asked``, of ``asked_terms``): one
    of its words, or of its CJK character pairs ``MIN_CJK_PAIRS``. One pair may be half a word:
    "ファ" of ファイル is also ファルコン's, and a passage on the Falcon agent was quoted under
    "設定ファイルの場所はどこですか？" for it."""
    shared = asked & said
    pairs = {term for term in asked if is_cjk(term)}
    return bool(shared - pairs) or (bool(shared) and len(shared) >= min(MIN_CJK_PAIRS, len(pairs)))


def _ordinary(word: str) -> bool:
    """A word any question may use (``_ORDINARY``, an adverb: "properly"), or a number."""
    return word.isdigit() or bare_stem(word) in _ORDINARY_STEMS or (word.endswith("ly") and len(word) >= 6)



def missing_line(names: Sequence[str], *, sentence: bool = True) -> str:
    """What a report says about ``names`` (not empty): a sentence, or (``sentence=False``) the
    clause a warning starts with. A CJK run's pairs, compared one by one, are named as the run
    ("的异, 异步, 步任 ..." read as "的异步任务...")."""
    names = joined_pairs(names)
    listed = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
    return f"None of the sources found mentions {listed}." if sentence else f"none of the sources found mentions {listed}"
