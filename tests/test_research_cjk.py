"""Research over one's own documents in Japanese, Chinese and Korean: the local index finds a
passage by the words of a question (CJK text has no spaces between words: it is matched by
overlapping character pairs), and the keyless report quotes its sentence and cites its file.
English and German keep matching as before."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from test_search_local import _write

from core.config import DEFAULT_CONFIG_PATH, load_config
from graphs.context import JobContext, Providers
from graphs.research.action import ResearchInput, research
from graphs.research.passages import sentences_of, split_passages
from graphs.research.quoting import cite
from graphs.research.stems import content_stems, numbers_in
from providers.base import LLMConfig, Message
from providers.search.chain import SearchChain
from providers.search.local_index import LocalIndexSearch, build_index, fts_query

JA_ANSWER = "設定ファイルの場所は ~/.config/falcon/settings.yaml です。"
JA_DOC = f"""# ファルコンの使い方

ファルコンはログを集めて転送するエージェントです。インストールは数分で終わります。

## 設定

{JA_ANSWER}変更したらサービスを再起動してください。

## ログ

ログは /var/log/falcon に七日間保存されます。古いログは自動的に削除されます。
"""
ZH_ANSWER = "数据库备份每天凌晨三点自动运行。"
ZH_DOC = f"""# 运维手册

{ZH_ANSWER}备份文件保存在对象存储中，保留三十天。

监控面板显示每个服务的延迟和错误率。
"""
KO_DOC = "# 운영 안내\n\n설정 파일은 /etc/falcon/falcon.toml 에 있습니다. 변경 후 서비스를 다시 시작하세요.\n"
EN_DOC = "# Falcon notes\n\nThe settings file lives in the home folder. Restart the service after a change.\n"


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    _write(root / "falcon-ja.md", JA_DOC)
    _write(root / "ops-zh.md", ZH_DOC)
    _write(root / "guide-ko.md", KO_DOC)
    _write(root / "notes-en.md", EN_DOC)
    return root


def _names(results: list[Any]) -> list[str]:
    return [Path(r.url.split("#")[0]).name for r in results]


async def test_a_japanese_question_finds_its_document(docs: Path, tmp_path: Path) -> None:
    search = LocalIndexSearch([docs], tmp_path / "idx.sqlite")
    results = await search.search("設定ファイルの場所", 3)
    assert _names(results)[:1] == ["falcon-ja.md"], results
    assert "設定ファイル" in results[0].snippet and len(results[0].snippet) < 400


async def test_chinese_and_korean_questions_find_theirs(docs: Path, tmp_path: Path) -> None:
    search = LocalIndexSearch([docs], tmp_path / "idx.sqlite")
    assert _names(await search.search("数据库备份什么时候运行？", 3))[:1] == ["ops-zh.md"]
    assert _names(await search.search("설정 파일 위치", 3))[:1] == ["guide-ko.md"]


async def test_english_search_is_unchanged_beside_cjk_documents(docs: Path, tmp_path: Path) -> None:
    search = LocalIndexSearch([docs], tmp_path / "idx.sqlite")
    assert _names(await search.search("restart the service settings file", 5))[:1] == ["notes-en.md"]


def test_the_fts_query_splits_cjk_runs_and_stays_plain_words() -> None:
    assert fts_query("設定ファイル") == '{title_grams body_grams}: ("設定" OR "定フ" OR "ファ" OR "ァイ" OR "イル")'
    # mixed with Latin words, FTS5 syntax typed by the user stays words
    match = fts_query('yamlの設定 NEAR("x" OR')
    assert match.startswith('"yaml" OR "near" OR {title_grams body_grams}: (')
    assert fts_query("what is MCP?") == '"mcp"'  # English exactly as before


async def test_fts_syntax_in_a_cjk_question_is_no_error(docs: Path, tmp_path: Path) -> None:
    search = LocalIndexSearch([docs], tmp_path / "idx.sqlite")
    for query in ['設定" OR *', "設定}:{ファイル", "(設定) NEAR ^ファイル", "「設定」"]:
        await search.search(query, 3)  # raises on a syntax error


def test_japanese_sentences_split_at_their_full_stops() -> None:
    assert sentences_of("ファルコンはエージェントです。インストールは数分で終わります！本当？") == [
        "ファルコンはエージェントです。", "インストールは数分で終わります！", "本当？"]
    assert sentences_of("彼は「はい。」と言った。次の文です。") == ["彼は「はい。」と言った。", "次の文です。"]
    assert sentences_of("It works. Really? e.g. this") == ["It works.", "Really? e.g. this"]


def test_a_long_cjk_paragraph_is_cut_at_a_sentence_end() -> None:
    sentence = "ログは七日間保存されます。"
    passages = split_passages(sentence * 80, max_chars=100)
    assert all(p["text"].endswith("。") for p in passages[:-1]), [p["text"][-3:] for p in passages]


def test_cjk_words_are_matched_by_character_pairs() -> None:
    asked = set(content_stems("設定ファイルの場所はどこですか"))
    said = set(content_stems(JA_ANSWER))
    assert {"設定", "ファ", "場所"} <= asked & said
    assert "どこ" not in asked  # kana-only pairs are grammar, as stop words are
    assert numbers_in("ポートは8080です") == {"8080"}


def test_english_and_german_stems_are_unchanged() -> None:
    assert content_stems("The providers are failing over to the fallback chain") == ["provid", "fail", "fallba", "chain"]
    assert content_stems("Die Einstellungen für Größe und Übersetzung") == ["die", "einste", "für", "größe", "und", "überse"]


def test_a_cjk_sentence_is_cited_before_its_full_stop() -> None:
    assert cite("ログは七日間保存されます。", 2) == "ログは七日間保存されます [2]。"
    assert cite("Logs are kept.", 2) == "Logs are kept [2]."


def _planner(plan: dict[str, Any]) -> Any:
    from providers.testing import FunctionLLM

    def brain(messages: list[Message], config: LLMConfig) -> Any:
        if config.step == "plan":
            return plan
        raise AssertionError(f"extractive research asks no model to {config.step}")

    return FunctionLLM(brain)


async def _research(tmp_path: Path, docs: Path, question: str, queries: list[str]) -> dict[str, Any]:
    config = load_config(DEFAULT_CONFIG_PATH, env={"SWARM_HOME": str(tmp_path / "home")})
    search = SearchChain([("local", LocalIndexSearch([docs], tmp_path / "idx.sqlite"))])
    providers = Providers(config=config, factories={"llm": lambda: _planner({"queries": queries}), "search": lambda: search})

    async def progress(stage: str, message: str, fraction: float | None = None) -> None:
        return None

    ctx = JobContext(job_id="job-cjk", config=config, providers=providers, checkpointer=None, progress=progress)
    return await research(ResearchInput(question=question, mode="extractive", depth="quick"), ctx)


def _cited_files(result: dict[str, Any], sentence: str) -> set[str]:
    """The files the report cites for the sentence ``sentence`` opens with."""
    by_id = {s["id"]: Path(s["url"].split("#")[0]).name for s in result["sources"]}
    core = sentence.rstrip("。")
    found = re.search(re.escape(core) + r" \[([\d, ]+)\]", result["report"])
    assert found, result["report"]
    return {by_id[int(n)] for n in found.group(1).split(",")}


async def test_keyless_research_quotes_and_cites_the_japanese_sentence(docs: Path, tmp_path: Path) -> None:
    result = await _research(tmp_path, docs, "設定ファイルの場所はどこですか？", ["設定ファイル 場所"])
    assert result["mode"] == "extractive"
    assert _cited_files(result, JA_ANSWER) == {"falcon-ja.md"}
    assert "do not answer" not in result["report"] and "None of the sources" not in result["report"]
    assert result["support"] == 1.0 and all(c["support"] >= 0.9 for c in result["citations"])


async def test_keyless_research_quotes_and_cites_the_chinese_sentence(docs: Path, tmp_path: Path) -> None:
    result = await _research(tmp_path, docs, "数据库备份什么时候运行？", ["数据库 备份 时间"])
    assert _cited_files(result, ZH_ANSWER) == {"ops-zh.md"}
    assert "None of the sources" not in result["report"]  # 什么时候 ("when") is no subject
    assert result["support"] == 1.0


def _old_index(path: Path, doc: Path) -> None:
    """An index as the previous layout (schema "2": title and body only) wrote it, up to date
    with ``doc``: nothing in it says its CJK text was never split."""
    conn = sqlite3.connect(path)
    stat = doc.stat()
    conn.executescript("""
        CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE docs(id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, mtime_ns INTEGER NOT NULL,
            size INTEGER NOT NULL, sha256 TEXT NOT NULL, title TEXT NOT NULL, kind TEXT NOT NULL, pages INTEGER,
            note TEXT NOT NULL DEFAULT '');
        CREATE TABLE problems(path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL,
            sha256 TEXT NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL);
        CREATE VIRTUAL TABLE docs_fts USING fts5(title, body, tokenize='porter unicode61');""")
    conn.execute("INSERT INTO meta VALUES ('schema', '2'), ('roots', ?)", (f'["{doc.parent}"]',))
    conn.execute("INSERT INTO docs VALUES (1, ?, ?, ?, 'x', 'ファルコンの使い方', 'markdown', NULL, '')",
                 (str(doc), stat.st_mtime_ns, stat.st_size))
    conn.execute("INSERT INTO docs_fts(rowid, title, body) VALUES (?, 'ファルコンの使い方', ?)", (1 << 20, JA_DOC))
    conn.commit()
    conn.close()


async def test_an_index_of_the_previous_layout_is_rebuilt_and_finds_cjk(docs: Path, tmp_path: Path) -> None:
    index = tmp_path / "idx.sqlite"
    _old_index(index, (docs / "falcon-ja.md").resolve())
    results = await LocalIndexSearch([docs.resolve()], index).search("設定ファイルの場所", 3)
    assert _names(results)[:1] == ["falcon-ja.md"]
    stats = build_index([docs.resolve()], index)
    assert (stats.unchanged, stats.total) == (4, 4)  # rebuilt once, then up to date


def test_cjk_runs_split_into_pairs_and_other_words_stay_whole() -> None:
    """``core.cjk`` is the one rule: the index's columns, the question's query and the research's
    checks all split by it."""
    from core.cjk import cjk_terms, is_cjk_filler, split_cjk

    assert split_cjk("yamlの設定") == ["yaml", "の設", "設定"]
    assert split_cjk("京") == ["京"] and split_cjk("Größe") == ["Größe"]
    assert split_cjk("ｶﾀｶﾅ") == ["ｶﾀ", "ﾀｶ", "ｶﾅ"]
    assert cjk_terms("ファイル・システム") == ["ファ", "ァイ", "イル", "シス", "ステ", "テム"]
    assert cjk_terms("Größe und Übersetzung") == []
    assert is_cjk_filler("です") and is_cjk_filler("什么") and not is_cjk_filler("設定")
