"""Who a face is: per-subject scores over templates, the open-set decision, and one identity per face of a photo.

:mod:`.subjects` turns row similarities into one score per subject;
:mod:`.decision` says MATCH, UNKNOWN or AMBIGUOUS and which threshold applies;
:mod:`.assignment` gives each subject to at most one face of a photo. The rerank
agent, the CLI and the HTTP API share them.
"""

from .assignment import assign_faces, one_identity_per_face
from .decision import Decision, Verdict, decide, match_threshold
from .subjects import SubjectScores

__all__ = ["Decision", "SubjectScores", "Verdict", "assign_faces", "decide", "match_threshold", "one_identity_per_face"]
