"""Chunking, RAG's first step: cut a document into pieces that each answer something (05, 08).

`chunk_fixed` cuts every N characters, as the seed post does; `chunk_sentences` packs whole sentences up to a size,
with an overlap; `chunk_sections` keeps the headings above each chunk, so a chunk knows what it is about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .embeddings import RagError


@dataclass(frozen=True)
class Chunk:
    """A piece of the document: its id (cited in answers), its text, and where it sits in the document."""

    id: str
    text: str
    start: int
    end: int
    title: str = ""  # the headings above it ("8. Disputes > 8.1 When to dispute"), from chunk_sections

    @property
    def search_text(self) -> str:
        """What gets embedded and keyword-indexed: the heading path, then the text (just the text if untitled)."""
        return f"{self.title}\n{self.text}" if self.title else self.text


def _check_document(text: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise RagError("The document is empty: nothing to chunk. Load a document with text in it "
                       "(e.g. helpers.rag.load_document()).")


def chunk_fixed(text: str, size: int = 512) -> list[Chunk]:
    """Cut the text into windows of `size` characters, as the seed does (words and sentences get split)."""
    _check_document(text)
    if size < 1:
        raise RagError(f"size={size}: a chunk needs at least one character.")
    chunks = []
    for start in range(0, len(text), size):
        end = min(start + size, len(text))
        if text[start:end].strip():
            chunks.append(Chunk(f"c{len(chunks):03d}", text[start:end], start, end))
    return chunks


_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+|\n\s*\n|\n(?=[#*\-|]|\d+\.)")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, paragraph or list item, as offsets into `text` (whitespace trimmed)."""
    spans, pos = [], 0
    for match in _SENTENCE_END.finditer(text):
        spans.append((pos, match.start()))
        pos = match.end()
    spans.append((pos, len(text)))
    out = []
    for start, end in spans:
        piece = text[start:end]
        if not piece.strip():
            continue
        start += len(piece) - len(piece.lstrip())
        end -= len(piece) - len(piece.rstrip())
        out.append((start, end))
    return out


def _hard_split(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    """Split an over-long sentence at word boundaries (or anywhere, for a word longer than max_chars)."""
    pieces = []
    while end - start > max_chars:
        cut = text.rfind(" ", start + 1, start + max_chars + 1)
        if cut <= start:
            cut = start + max_chars
        pieces.append((start, cut))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if start < end:
        pieces.append((start, end))
    return pieces


def chunk_sentences(text: str, max_chars: int = 512, overlap: int = 1) -> list[Chunk]:
    """Pack whole sentences into chunks of at most `max_chars`, repeating the last `overlap` sentences in the next."""
    _check_document(text)
    if max_chars < 1:
        raise RagError(f"max_chars={max_chars}: a chunk needs at least one character.")
    if overlap < 0:
        raise RagError(f"overlap={overlap}: use 0 (no overlap) or a positive number of sentences.")
    sentences: list[tuple[int, int]] = []
    for start, end in split_sentences(text):
        sentences.extend(_hard_split(text, start, end, max_chars))

    chunks: list[Chunk] = []
    i = 0
    while i < len(sentences):
        first = i
        j = i + 1  # always take at least one sentence
        while j < len(sentences) and sentences[j][1] - sentences[first][0] <= max_chars:
            j += 1
        start, end = sentences[first][0], sentences[j - 1][1]
        chunks.append(Chunk(f"c{len(chunks):03d}", text[start:end], start, end))
        if j >= len(sentences):
            break
        i = max(j - overlap, first + 1)  # step back for the overlap, but always move forward
    return chunks


_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)


def chunk_sections(text: str, max_chars: int = 512, overlap: int = 1, title_levels: int = 3) -> list[Chunk]:
    """`chunk_sentences` inside each Markdown section: no chunk crosses a heading, and each carries its heading path.

    The path (headings of level 2 to `title_levels`; the document's title, level 1, is on every page and says
    nothing) goes into `Chunk.title`, which search sees and offsets do not: relevance stays checkable by offsets.
    A document without headings gives the same chunks as `chunk_sentences`.
    """
    _check_document(text)
    heads = [(m.start(), m.end(), len(m.group(1)), m.group(2).strip()) for m in _HEADING.finditer(text)]
    starts = [0] + [end + 1 for _, end, _, _ in heads]
    stops = [start for start, _, _, _ in heads] + [len(text)]
    path: dict[int, str] = {}
    chunks: list[Chunk] = []
    for i, (a, b) in enumerate(zip(starts, stops, strict=True)):
        if i > 0:
            _, _, level, heading = heads[i - 1]
            path = {lv: h for lv, h in path.items() if lv < level} | {level: heading}
        body = text[a:b]
        if not body.strip():
            continue
        title = " > ".join(path[lv] for lv in sorted(path) if 1 < lv <= title_levels)
        for c in chunk_sentences(body, max_chars=max_chars, overlap=overlap):
            chunks.append(Chunk(f"c{len(chunks):03d}", c.text, a + c.start, a + c.end, title))
    return chunks
