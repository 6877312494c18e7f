"""The documents and the generation score of the `dlm_local` lm-eval tasks.

lm-eval loads this file by its path (`!function utils.NAME` in the YAML files beside it),
so it imports dlm absolutely. Each `*_dataset` function is a task's `custom_dataset`:
lm-eval calls it with the task's metadata as keyword arguments (`version`,
`config_source` and whatever `TaskManager(metadata=...)` or `simple_evaluate`'s
`model_args` add); a `data_dir` among them overrides the corpora folder. The `*_docs`
functions build the same documents as plain lists, for tests and for other harnesses.

The corpora folder is `data_dir`, else the environment variable `DLM_DATA_DIR`, else
`../shared/data`, resolved against the current working directory. Every document set is
deterministic: the same files give the same documents, choices and gold indices.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

from dlm.data.readers import read_dialogues
from dlm.errors import DataError
from dlm.evaluation.metrics import f1_of

ENV = "DLM_DATA_DIR"
DEFAULT_DATA_DIR = "../shared/data"

DAILYDIALOG_VALIDATION = "dailydialog/validation.zip"
DAILYDIALOG_TRAIN = "dailydialog/train.zip"
WIKITEXT2_VALID = "wikitext2/valid.txt"
TINYSTORIES = "tinystories/tiny_stories.txt"
SEED_TASKS = "self_instruct/seed_tasks.jsonl"

SEED = 1234
CHOICES = 4  # the true reply and three from other dialogues
CONTEXT_TURNS = 3  # the turns before the reply that the context keeps
MC_DOCS = 500
STORIES = 200  # the last stories of the file
SPEAKERS = ("A", "B")  # DailyDialog's two speakers, by turn parity


# ------------------------------------------------------------------ the corpora
def data_root(data_dir: str | Path | None = None) -> Path:
    """The corpora folder: `data_dir`, else $DLM_DATA_DIR, else ../shared/data (against
    the working directory)."""
    chosen = data_dir or os.environ.get(ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser().resolve()


def corpus(relative: str, data_dir: str | Path | None = None) -> Path:
    """One corpus file under the corpora folder; DataError naming it when it is absent."""
    root = data_root(data_dir)
    path = root / relative
    if not path.is_file():
        how = ("the data_dir metadata" if data_dir else
               f"${ENV}" if os.environ.get(ENV) else f"the default {DEFAULT_DATA_DIR}")
        raise DataError(f"{path}: corpus file not found (the corpora folder {root} comes from "
                        f"{how}); set {ENV} to the folder that holds {relative}")
    return path


def _dataset(split: str, docs: list[dict]):
    import datasets

    return {split: datasets.Dataset.from_list(docs)}


# ------------------------------------------------------- DailyDialog: next reply
def _utterances(path: Path) -> list[list[str]]:
    """Each dialogue of a DailyDialog zip as its utterances (dlm's own reader)."""
    dialogues, _ = read_dialogues(path)
    return [[m["content"] for m in d.messages] for d in dialogues]


def _letters(texts: list[str]) -> str:
    """What makes two dialogues the same: their letters, lowercased."""
    return re.sub(r"[^a-z]", "", " ".join(texts).lower())


def _same(text: str) -> str:
    return " ".join(text.lower().split())


def _context(turns: list[str], reply: int) -> str:
    """The last CONTEXT_TURNS turns before `reply`, one per line after their speaker, and
    the replying speaker's marker: the choices follow it after a space."""
    first = max(0, reply - CONTEXT_TURNS)
    lines = [f"{SPEAKERS[j % 2]}: {turns[j]}" for j in range(first, reply)]
    return "\n".join([*lines, f"{SPEAKERS[reply % 2]}:"])


def dailydialog_docs(data_dir: str | Path | None = None, n: int = MC_DOCS) -> list[dict]:
    """Which reply comes next, on DailyDialog's validation dialogues that do not also occur
    in train (compared on letters). One reply turn per dialogue, drawn with a fixed seed;
    three distractors drawn from other dialogues' replies (none the same text as the
    reply or each other); the four choices shuffled with the same generator. The first
    `n` dialogues in file order."""
    validation = _utterances(corpus(DAILYDIALOG_VALIDATION, data_dir))
    in_train = {_letters(d) for d in _utterances(corpus(DAILYDIALOG_TRAIN, data_dir))}
    held = [d for d in validation if _letters(d) not in in_train]
    rng = random.Random(SEED)
    replies = [rng.randrange(1, len(d)) for d in held]  # every turn after the first replies
    pool = [(k, i) for k, d in enumerate(held) for i in range(1, len(d))]
    docs = []
    for k, i in enumerate(replies[:n]):
        reply = held[k][i]
        seen, choices = {_same(reply)}, [reply]
        while len(choices) < CHOICES:
            other, j = pool[rng.randrange(len(pool))]
            text = held[other][j]
            if other != k and _same(text) not in seen:
                seen.add(_same(text))
                choices.append(text)
        rng.shuffle(choices)
        docs.append({"context": _context(held[k], i), "choices": choices,
                     "gold": choices.index(reply), "reply": reply, "dialogue": k, "turn": i})
    return docs


def dailydialog_dataset(data_dir: str | Path | None = None, **metadata) -> dict:
    return _dataset("validation", dailydialog_docs(data_dir))


# -------------------------------------------------------------- WikiText-2 articles
ARTICLE_HEADING = re.compile(r"^ = [^=].* = $")  # " = Title = "; sections are " = = ... = = "


def wikitext2_docs(data_dir: str | Path | None = None) -> list[dict]:
    """WikiText-2's validation split as its articles (each from its ` = Title = ` line to
    the next): `page` as in the file, `text` detokenized by lm-eval's own wikitext
    detokenizer (what its `wikitext` task scores)."""
    from lm_eval.tasks.wikitext.preprocess_wikitext import wikitext_detokenizer

    lines = corpus(WIKITEXT2_VALID, data_dir).read_text(encoding="utf-8").splitlines()
    articles: list[list[str]] = []
    for line in lines:
        if ARTICLE_HEADING.match(line):
            articles.append([line])
        elif articles:
            articles[-1].append(line)
    pages = ["\n".join(a).strip() for a in articles]
    return [{"title": a[0].strip(" ="), "page": p, "text": wikitext_detokenizer({"page": p})}
            for a, p in zip(articles, pages, strict=True)]


def wikitext2_dataset(data_dir: str | Path | None = None, **metadata) -> dict:
    return _dataset("validation", wikitext2_docs(data_dir))


# ------------------------------------------------------------- TinyStories stories
def tinystories_docs(data_dir: str | Path | None = None, n: int = STORIES) -> list[dict]:
    """The last `n` stories of the file. A newline separates stories and a blank line
    separates paragraphs, so a story starts at a non-blank line right after another."""
    lines = corpus(TINYSTORIES, data_dir).read_text(encoding="utf-8").split("\n")
    stories: list[list[str]] = []
    previous_blank = True
    for line in lines:
        blank = not line.strip()
        if not blank and (not previous_blank or not stories):
            stories.append([])
        if stories:
            stories[-1].append(line)
        previous_blank = blank
    texts = ["\n".join(s).strip() for s in stories]
    first = max(0, len(texts) - n)
    return [{"story": first + k, "text": t} for k, t in enumerate(texts[first:])]


def tinystories_dataset(data_dir: str | Path | None = None, **metadata) -> dict:
    return _dataset("validation", tinystories_docs(data_dir))


# ---------------------------------------------------- self-instruct seed tasks
def seed_task_docs(data_dir: str | Path | None = None) -> list[dict]:
    """The self-instruct seed tasks as dlm reads them (one per instance): `prompt` the
    instruction (and the input, after a blank line, when there is one), `target` the
    output."""
    dialogues, _ = read_dialogues(corpus(SEED_TASKS, data_dir))
    return [{"prompt": d.messages[0]["content"], "target": d.messages[1]["content"]}
            for d in dialogues]


def seed_tasks_dataset(data_dir: str | Path | None = None, **metadata) -> dict:
    return _dataset("test", seed_task_docs(data_dir))


_ROUGE = []


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (rouge-score, stemmed), 0 to 1."""
    if not _ROUGE:
        from rouge_score import rouge_scorer

        _ROUGE.append(rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True))
    return _ROUGE[0].score(reference, prediction)["rougeL"].fmeasure


def process_generation(doc: dict, results: list[str]) -> dict[str, float]:
    """A generation's ROUGE-L and word-overlap F1 against the seed task's output."""
    prediction = results[0].strip()
    return {"rougeL": rouge_l(prediction, doc["target"]), "f1": f1_of(prediction, doc["target"])}
