"""Japanese, Chinese and Korean text as words: the one rule the local index (``providers/search``)
and the research's checks (``graphs/research``) both split text by.

These scripts write words without spaces between them, and FTS5's ``unicode61`` tokenizer reads a
whole run of them as one token: "設定ファイルの場所" was one word, no question found it, and no
CJK passage was ever quoted or found to support a sentence. A run is read as its overlapping
character pairs instead (設定 定フ ファ ァイ イル ...; a run of one character stays one), the usual
way to index CJK text without a dictionary: a question's pairs meet the document's wherever they
share a word of two characters or more.

Japanese and Chinese put no space between words, nor after a sentence's 。: a line wrapped inside
such text is joined without one (``unwrap``, ``join_text``), and so is a sentence after another
(``spaceless``). Korean puts spaces between words, and keeps them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

#: the letters of a CJK script: Hangul Jamo, 々 〆 〇, Hiragana, Katakana, Hangul compatibility Jamo,
#: Katakana extensions, Han (extension A, the unified block, compatibility forms), Hangul syllables,
#: half-width Katakana, Han extensions B and on. Only letters: ・ and ゛ stay separators.
CJK_LETTERS = ("\u1100-\u11ff\u3005-\u3007\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fc-\u30ff"
               "\u3131-\u318e\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3\uf900-\ufaff"
               "\uff66-\uff9f\U00020000-\U0003134f")
_RUN = re.compile(f"[{CJK_LETTERS}]+")
#: a word: letters and digits of any script (as ``graphs.research.stems.words_of`` splits text)
_WORD = re.compile(r"[^\W_]+")
#: a pair of Hiragana only: a particle or an ending (です, ます, どこ, には), read as stop words are
_KANA_ONLY = re.compile("[\u3041-\u3096\u309d-\u309f]+")


def cjk_pairs(run: str) -> list[str]:
    """The overlapping character pairs of a CJK run; a run of one character is itself."""
    return [run[i:i + 2] for i in range(len(run) - 1)] or [run]


def split_cjk(word: str) -> list[str]:
    """``word`` with each CJK run in it as its pairs (``cjk_pairs``), its other parts as they are:
    "yamlの設定" is ["yaml", "の設", "設定"]; a word without CJK letters is ``[word]``."""
    if not _RUN.search(word):
        return [word]
    pieces: list[str] = []
    at = 0
    for run in _RUN.finditer(word):
        if run.start() > at:
            pieces.append(word[at:run.start()])
        pieces += cjk_pairs(run.group())
        at = run.end()
    if at < len(word):
        pieces.append(word[at:])
    return pieces


def has_cjk(text: str) -> bool:
    """``text`` holds a CJK letter (else every word of it is split as it always was)."""
    return _RUN.search(text) is not None


def is_cjk(term: str) -> bool:
    """``term`` is all CJK letters (a pair or a single character of ``split_cjk``)."""
    return _RUN.fullmatch(term) is not None


def is_kana_only(term: str) -> bool:
    """``term`` is all Hiragana: grammar (a particle, an ending), not what a text is about."""
    return _KANA_ONLY.fullmatch(term) is not None


#: the words a question is asked with, as English's "what", "when", "how" are stop words: their
#: pairs are in no passage ("数据库备份什么时候运行？" was said to ask what no source mentions:
#: 什么, 么时, 时候)
_QUESTION_WORDS = ("什么时候 为什么 怎么样 怎样 如何 哪里 哪儿 哪个 哪些 多少 多久 几时 是否 可以 请问 有没有 "
                   "何 誰 何故 "
                   "무엇 어디 언제 어떻게 누구 얼마나 무슨 어느 있습니까 입니까 합니까 됩니까 인가요 있나요")
CJK_STOP_PAIRS = frozenset(pair for phrase in _QUESTION_WORDS.split() for pair in cjk_pairs(phrase))


def is_cjk_filler(term: str) -> bool:
    """``term`` says nothing a text is about: Hiragana alone (``is_kana_only``) or a pair of a
    question word (``CJK_STOP_PAIRS``); CJK's stop words."""
    return term in CJK_STOP_PAIRS or is_kana_only(term)


def cjk_terms(text: str) -> list[str]:
    """The CJK pairs of ``text`` (``split_cjk`` of each word, its lines unwrapped: ``unwrap``;
    none for text without CJK letters)."""
    return [piece for word in _WORD.findall(unwrap(text)) for piece in split_cjk(word) if is_cjk(piece)]


#: what Japanese and Chinese write without a space between words and between sentences: Han,
#: Kana (``CJK_LETTERS`` but Hangul: Korean puts a space between words) and their punctuation
#: and full-width forms (、。「」『』（）！？：；・ ...)
_SPACELESS = ("\u3005-\u3007\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff"
              "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
              "\u3001-\u3004\u3008-\u3020\u3030\u303d\u30fb\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65")
_SPACELESS_CHAR = re.compile(f"[{_SPACELESS}]")
#: a line break (and the blanks beside it) between two of them: a source wrapped at a column
#: in the middle of a sentence, or of a word ("再起\n動")
_WRAPPED = re.compile(f"(?<=[{_SPACELESS}])[ \t]*\r?\n[ \t]*(?=[{_SPACELESS}])")


def spaceless(left: str, right: str) -> bool:
    """Whether ``right`` follows ``left`` without a space: ``left`` ends, and ``right`` starts,
    with Japanese or Chinese text (``_SPACELESS``), which puts none between words nor after a
    sentence's 。 ("…です。次に…"); a line or a sentence joined with one showed a stray space."""
    return bool(left and right and _SPACELESS_CHAR.match(left[-1]) and _SPACELESS_CHAR.match(right[0]))


def join_text(left: str, right: str) -> str:
    """``left`` and ``right`` joined with a space, but none where ``spaceless``."""
    return left + right if spaceless(left, right) else f"{left} {right}"


def unwrap(text: str) -> str:
    """``text`` without the line breaks inside its Japanese or Chinese text (``_WRAPPED``): a
    paragraph's lines joined with a space cut "再起動" into 再起 and 動, and its pair 起動 was
    lost. A blank line, and a break beside any other character, stay."""
    return _WRAPPED.sub("", text) if "\n" in text and _SPACELESS_CHAR.search(text) else text


#: what ends a Japanese or Chinese sentence, with no space after it: 。 (and its half-width ｡),
#: academic Japanese's full-width ．, ！ and ？, their small and vertical forms, and the paired
#: ‼ ⁇ ⁈ ⁉; a run of them ("本当！？") is one end
CJK_FULL_STOPS = "。｡．！？︒︕︖﹒﹖﹗‼⁇⁈⁉"
#: the closing quotes and brackets a CJK sentence may end inside, after its full stop
#: ("…と言った。」", "…です。）", "…。』"); ASCII quotes, which also open one, are not among them
CJK_CLOSERS = "」』）】〕〉》〗〙〛］｝”’"
_LETTER_OR_DIGIT = "0-9A-Za-z\uff10-\uff19\uff21-\uff3a\uff41-\uff5a"
#: the particle that ties a closed quote into the sentence going on after it: the quoting と
#: ("と言った", "という"; not a sentence's opening ところで, とにかく, ともかく, とても, とりあえず),
#: って, など, or one case particle before a word that is no Hiragana ("を選ぶ", "の表示"; もし,
#: もう, でも, はい open a sentence), or one with は, も or の after it ("には", "への", "では")
_QUOTE_GOES_ON = "と(?!ころ|にかく|もかく|ても|りあえず)|って|など|[にへ][はもの]|では|[をがのはにでもへや](?![\u3041-\u309f])"
#: where a CJK sentence ends, no space needed (a regular expression of no width: the place just
#: past the end): after a run of ``CJK_FULL_STOPS``, and past the ``CJK_CLOSERS`` after it where
#: no 、 nor a particle that goes on with the sentence (``_QUOTE_GOES_ON``) follows them
#: ("「はい。」と言った" is one sentence: the quote is in it; "「はい。」次に" and "「はい。」それから"
#: are two). A ． between letters or digits ("３．５", "ｖ１．２") ends none, nor a stop before a
#: closer (the sentence ends past that) or before an ASCII quote.
CJK_SENTENCE_BREAK = (
    f"(?:(?<=[{CJK_FULL_STOPS}])(?![{CJK_FULL_STOPS}{CJK_CLOSERS}\"'])(?!(?<=[{_LETTER_OR_DIGIT}]．)[{_LETTER_OR_DIGIT}])"
    f"|(?:(?<=[{CJK_FULL_STOPS}][{CJK_CLOSERS}])|(?<=[{CJK_FULL_STOPS}][{CJK_CLOSERS}]{{2}}))"
    f"(?![{CJK_CLOSERS}、，,]|{_QUOTE_GOES_ON}))")
#: a CJK sentence's end: its run of full stops, then the closing quotes and brackets after it
CJK_SENTENCE_END = re.compile(f"([{CJK_FULL_STOPS}]+)([{CJK_CLOSERS}\"']*)$")


#: blanks between two of them: typography, never a word break, in Japanese and Chinese
_GAP = re.compile(f"(?<=[{_SPACELESS}])\\s+(?=[{_SPACELESS}])")


def without_gaps(text: str) -> str:
    """``text`` without the blanks between Japanese or Chinese characters (``_GAP``): what two
    texts are compared by, so that a source wrapped mid-word ("再起\\n動"), or a code block's lines
    read joined by a space, says the same words as the sentence quoting it."""
    return _GAP.sub("", text) if _SPACELESS_CHAR.search(text) else text


def joined_pairs(terms: Sequence[str]) -> list[str]:
    """``terms`` with each chain of CJK pairs that overlap in turn (设定, 定时: as ``split_cjk``
    gives a run) joined back into the run it came from, for a reader; other terms as they are."""
    joined: list[str] = []
    for term in terms:
        previous = joined[-1] if joined else ""
        if len(term) == 2 and is_cjk(term) and is_cjk(previous) and len(previous) >= 2 and previous[-1] == term[0]:
            joined[-1] = previous + term[1]
        else:
            joined.append(term)
    return joined


#: the width forms Japanese text writes Latin letters, digits and Katakana in (ＵＳＢ, ８０８０, ﾒﾓﾘ) as
#: their plain forms, one character for one (NFKC's, for these only: it also makes ½ "1⁄2")
WIDTH_FORMS = {code: plain for code in range(0xFF01, 0xFFEF)
               if len(plain := unicodedata.normalize("NFKC", chr(code))) == 1 and plain != chr(code)}
_PLAIN = {**WIDTH_FORMS, **{code: unicodedata.normalize("NFKC", chr(code)) for code in range(0xFB00, 0xFB07)}}
_VARIANT = re.compile("[\ufb00-\ufb06\uff01-\uffee]")


def plain_forms(text: str) -> str:
    """``text`` with its width forms (``WIDTH_FORMS``) and typographic ligatures (ﬁ) plain: what
    the research compares words by. A source writing ８０８０ did not state the 8080 of the sentence
    citing it, and "ＵＳＢ" was not "usb"; a half-width Katakana's voiced mark (ｶﾞ) is joined to it."""
    if not _VARIANT.search(text):
        return text
    plain = text.translate(_PLAIN)
    return unicodedata.normalize("NFC", plain) if "\u3099" in plain or "\u309a" in plain else plain
