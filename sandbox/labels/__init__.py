"""MCS-style labels for sandboxes and volumes (DESIGN §5).

- `model`: contexts and levels (parse, format, dominance);
- `alloc`: a level per running sandbox, unique across processes;
- `volumes`: volume labels in xattrs, the mount decision, safe targets;
- `selinux`: the exec and mount contexts where SELinux is active.

Landlock, the enforcement where SELinux is absent, lives in
`sandbox.runtime._landlock` (it runs in the child).
"""

from .model import (Context, LabelError, LabelRefused, Level, LevelRange,
                    parse_context, parse_level, parse_range)

__all__ = ["Context", "LabelError", "LabelRefused", "Level", "LevelRange",
           "parse_context", "parse_level", "parse_range"]
