"""Text that came from a registry, made safe to print on a terminal (standard library only).

A registry chooses its error messages, annotations, tag lists, and — through
metadata its signers wrote — role and target names. Printed raw, an ESC or CR
sequence can rewrite what a person sees (a fake ``…@sha256:`` line) and a
newline breaks "one line per error". ``printable`` escapes every character
that moves the cursor or reorders text: C0 controls, DEL, C1 controls, the
Unicode bidirectional controls and the line/paragraph separators. Everything
else, including other non-ASCII text, passes unchanged. Imported by the verify
fast path (through verify_output), so it stays one ``str.translate`` with a
table built at import.
"""

from __future__ import annotations

_BIDI_AND_SEPARATORS = (
    0x061C,  # arabic letter mark
    0x200E, 0x200F,  # left-to-right / right-to-left mark
    *range(0x202A, 0x202F),  # embeddings and overrides (LRE, RLE, PDF, LRO, RLO)
    *range(0x2066, 0x206A),  # isolates (LRI, RLI, FSI, PDI)
    0x2028, 0x2029,  # line and paragraph separators
)
_ESCAPES = {
    code: (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    for code in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *_BIDI_AND_SEPARATORS)
}


def printable(text: object) -> str:
    """``str(text)`` with every terminal control character written as a visible ``\\xNN`` / ``\\uNNNN`` escape."""
    return str(text).translate(_ESCAPES)
