"""What each notebook's parameters accept, and its one-line check: `from helpers.course.knobs import check; check(globals(), "05")`.

One entry per notebook, keyed by its number (a deep dive by its own name, e.g. "05a"); each maps a knob of the
notebook's `parameters` cell to its kind (helpers.course.params). A knob added to a notebook is declared here too:
`check` refuses a declared knob the cell does not set. The course-wide settings (helpers.settings.KNOBS: BACKEND,
CHAT_MODEL, LOCAL_MODEL, …) are not repeated here: each one the cell sets is checked as a `Setting()`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..settings import KNOBS as SETTINGS
from . import params
from .params import Float, Int, Kind, ListOf, ModelConfig, OneOf, Priced, Setting, Text

DECLARED = {
    "00": dict(),  # 00_setup.ipynb: the course-wide settings only

    "01": dict(  # 01_api_quickstart.ipynb
        TEMPERATURE=Float(min=0, max=1.5),
        SEED=Int(min=0),
        MAX_TOKENS=Int(min=1),
    ),

    "02": dict(  # 02_prompting_conversations.ipynb
        N_MESSAGES=Int(min=1, max=41),
        K_SHOTS=Int(min=1, max=6),
        LABEL_TOKENS=Int(min=1),
        TURNS=Int(min=3, max=8),
        TURN_TOKENS=Int(min=1, auto=True),
        BUDGET_TOKENS=Int(min=1, auto=True),
        KEEP_TURNS=Int(min=1, max="TURNS - 1"),
        SEED=Int(min=0),
    ),

    "02a": dict(  # deep/02a_prompt_patterns.ipynb
        K_SHOTS=Int(min=1, max=6),
        N_MESSAGES=Int(min=7, max=48, auto=True),
        N_EXTRACT=Int(min=1, max=41, auto=True),
        LABEL_TOKENS=Int(min=1),
        TOP_LOGPROBS=Int(min=1, max=20),
        JSON_TOKENS=Int(min=34),
        SEED=Int(min=0),
        CONCURRENCY=Int(min=1, auto=True),
    ),

    "03": dict(  # 03_model_selection.ipynb
        MODELS=ListOf(Priced()),
        MAX_TOKENS=Int(min=1, auto=True),
        REASONING_TOKENS=Int(min=1),
    ),

    "03a": dict(  # deep/03a_escalation.ipynb
        MODELS=ListOf(Priced()),
        MAX_TOKENS=Int(min=1, auto=True),
    ),

    "04": dict(  # 04_function_calling.ipynb
        TOOL_CHOICE=OneOf("auto", "required", "any", "none", "retrieve_payment_status", "retrieve_payment_date"),
        MAX_TURNS=Int(min=1),
        MAX_TOKENS=Int(min=33),
        SEED=Int(min=0),
    ),

    "04a": dict(  # deep/04a_tool_calls.ipynb
        MAX_TURNS=Int(min=1),
        MAX_TOKENS=Int(min=33),
        SEED=Int(min=0),
    ),

    "05": dict(  # 05_api_rag.ipynb
        CHUNK_CHARS=Int(min=64),
        TOP_K=Int(min=1),
        MAX_TOKENS=Int(min=1),
        N_ANSWERS=Int(min=1, max=32),
        CACHE_DIR=Text(),
    ),

    "05a": dict(  # deep/05a_retrieval_engineering.ipynb
        CHUNKING=OneOf("sections", "sentences", "fixed"),
        CHUNK_SIZE=Int(min=64),
        SENTENCE_MAX_CHARS=Int(min=64),
        OVERLAP=Int(min=0, max=3),
        METRIC=OneOf("cosine", "l2"),
        RETRIEVAL=OneOf("hybrid", "dense", "bm25"),
        ALPHA=Float(min=0, max=1, auto=True),
        RERANK=OneOf("auto", True, False),
        TOP_K=Int(min=1),
        MAX_TOKENS=Int(min=1),
        CITED_MAX_TOKENS=Int(min=1),
        N_ANSWERS=Int(min=1, max=32),
        CONCURRENCY=Int(min=1, auto=True),
        CACHE_DIR=Text(),
    ),

    "06": dict(  # 06_selfhost_fp16.ipynb
        PRECISION=OneOf("auto", "fp32", "fp16", "bf16"),
        MAX_NEW_TOKENS=Int(min=1),
        TEMPERATURE=Float(above=0, max=2),
        TOP_P=Float(above=0, max=1),
        CONFIG=ModelConfig(),
    ),

    "07": dict(  # 07_quantization_int8.ipynb
        PRECISIONS=ListOf(OneOf("int8", "nf4")),
        BASELINE=OneOf("auto", "fp32", "fp16", "bf16"),
        NEW_TOKENS=Int(min=1),
        CONFIG=ModelConfig(),
    ),

    "08": dict(  # 08_local_rag.ipynb
        PRECISION=OneOf("auto", "fp32", "fp16", "bf16", "int8", "nf4"),
        K=Int(min=1),
        CHUNK_CHARS=Int(min=64),
        N_QUESTIONS=Int(min=1, max=31),
        MAX_NEW_TOKENS=Int(min=1, auto=True),
    ),

    "08a": dict(  # deep/08a_local_rag_measured.ipynb
        PRECISION=OneOf("auto", "fp32", "fp16", "bf16", "int8", "nf4"),
        K=Int(min=1),
        CHUNK_CHARS=Int(min=64),
        N_QUERIES=Int(min=10),
        MAX_NEW_TOKENS=Int(min=1, auto=True),
        RETRIEVAL=OneOf("hybrid", "dense", "bm25"),
        ANSWER_CHARS=Int(min=1),
        ALPHA=Float(min=0, max=1, auto=True),
        GEN_BATCH=Int(min=1, auto=True),
    ),

    "09": dict(  # 09_selfhost_tools_json.ipynb
        N_CASES=Int(min=1, max=12),
        MAX_TOKENS=Int(min=33),
    ),

    "09a": dict(  # deep/09a_structured_output_study.ipynb
        N_CASES=Int(min=10, max=24, multiple_of=2),
        MAX_TOKENS=Int(min=33),
        SEED=Int(min=0),
        CONCURRENCY=Int(min=1),
    ),

    "10": dict(  # 10_serving_decision_matrix.ipynb
        CONCURRENCY=ListOf(Int(min=1)),
        LOAD_REQUESTS=Int(min=1),
        LOAD_MAX_TOKENS=Int(min=1),
        HOURLY_USD=Float(min=0),
        GPU_HOURLY_USD=Float(min=0),
    ),

    "10a": dict(  # deep/10a_conformance_and_rag_latency.ipynb
        COURSE_CHECKS=OneOf("all", "chat"),
        N_RAG=Int(min=1),
        RAG_MAX_TOKENS=Int(min=1),
    ),
}


def declared(notebook: str, names: Iterable[str]) -> dict[str, Kind]:
    """The kinds a notebook's parameters are held to: a course-wide setting among `names` (the parameters cell's) is a
    `Setting()`, the notebook's own knobs are its entry above."""
    if notebook not in DECLARED:
        raise KeyError(f"check(globals(), {notebook!r}): no parameters declared for {notebook!r} in "
                       f"helpers/course/knobs.py (it has {', '.join(DECLARED)}); add an entry there")
    names = set(names)
    return {**{name: Setting() for name in SETTINGS if name in names}, **DECLARED[notebook]}


def check(namespace: dict[str, Any], notebook: str, /) -> None:
    """Check a notebook's parameters against the kinds declared for it here; one error names every bad one. A run
    starts here, so the notebook's verdict tally (helpers.course.verdicts.tally) starts empty too."""
    __tracebackhide__ = True
    from .verdicts import tally

    tally.items.clear()
    params.check(namespace, **declared(notebook, namespace))
