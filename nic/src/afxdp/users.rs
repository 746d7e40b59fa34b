//! The lock files that say which megatcp processes use an interface's XDP program (see
//! `program`): `/run/megatcp/xdp-NETNS-IFINDEX.users`, held shared by every user, and
//! `.setup`, held exclusively while one of them changes who uses it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::program::ProgramError;

/// Where the lock files live.
const RUN_DIR: &str = "/run/megatcp";

/// `/run/megatcp/xdp-NETNS-IFINDEX` (interface indexes are per network namespace).
pub(super) fn lock_base(ifindex: i32) -> Result<PathBuf, ProgramError> {
    let ns = std::fs::metadata("/proc/self/ns/net").map_err(|source| ProgramError::Lock {
        path: "/proc/self/ns/net".into(),
        source,
    })?;
    std::fs::create_dir_all(RUN_DIR).map_err(|source| ProgramError::Lock {
        path: RUN_DIR.into(),
        source,
    })?;
    Ok(Path::new(RUN_DIR).join(format!("xdp-{}-{ifindex}", ns.ino())))
}

pub(super) fn open_lock(path: &Path) -> Result<File, ProgramError> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| ProgramError::Lock {
            path: path.to_path_buf(),
            source,
        })
}

/// Opens `path` and takes `how` (`LOCK_EX`, `LOCK_SH`) on it, waiting for it; released
/// when the file is dropped. The last user removes the lock files, so a lock taken on a
/// file that is no longer at `path` is dropped and taken again on the new one.
pub(super) fn lock_file(path: &Path, how: i32) -> Result<File, ProgramError> {
    let err = |source| ProgramError::Lock {
        path: path.to_path_buf(),
        source,
    };
    loop {
        let file = open_lock(path)?;
        // SAFETY: `file` is an open file.
        if unsafe { libc::flock(file.as_raw_fd(), how) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err(e));
        }
        let held = file.metadata().map_err(err)?.ino();
        match std::fs::metadata(path) {
            Ok(m) if m.ino() == held => return Ok(file),
            _ => continue,
        }
    }
}
