"""The retrieval baseline: knowledge sources, the cached passage index, retrieval, a run with it."""
import json
import re

import numpy as np
import pytest

from harness import Experiment, baselines
from harness.data import Sample
from harness.errors import DataError, SpecError
from harness.prompting import prompts, retrieval


def _row(text: str, answer: str = "0") -> Sample:
    return Sample((("user", text),), answer)


def _write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path.name


class _FakeEmbed:
    """Texts -> normalised vectors from a fixed table; counts the texts it was asked to embed."""

    def __init__(self, vectors: dict[str, list[float]]):
        self.vectors, self.embedded = vectors, 0

    def __call__(self, texts):
        self.embedded += len(texts)
        v = np.array([self.vectors[t] for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


FRUIT = {"Apples grow on trees.": [1, 0, 0], "Pears are sweet fruit.": [0.8, 0.3, 0],
         "Engines burn fuel.": [0, 1, 0], "The sky is blue.": [0, 0, 1],
         "which fruit grows on trees?": [1, 0.1, 0]}


def _fruit(tmp_path, embed, folder=None):
    _write_jsonl(tmp_path / "kb.jsonl", [{"id": "apple", "text": "Apples grow on trees."},
                                         {"text": "Engines burn fuel."},
                                         {"id": "pear", "text": "Pears are sweet fruit."},
                                         {"id": 7, "text": "The sky is blue."}])
    knowledge = retrieval.load_knowledge("kb.jsonl", tmp_path)
    return retrieval.build_index(knowledge, embed, "fake", folder or tmp_path / "index")


def test_retrieval_returns_the_most_similar_passages_most_similar_first(tmp_path):
    embed = _FakeEmbed(FRUIT)
    index = _fruit(tmp_path, embed)
    assert [p.id for p in index.passages] == ["apple", "2", "pear", "7"]  # no id: the line number
    retrieve = retrieval.Retriever(index, embed)
    assert [p.id for p in retrieve(_row("which fruit grows on trees?"), 2)] == ["apple", "pear"]
    assert len(retrieve(_row("which fruit grows on trees?"), 10)) == 4  # k beyond the index: all of it
    assert retrieve.summary(2) == {"k": 2, "passages": 4, "index_sha256": index.sha256}


def test_the_retrieved_passages_sit_in_a_context_block_above_the_input():
    passages = [retrieval.Passage("a", "Apples grow on trees."), retrieval.Passage("b", "Pears too.", "Pear")]
    messages = prompts.retrieval_messages(_row("which fruit grows on trees?"), "Answer briefly.", passages)
    assert messages == [{"role": "system", "content": "Answer briefly."},
                        {"role": "user", "content": "<context>\n[1] Apples grow on trees.\n[2] Pear: Pears too.\n"
                                                    "</context>\n\nwhich fruit grows on trees?"}]


def test_retrieval_with_the_shipped_minilm(tmp_path):
    from harness.prompting.embed import Embedder

    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "places.md").write_text("The Eiffel Tower stands in Paris, France.\n\n"
                                               "The Colosseum is an amphitheatre in Rome.")
    (tmp_path / "kb" / "science.txt").write_text("Photosynthesis turns light into chemical energy in plants.")
    (tmp_path / "kb" / "sport.txt").write_text("A marathon is 42.195 kilometres long.")
    embed = Embedder()
    index = retrieval.build_index(retrieval.load_knowledge("kb", tmp_path), embed, embed.model_id,
                                  tmp_path / "index")
    assert [p.id for p in index.passages] == ["places.md#1", "places.md#2", "science.txt", "sport.txt"]
    retrieve = retrieval.Retriever(index, embed)
    assert retrieve(_row("In which city is the Eiffel Tower?"), 1)[0].id == "places.md#1"
    assert retrieve(_row("How do plants make energy from sunlight?"), 1)[0].id == "science.txt"
    assert retrieve(_row("How long is a marathon race?"), 1)[0].id == "sport.txt"


def test_the_index_is_reused_and_rebuilt_when_the_source_changes(tmp_path):
    embed = _FakeEmbed(FRUIT | {"Bananas are yellow.": [0.5, 0, 0.5]})
    first = _fruit(tmp_path, embed)
    assert embed.embedded == 4
    files = sorted(p.name for p in (tmp_path / "index").iterdir())
    assert files == [f"{first.sha256}.json", f"{first.sha256}.npy"]  # no temporary file left behind
    again = _fruit(tmp_path, embed)
    assert embed.embedded == 4 and again.sha256 == first.sha256  # read from disk, nothing embedded
    np.testing.assert_array_equal(again.vectors, first.vectors)
    # another embedding model is another index
    assert retrieval.build_index(retrieval.load_knowledge("kb.jsonl", tmp_path), embed, "other",
                                 tmp_path / "index").sha256 != first.sha256
    assert embed.embedded == 8
    with open(tmp_path / "kb.jsonl", "a") as f:
        f.write(json.dumps({"id": "banana", "text": "Bananas are yellow."}) + "\n")
    changed = retrieval.build_index(retrieval.load_knowledge("kb.jsonl", tmp_path), embed, "fake", tmp_path / "index")
    assert embed.embedded == 13 and changed.sha256 != first.sha256 and len(changed.vectors) == 5
    (tmp_path / "index" / f"{first.sha256}.npy").write_bytes(b"not an array")  # damaged: rebuilt, not trusted
    assert len(_fruit(tmp_path, embed).vectors) == 4 and embed.embedded == 17


@pytest.mark.parametrize("content, message", [
    ('{"text": "fine"}\n{"text": "unclosed}\n',
     'knowledge file kb.jsonl line 2: not valid JSON (Unterminated string starting at); each line must be an '
     'object like {"id": "p1", "title": "...", "text": "..."}'),
    ('{"text": "fine"}\n\n{"body": "wrong key"}\n',
     'knowledge file kb.jsonl line 3: needs a non-empty "text" string (got keys body); each line must be an '
     'object like {"id": "p1", "title": "...", "text": "..."}'),
    ('["a list"]\n', 'knowledge file kb.jsonl line 1: needs a non-empty "text" string (got list)'),
    ('{"id": "x", "text": "one"}\n{"id": "x", "text": "two"}\n',
     "knowledge file kb.jsonl line 2: id 'x' is already used on line 1; give every passage its own id (or none: "
     "the line number is used)"),
    ('{"id": [1], "text": "one"}\n', 'knowledge file kb.jsonl line 1: "id" must be a string or an integer'),
    ("\n\n", 'knowledge file kb.jsonl has no passages; add lines like {"id": "p1", "title": "...", "text": "..."}'),
])
def test_a_bad_knowledge_file_is_refused_with_the_line_and_the_fix(tmp_path, content, message):
    (tmp_path / "kb.jsonl").write_text(content)
    with pytest.raises(DataError) as e:
        retrieval.load_knowledge("kb.jsonl", tmp_path)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_a_missing_or_unusable_knowledge_source_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"^knowledge source nowhere.jsonl not found; give a JSONL of passages"):
        retrieval.load_knowledge("nowhere.jsonl", tmp_path)
    (tmp_path / "kb.csv").write_text("text\nhello\n")
    with pytest.raises(DataError, match=r"expected a .jsonl file of passages, a .txt/.md file or a folder of them "
                                        r"\(got a .csv file\)"):
        retrieval.load_knowledge("kb.csv", tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.json").write_text("{}")
    with pytest.raises(DataError, match=r"^knowledge folder empty has no .txt or .md files; add passage files"):
        retrieval.load_knowledge("empty", tmp_path)
    (tmp_path / "empty" / "blank.md").write_text("  \n\n ")
    with pytest.raises(DataError, match=r"^knowledge file empty/blank.md is empty; add text or delete it$"):
        retrieval.load_knowledge("empty", tmp_path)


def test_the_spec_api_and_the_baseline_budget(tmp_path):
    b = baselines.retrieval("p.md", knowledge="kb.jsonl", k=3)
    assert (b.name, b.knowledge, b.top_k, b.k) == ("retrieval_k3", "kb.jsonl", 3, 0)
    with pytest.raises(SpecError, match=r"baselines.retrieval: k \(passages per input\) must be a positive integer"):
        baselines.retrieval("p.md", knowledge="kb.jsonl", k=0)
    with pytest.raises(SpecError, match="baselines.retrieval: knowledge must be the path of a JSONL of passages"):
        baselines.retrieval("p.md", knowledge=None)
    (tmp_path / "p.md").write_text("answer")
    declared = [baselines.zero_shot("p.md"), baselines.retrieval("p.md", knowledge="kb.jsonl", k=2, calibrate=True)]
    expanded = baselines.expand(declared, tmp_path, task="classification", max_baselines=3, where="x")
    assert [n for e in expanded for n in e.scored_as] == ["zero_shot", "retrieval_k2", "retrieval_k2+calibrated"]
    with pytest.raises(SpecError, match=re.escape("x: 3 baselines to score (zero_shot 1, retrieval_k2 2) exceed "
                                                  "max_baselines=2")):
        baselines.expand(declared, tmp_path, task="classification", max_baselines=2, where="x")
    with pytest.raises(SpecError, match="calibrate re-ranks label scores, so it needs a classification task"):
        baselines.expand(declared, tmp_path, task="generation", max_baselines=3, where="x")
    Experiment(name="x", data="d.jsonl", baselines=declared)  # accepted as a baseline


def test_a_run_stores_the_retrieval_baseline_with_its_prompts(tmp_path, tiny_model_dir, monkeypatch):
    from tiny import write_classification_jsonl

    from harness._engine import run_experiment
    from harness.store import Store

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    write_classification_jsonl(tmp_path / "data.jsonl", n=40)
    (tmp_path / "system.md").write_text("Answer with the label only: 1 or 0.")
    passages = {"area": "Headlines about an area man are satire from The Onion.",
                "senate": "Headlines about the senate passing a bill are real news.",
                "weather": "Rain is expected over the coast tomorrow.",
                "recipe": "Whisk two eggs with flour and milk for pancakes."}
    _write_jsonl(tmp_path / "kb.jsonl", [{"id": k, "text": v} for k, v in passages.items()])
    spec = Experiment(name="rag", data="data.jsonl", model=str(tiny_model_dir), split=(24, 8, 8), regression=None, forgetting=None,
                      max_baselines=3, knowledge_task=True,
                      baselines=[baselines.zero_shot("system.md"),
                                 baselines.retrieval("system.md", knowledge="kb.jsonl", k=1, calibrate=True)])
    store = Store(tmp_path / "h.duckdb")
    result = run_experiment(spec, store, root=tmp_path, log=lambda _: None)
    names = ["zero_shot", "retrieval_k1", "retrieval_k1+calibrated"]
    assert list(result.baselines) == names
    stored = {a.name: a for a in store.approaches(result.run_id)}
    scored = {(m["approach"], m["split"]) for m in store.rows("metrics", result.run_id) if m["metric"] == "accuracy"}
    assert scored == {(n, split) for n in names for split in ("val", "test")}
    config = stored["retrieval_k1"].config
    index = config["retrieval"]
    assert (config["knowledge"], config["top_k"], index["k"], index["passages"]) == ("kb.jsonl", 1, 1, 4)
    assert config["knowledge_sha256"] == retrieval.load_knowledge("kb.jsonl", tmp_path).sha256
    assert (tmp_path / "cache" / "retrieval" / f"{index['index_sha256']}.npy").is_file()
    assert stored["retrieval_k1+calibrated"].config["content_free_prompts"] >= 3
    plain = [r["input"] for r in store.rows("predictions", result.run_id, approach="zero_shot", split="test")]
    for approach in ("retrieval_k1", "retrieval_k1+calibrated"):
        rows = store.rows("predictions", result.run_id, approach=approach, split="test")
        # the prompts as sent: the retrieved passage in its block above the row's own input
        split = [r["input"].split("\n</context>\n\n") for r in rows]
        assert [question for _, question in split] == plain
        for context, question in split:  # "area man dog 3" or "senate cat bill 4": the passage on its topic
            assert context == "<context>\n[1] " + passages[question.split()[0]]


def test_a_retrieval_baseline_can_show_examples_first_for_the_answer_format():
    from harness import baselines
    from harness.data import Sample
    from harness.errors import SpecError
    from harness.prompting.prompts import retrieval_messages

    b = baselines.retrieval("s.md", knowledge="k.jsonl", k=3, shots=4)
    assert b.name == "retrieval_k3_shots4" and b.k == 4 and b.top_k == 3
    assert b.config()["k"] == 4 and b.config()["strategy"] == "random"
    with pytest.raises(SpecError, match="strategy must be 'random' or 'balanced'"):
        baselines.retrieval("s.md", knowledge="k.jsonl", shots=2, strategy="nearest")

    class Passage:
        key, title, text = "p1", "Paris", "Paris is the capital of France."

    shot = Sample((("user", "capital of italy?"),), "Rome")
    messages = retrieval_messages(Sample((("user", "capital of france?"),), "Paris"), "answer briefly", [Passage()],
                                  [shot])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1]["content"] == "capital of italy?" and messages[2]["content"] == "Rome"
    assert messages[3]["content"].startswith("<context>\n[1] Paris: Paris is the capital of France.\n</context>")
    assert messages[3]["content"].endswith("capital of france?")
