"""Reading ViDA training files record by record, with the line each record starts on.

Bytes are decoded as strict UTF-8: an invalid byte is an error naming its
line, never a silent U+FFFD in a record that then counts as kept.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path


class ReadError(ValueError):
    """A record (or the rest of a file) that cannot be read; ``kind`` is its class for the summary counts."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind} ({detail})" if detail else kind)
        self.kind = kind


def _json_error(e: Exception) -> ReadError:
    if isinstance(e, json.JSONDecodeError):
        return ReadError("JSON syntax", f"{e.msg}, column {e.colno}")
    if isinstance(e, RecursionError):
        return ReadError("JSON nested too deeply")
    if isinstance(e, UnicodeDecodeError):
        return ReadError("invalid UTF-8", f"byte 0x{e.object[e.start]:02x} at offset {e.start}")
    raise e


def iter_jsonl(path: Path) -> Iterator[tuple[int, object | ReadError]]:
    """(line number, record or a ReadError) for each non-empty line."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
                if line.strip():
                    yield n, json.loads(line)
            except (json.JSONDecodeError, RecursionError, UnicodeDecodeError) as e:
                yield n, _json_error(e)


def iter_json_array(path: Path, chunk: int = 1 << 20) -> Iterator[tuple[int, object | ReadError]]:
    """Stream the elements of a JSON array file with their first line, never holding the whole file.

    An error (syntax, invalid UTF-8, a file that is not a list) ends the stream with a ReadError whose
    message holds the line.
    """
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")("strict")
    with open(path, "rb") as f:
        buf, pos, line, eof = "", 0, 1, False

        def fill() -> None:
            nonlocal buf, pos, eof
            raw = f.read(chunk)
            eof = not raw
            buf, pos = buf[pos:] + utf8.decode(raw, final=eof), 0

        def skip(chars: str) -> None:
            nonlocal pos, line
            while True:
                while pos < len(buf) and (buf[pos] in chars or buf[pos].isspace()):
                    line += buf[pos] == "\n"
                    pos += 1
                if pos < len(buf) or eof:
                    return
                fill()

        try:
            fill()
            skip("")
            if buf[pos:pos + 1] != "[":
                found = "an object" if buf[pos:pos + 1] == "{" else repr(buf[pos:pos + 20])
                yield line, ReadError("not a JSON list", f"the file starts with {found}")
                return
            pos += 1
            while True:
                skip(",")
                if pos >= len(buf):
                    yield line, ReadError("JSON syntax", "unexpected end of file")
                    return
                if buf[pos] == "]":
                    return
                while True:
                    try:
                        obj, end = decoder.raw_decode(buf, pos)
                        break
                    except json.JSONDecodeError as e:
                        if eof:
                            yield line + buf.count("\n", pos, e.pos), _json_error(e)
                            return
                        fill()
                yield line, obj
                line += buf.count("\n", pos, end)
                pos = end
        except (RecursionError, UnicodeDecodeError) as e:
            yield line + buf.count("\n", pos), _json_error(e)
