"""The live view: redraws in a pseudo-terminal (plain ANSI and rich), snapshots on a plain stream, low cost."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fastdllm
from fastdllm.assets import tiny_model_path
from fastdllm.live import MASK_GLYPH, LiveView

SCRIPT = Path(__file__).with_name("live_script.py")
ROOT = Path(__file__).resolve().parents[1]
OPTIONS = dict(gen_length=64, block_length=8, cache="dual", unmask={"name": "threshold", "threshold": 0.9})


def run_in_pty(*modes: str) -> str:
    """Run tests/live_script.py with its stdout on a pseudo-terminal; return everything it wrote."""
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *modes], stdin=slave, stdout=slave, stderr=slave,
                            close_fds=True, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=120) == 0, b"".join(chunks).decode(errors="replace")[-2000:]
    return b"".join(chunks).decode()


def strip(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def final_text(out: str) -> str:
    return re.search(r"FINAL-TEXT: (.*)\r?\n", out).group(1).strip()


@pytest.fixture(scope="module")
def pty_output() -> dict[str, str]:
    """One child process (loading torch and the model takes most of the time) decodes in each mode."""
    modes = ["plain", "rich"] if _has_rich() else ["plain"]
    out = run_in_pty(*modes)
    return dict(zip(modes, out.split("=== MODE ")[1:]))


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def test_plain_ansi_redraws_in_a_terminal(pty_output):
    out = pty_output["plain"]
    text = final_text(out)
    redraws = int(re.search(r"REDRAWS: (\d+) FORWARDS: (\d+)", out).group(1))
    forwards = int(re.search(r"FORWARDS: (\d+)", out).group(1))
    assert text and redraws == forwards + 1  # fps=0: every forward, then finish
    assert len(re.findall(r"\x1b\[\d+A\r\x1b\[J", out)) == redraws - 1  # cursor up + clear before each redraw
    frames = strip(out).split("block 1/8")[1:]
    assert MASK_GLYPH in frames[0]  # the first frame still has masks
    done = strip(out).split("done · ")[-1]
    assert text in done and MASK_GLYPH not in done  # the last frame is the decoded text, no masks left
    assert re.search(r"\d+ forwards \(\d+ refresh, \d+ cached\).*tokens per forward.*tokens/s", strip(out))
    assert "\x1b[1;32m" in out  # newly committed tokens highlighted


def test_rich_redraws_in_a_terminal(pty_output):
    pytest.importorskip("rich")
    out = pty_output["rich"]
    text = final_text(out)
    assert out.count("\x1b[2K") > 10 and "\x1b[1A" in out  # rich's live display: erase line, cursor up
    last_panel = strip(out).split("done · ")[-1]
    assert text in last_panel  # COLUMNS=120: the answer fits on one panel line
    assert "tokens per forward" in out


@pytest.fixture(scope="module")
def model(single_thread):
    return fastdllm.load_model(tiny_model_path(), device="cpu")


def test_plain_stream_gets_one_snapshot_per_block_without_escape_codes(model):
    stream = io.StringIO()
    live = LiveView(model, stream=stream)  # not a terminal: plain, snapshots
    ids, mask = model.encode(["Ava has 5 coins. She finds 7 more. How many coins now?"])
    result = fastdllm.generate(model, ids, attention_mask=mask, callbacks=[live], **OPTIONS)
    live.finish(result)
    out = stream.getvalue()
    assert "\x1b[" not in out
    assert [int(b) for b in re.findall(r"block (\d+)/8", out)] == list(range(1, 9))
    assert result.texts[0] in out.split("done · ")[-1]


def test_each_token_is_detokenised_once(model, monkeypatch):
    """A redraw must not re-tokenise the canvas: the tokenizer decodes each distinct committed token once."""
    calls = []
    decode = model.tokenizer.decode
    monkeypatch.setattr(model.tokenizer, "decode", lambda ids, **kw: calls.append(list(ids)) or decode(ids, **kw))
    live = LiveView(model, stream=io.StringIO(), plain=True, fps=0)
    ids, mask = model.encode(["Ben has 40 pens. He loses 12. How many pens now?"])
    result = fastdllm.generate(model, ids, attention_mask=mask, callbacks=[live], **OPTIONS)
    live.finish(result)
    assert all(len(c) == 1 for c in calls)
    assert len(calls) == len({c[0] for c in calls}) == len(set(result.generated[0].tolist()))


def test_batch_rows_and_a_second_decode_start_fresh(model):
    stream = io.StringIO()
    live = LiveView(model, stream=stream, plain=True)
    ids, mask = model.encode(["Mia has 3 stamps. She buys 4 more. How many stamps now?", "Max has 9 cards. How many?"])
    first = fastdllm.generate(model, ids, attention_mask=mask, callbacks=[live], **OPTIONS)
    live.finish(first)
    again = fastdllm.generate(model, ids[:1], attention_mask=mask[:1], callbacks=[live], **OPTIONS)
    live.finish(again)
    last = stream.getvalue().split("done · ")[-1]
    assert again.texts[0] in last and first.texts[1] not in last  # the second decode's view has one row
    assert len(live._pieces) == 1 and MASK_GLYPH not in "".join(live._pieces[0])
