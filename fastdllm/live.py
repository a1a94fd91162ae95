"""A live view of decoding: the canvas redrawn in the terminal as masks fill in, block by block.

``LiveView(model)`` is a decode callback::

    live = LiveView(model)
    result = fastdllm.generate(model, ids, attention_mask=mask, callbacks=[live], **options)
    live.finish(result)  # the final text and the statistics

It draws with rich when rich is installed and the stream is a terminal (``plain=None``), else with
plain ANSI escape codes (cursor up, clear to end of screen); on a stream that is not a terminal it
prints one snapshot per finished block, without escape codes. Still-masked positions show as
``MASK_GLYPH``; tokens committed by the last forward are highlighted. Each position's text is looked
up once, when it is committed (a per-token cache), so a redraw never re-tokenises the canvas; redraws
are limited to ``fps`` per second (a block's end and ``finish`` always draw). Decoding without the
callback is untouched.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import IO, Any

MASK_GLYPH = "░"
MAX_ROWS = 4  # batch rows shown
_BOLD_GREEN, _DIM, _RESET = "\x1b[1;32m", "\x1b[2m", "\x1b[0m"


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


class LiveView:
    def __init__(self, model, stream: IO[str] | None = None, plain: bool | None = None, fps: float = 30.0) -> None:
        self.model = model
        self.stream = stream if stream is not None else sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.plain = (not (self.tty and _rich_available())) if plain is None else plain
        self.min_interval = 1.0 / fps if fps > 0 else 0.0
        tok = getattr(model, "tokenizer", None)
        if tok is None:
            raise RuntimeError("LiveView needs the model's tokenizer (a checkpoint folder with tokenizer files)")
        self._tok = tok
        self._text_of: dict[int, str] = {}  # token id -> its text (special tokens: "")
        self._end_ids = set(getattr(model, "end_token_ids", ()))
        self._pieces: list[list[str]] = []  # [rows][G] text per generated position, MASK_GLYPH while masked
        self._new: list[set[int]] = []  # positions committed by the last forward, per row
        self._ended: list[int] = []  # first end-token position per row (G when none yet)
        self._drawn_lines = 0
        self._last_draw = 0.0
        self._live = None
        self.forwards = 0
        self.redraws = 0

    # ---- the callback ---------------------------------------------------------------------------
    def __call__(self, event) -> None:
        step, layout = event.step, event.step.layout
        rows = min(event.canvas.shape[0], MAX_ROWS)
        if step.block == 0 and step.index == 0 or not self._pieces:  # a new decode
            self._start(rows, layout.gen_length, event.canvas.shape[0])
        self.forwards += 1
        start, P = step.block_start, layout.prompt_length
        commit = event.commit[:rows]  # [rows, block] bool
        where = commit.nonzero().tolist()  # one host sync per step, only while the view is on
        if where:
            tokens = event.canvas[:rows, start:start + commit.shape[1]][commit].tolist()
        else:
            tokens = []
        self._new = [set() for _ in range(rows)]
        for (row, j), token in zip(where, tokens):
            g = start - P + j
            self._pieces[row][g] = self._text(token)
            self._new[row].add(g)
            if token in self._end_ids:
                self._ended[row] = min(self._ended[row], g)
        block_done = not bool((event.canvas[:rows, start:start + commit.shape[1]] == self.model.mask_token_id).any())
        now = time.perf_counter()
        if block_done or now - self._last_draw >= self.min_interval:
            self._status = (f"block {step.block + 1}/{layout.num_blocks} · step {step.index + 1} · "
                            f"{self.forwards} forwards · {self._committed()}/{layout.gen_length * rows} positions")
            if self.tty or block_done:
                self._draw()
                self._last_draw = now

    def _start(self, rows: int, gen_length: int, batch: int) -> None:
        self._pieces = [[MASK_GLYPH] * gen_length for _ in range(rows)]
        self._new = [set() for _ in range(rows)]
        self._ended = [gen_length] * rows
        self._hidden_rows = batch - rows
        self.forwards = 0
        self._drawn_lines = 0
        self._status = ""

    def _text(self, token: int) -> str:
        text = self._text_of.get(token)
        if text is None:
            text = self._tok.decode([token], skip_special_tokens=True)
            self._text_of[token] = text
        return text

    def _committed(self) -> int:
        return sum(p != MASK_GLYPH for row in self._pieces for p in row)

    # ---- drawing --------------------------------------------------------------------------------
    def _row_text(self, row: int, highlight: bool) -> str:
        """The row's generated text; with ``highlight``, ANSI: new tokens bold green, masks dim."""
        out = []
        for g, piece in enumerate(self._pieces[row]):
            if g > self._ended[row] and piece != MASK_GLYPH:
                continue  # after the answer's end token
            if highlight and piece == MASK_GLYPH:
                out.append(f"{_DIM}{piece}{_RESET}")
            elif highlight and g in self._new[row]:
                out.append(f"{_BOLD_GREEN}{piece}{_RESET}")
            else:
                out.append(piece)
        return "".join(out)

    def _draw(self) -> None:
        self.redraws += 1
        if not self.plain:
            return self._draw_rich()
        rows = [self._row_text(r, highlight=self.tty) for r in range(len(self._pieces))]
        if self._hidden_rows:
            rows.append(f"… {self._hidden_rows} more rows")
        lines = [self._status, *("\n\n".join(rows)).split("\n")]
        if not self.tty:  # a log file: one plain snapshot per block, no escape codes
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
            return
        width = max(shutil.get_terminal_size((100, 24)).columns, 20)
        up = f"\x1b[{self._drawn_lines}A\r" if self._drawn_lines else ""
        self.stream.write(up + "\x1b[J" + "\n".join(lines) + "\n")
        self.stream.flush()
        visible = [len(_strip_ansi(line)) for line in lines]
        self._drawn_lines = sum(max(1, -(-n // width)) for n in visible)  # wrapped lines

    def _rich_renderable(self):
        from rich.panel import Panel
        from rich.text import Text

        body = Text()
        for r in range(len(self._pieces)):
            if r:
                body.append("\n\n")
            for g, piece in enumerate(self._pieces[r]):
                if g > self._ended[r] and piece != MASK_GLYPH:
                    continue
                style = "dim" if piece == MASK_GLYPH else "bold green" if g in self._new[r] else None
                body.append(piece, style=style)
        if self._hidden_rows:
            body.append(f"\n… {self._hidden_rows} more rows", style="dim")
        return Panel(body, title=self._status, title_align="left")

    def _draw_rich(self) -> None:
        if self._live is None:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(file=self.stream, force_terminal=self.tty), auto_refresh=False,
                              transient=False)
            self._live.start()
        self._live.update(self._rich_renderable(), refresh=True)

    # ---- the end --------------------------------------------------------------------------------
    def finish(self, result) -> dict[str, Any]:
        """Draw the final canvas, stop the live display, print the statistics; returns ``result.summary()``."""
        self._new = [set() for _ in self._pieces]
        self._status = f"done · {result.nfe} forwards"
        if self._pieces:
            self._draw()
        if self._live is not None:
            self._live.stop()
            self._live = None
        s = result.summary()
        self.stream.write(
            f"{result.nfe} forwards ({s['refresh_forwards']} refresh, {s['cached_forwards']} cached) · "
            f"{s['nfe_per_row_mean']:.1f} forwards per sequence · {s['tpf_canvas']:.2f} tokens per forward "
            f"(answer {s['tpf_answer']:.2f}) · {s['tokens_per_s_canvas']:.0f} tokens/s · {s['wall_time_s']:.2f} s "
            f"(wall time includes the live view's drawing)\n")
        self.stream.flush()
        return s


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
