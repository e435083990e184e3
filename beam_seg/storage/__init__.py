"""The one file layer: local paths, gs:// and s3:// through the same functions.

- `paths`: what a local path is, atomic local writes, and the temporaries a run may sweep;
- `operations`: read, write, list, delete and copy, each once;
- `limits`: the deadline of remote calls, and what a storage outage is;
- `versioned`: files one writer at a time may change (the output lock's);
- `gate`: no write after a stop, and the run's scratch folders.

Callers use `from beam_seg import storage` and `storage.<function>`; Beam is imported only
when a remote URI is used.
"""

from beam_seg.storage.gate import (
    ScratchDir,
    remove_scratch,
    stop_writes,
    track_scratch,
    write_gate,
)
from beam_seg.storage.limits import (
    DEFAULT_DEADLINE_S,
    StorageUnavailable,
    deadline_s,
    note_local_failure,
    outage,
    outage_reason,
    reset_outage,
    set_deadline,
    within_deadline,
)
from beam_seg.storage.operations import (
    INPUT_CACHE_BYTES_ENV,
    delete,
    delete_tree,
    download_file,
    exists,
    list_files,
    local_cache_dir,
    local_copy,
    open_for_read,
    open_for_write,
    probe_write,
    read_bytes,
    source_identity,
    upload_file,
    write_bytes,
)
from beam_seg.storage.paths import (
    LOCK_NAME,
    OUTPUT_FOLDERS,
    TEMP_NAME,
    absolute,
    atomic_path,
    is_dir,
    is_local,
    join,
    link_base,
    literal,
    local_path,
    not_a_regular_file,
    remove_empty_work_folder,
    remove_stale_temps,
    temp_sibling,
)
from beam_seg.storage.versioned import (
    create_exclusive,
    delete_if_version,
    read_versioned,
    replace_if_version,
)

__all__ = [
    "DEFAULT_DEADLINE_S",
    "INPUT_CACHE_BYTES_ENV",
    "LOCK_NAME",
    "OUTPUT_FOLDERS",
    "TEMP_NAME",
    "ScratchDir",
    "StorageUnavailable",
    "absolute",
    "atomic_path",
    "create_exclusive",
    "deadline_s",
    "delete",
    "delete_if_version",
    "delete_tree",
    "download_file",
    "exists",
    "is_dir",
    "is_local",
    "join",
    "link_base",
    "list_files",
    "literal",
    "local_cache_dir",
    "local_copy",
    "local_path",
    "not_a_regular_file",
    "note_local_failure",
    "open_for_read",
    "open_for_write",
    "outage",
    "outage_reason",
    "probe_write",
    "read_bytes",
    "read_versioned",
    "remove_empty_work_folder",
    "remove_scratch",
    "remove_stale_temps",
    "replace_if_version",
    "reset_outage",
    "set_deadline",
    "source_identity",
    "stop_writes",
    "temp_sibling",
    "track_scratch",
    "upload_file",
    "within_deadline",
    "write_bytes",
    "write_gate",
]
