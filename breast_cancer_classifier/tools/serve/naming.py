"""Names that carry no patient data: a study is its short hash in logs, folders and metrics.

The hash is the first 12 hex digits of SHA-256 of the StudyInstanceUID (0020,000D): stable
across restarts and machines, so an operator finds the study in the database
(``studies.id``), and not reversible without the UID. No log line of the service carries a
patient ID, a patient name or a study UID.
"""

import hashlib

STUDY_HASH_LENGTH = 12
INSTANCE_NAME_LENGTH = 20


def study_hash(study_uid):
    """The short name of a study: 12 hex digits of SHA-256 of its StudyInstanceUID."""
    return hashlib.sha256(str(study_uid).encode("ascii", "replace")).hexdigest()[
        :STUDY_HASH_LENGTH]


def instance_file_name(sop_instance_uid):
    """File name of a received instance: ``<20 hex digits of SHA-256 of its UID>.dcm``."""
    digest = hashlib.sha256(str(sop_instance_uid).encode("ascii", "replace")).hexdigest()
    return f"{digest[:INSTANCE_NAME_LENGTH]}.dcm"


def scrub(text, identifiers):
    """``text`` with every non-empty value of ``identifiers`` replaced by ``[removed]``.

    For messages that may quote a header value (a decoder's error, say) before they go to
    the log or into a report.
    """
    text = str(text)
    for value in sorted({str(v) for v in identifiers if v}, key=len, reverse=True):
        text = text.replace(value, "[removed]")
    return text
