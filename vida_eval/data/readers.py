"""Reading ViDA training files record by record, with the line each record starts on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


def iter_jsonl(path: Path) -> Iterator[tuple[int, object | Exception]]:
    """(line number, record or the JSON error) for each non-empty line."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as e:
                    yield n, e


def iter_json_array(path: Path, chunk: int = 1 << 20) -> Iterator[tuple[int, object | Exception]]:
    """Stream the elements of a JSON array file with their first line, never holding the whole file.

    A syntax error ends the stream with the error (its line number included).
    """
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8", errors="replace") as f:
        buf, pos, line, eof = "", 0, 1, False

        def fill() -> None:
            nonlocal buf, pos, eof
            more = f.read(chunk)
            eof = not more
            buf, pos = buf[pos:] + more, 0

        def skip(chars: str) -> None:
            nonlocal pos, line
            while True:
                while pos < len(buf) and (buf[pos] in chars or buf[pos].isspace()):
                    line += buf[pos] == "\n"
                    pos += 1
                if pos < len(buf) or eof:
                    return
                fill()

        fill()
        skip("")
        if buf[pos:pos + 1] != "[":
            yield line, json.JSONDecodeError("expected a JSON list", buf[pos:pos + 40], 0)
            return
        pos += 1
        while True:
            skip(",")
            if pos >= len(buf):
                yield line, json.JSONDecodeError("unexpected end of file", "", 0)
                return
            if buf[pos] == "]":
                return
            while True:
                try:
                    obj, end = decoder.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as e:
                    if eof:
                        yield line + buf.count("\n", pos, e.pos), e
                        return
                    fill()
            yield line, obj
            line += buf.count("\n", pos, end)
            pos = end
