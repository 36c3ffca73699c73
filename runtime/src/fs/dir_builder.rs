//! [`DirBuilder`]: how to create a directory (tokio's `fs::DirBuilder`):
//! `std`'s builder, run on the blocking pool.

use std::io;
use std::path::Path;

use super::blocking;

/// Options for creating directories: [`std::fs::DirBuilder`], with an
/// async [`create`](Self::create).
///
/// ```
/// use cellio_runtime::fs::DirBuilder;
///
/// # cellio_runtime::Runtime::new()?.block_on(async {
/// let base = std::env::temp_dir().join(format!("cellio-dir-builder-doc-{}", std::process::id()));
/// let mut builder = DirBuilder::new();
/// builder.recursive(true);
/// #[cfg(unix)]
/// builder.mode(0o700);
/// builder.create(base.join("a").join("b")).await?;
/// assert!(cellio_runtime::fs::metadata(base.join("a").join("b")).await?.is_dir());
/// # cellio_runtime::fs::remove_dir_all(&base).await
/// # })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct DirBuilder {
    recursive: bool,
    #[cfg(unix)]
    mode: Option<u32>,
}

impl DirBuilder {
    /// Creates one directory, whose parent must exist; permissions
    /// `0o777` less the process's umask.
    pub fn new() -> Self {
        DirBuilder {
            recursive: false,
            #[cfg(unix)]
            mode: None,
        }
    }

    /// Also creates missing parents, and succeeds if the directory
    /// already exists ([`create_dir_all`](super::create_dir_all)).
    pub fn recursive(&mut self, recursive: bool) -> &mut Self {
        self.recursive = recursive;
        self
    }

    /// The permissions of the directories created (less the umask).
    #[cfg(unix)]
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = Some(mode);
        self
    }

    /// Creates the directory at `path` on the blocking pool:
    /// [`std::fs::DirBuilder::create`].
    pub async fn create(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let mut std = std::fs::DirBuilder::new();
        std.recursive(self.recursive);
        #[cfg(unix)]
        if let Some(mode) = self.mode {
            std::os::unix::fs::DirBuilderExt::mode(&mut std, mode);
        }
        let path = path.as_ref().to_owned();
        blocking(move || std.create(path)).await
    }
}

impl Default for DirBuilder {
    fn default() -> Self {
        Self::new()
    }
}
