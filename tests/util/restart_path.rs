//! A restart socket path of a test's own, removed when the test ends.
//!
//! A server the test stops with SIGKILL (every `RunningExample` and
//! `EchoServer` on drop) cannot remove its restart socket itself; without
//! this each run left its socket files in the temporary directory.

use std::path::{Path, PathBuf};

/// `$TMPDIR/{prefix}-{name}-{pid}`, free when made and removed on drop.
/// Declare it before the servers that use it, so they are dropped first.
pub struct RestartPath(PathBuf);

impl RestartPath {
    /// The path for this process's test `name`.
    pub fn new(prefix: &str, name: &str) -> RestartPath {
        let path = std::env::temp_dir().join(format!("{prefix}-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        RestartPath(path)
    }
}

impl std::ops::Deref for RestartPath {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for RestartPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for RestartPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
