//! `cellio_runtime::fs::DirBuilder`: `std`'s builder on the blocking pool:
//! one directory or a whole path, with a mode, and `std`'s errors.
//!
//! Not under Miri: its isolation has no file system.
#![cfg(not(miri))]

mod util;

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;

use cellio_runtime::fs::{self, DirBuilder};
use util::{run, TempDir};

#[test]
fn one_directory_needs_its_parent_and_a_recursive_builder_makes_the_path() {
    let dir = TempDir::new("dir-builder");
    let base = dir.0.clone();
    run(|| async move {
        let deep = base.join("a").join("b").join("c");
        let one = DirBuilder::new();
        assert_eq!(
            one.create(&deep).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        one.create(base.join("a")).await?;
        assert_eq!(
            one.create(base.join("a")).await.unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        let mut all = DirBuilder::new();
        all.recursive(true);
        all.create(&deep).await?;
        all.create(&deep).await?; // already there: fine when recursive
        assert!(fs::metadata(&deep).await?.is_dir());
        Ok::<_, std::io::Error>(())
    })
    .unwrap();
}

#[test]
fn the_mode_is_given_to_every_directory_created() {
    let dir = TempDir::new("dir-builder-mode");
    let base = dir.0.clone();
    run(|| async move {
        let mut private = DirBuilder::new();
        private.recursive(true).mode(0o700);
        private.create(base.join("x").join("y")).await?;
        for path in [base.join("x"), base.join("x").join("y")] {
            let mode = fs::metadata(&path).await?.permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", path.display());
        }
        Ok::<_, std::io::Error>(())
    })
    .unwrap();
}
