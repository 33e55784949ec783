"""What an exit code means, wherever one is shown: the codes GRID_LRT documents for its LOFAR pipelines, picas's
own marker, the shell's, and what operators add for a pool (ExitCodeMeaning, in the admin).

The failure groups key a code as JavaScript's String(code) (tokens.states.js_string), or "(none)" when the token
has none: these keys are the same texts.
"""

from tokens.models import ExitCodeMeaning
from tokens.states import SURF

NONE = "(none)"

# ../shared/reference/picas-tokens.md, section 6: GRID_LRT's `output`.
GRID_LRT = {
    "0": "ok",
    "1": "environment variables not set",
    "3": "parset missing",
    "20": "no download file",
    "21": "download failed",
    "22": "data not staged (on tape)",
    **{str(n): "upload failed" for n in range(30, 35)},
    "96": "incomplete download",
    "97": "DPPP ran out of memory",
    "98": "bad_alloc (out of memory)",
    "99": "generic failure",
}

# A command's status as a shell reports it; above 128 the process was killed by signal (code - 128).
SHELL = {
    "0": "ok",
    "1": "general error",
    "2": "misuse of a shell command, or a missing file",
    "124": "timed out (timeout)",
    "126": "command found but not executable",
    "127": "command not found",
    "134": "aborted (SIGABRT)",
    "137": "killed (SIGKILL: often out of memory, or the batch system's limit)",
    "139": "segmentation fault (SIGSEGV)",
    "143": "terminated (SIGTERM: the batch system's wall-time limit, or a cancel)",
}

PICAS_NONE = "no exit code: the worker's code raised (picas marks lock = done = 99)"


def meanings(pool, styles):
    """{code: meaning} for a pool whose token types have these styles ({type: style}): the operators' own
    meanings first, then GRID_LRT's for its pools, then the shell's."""
    found = {NONE: PICAS_NONE}
    found.update(SHELL)
    if any(style != SURF for style in (styles or {}).values()):
        found.update(GRID_LRT)
    found.update(dict(ExitCodeMeaning.objects.filter(pool=pool).values_list("code", "meaning")))
    return found
