//! The schema migrations of `migrations/`, compiled into the binary.
//!
//! `shared/build.rs` copies them into `OUT_DIR` and writes their list there, in version
//! order; they are not found by refinery's `embed_migrations!`, which includes each file by
//! its absolute path: the compiled library would name the folder of the clone that built
//! it, and every other clone sharing the build cache would compile it again.

use anyhow::Context as _;
use refinery::{Migration, Runner};

/// `(file name without .sql, SQL)`, in version order.
const MIGRATIONS: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// A refinery runner over every migration.
pub(super) fn runner() -> anyhow::Result<Runner> {
    let migrations = MIGRATIONS
        .iter()
        .map(|(name, sql)| {
            Migration::unapplied(name, sql).with_context(|| format!("migration {name}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Runner::new(&migrations))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_holds_every_file_of_the_folder_as_it_is() {
        let folder = crate::workspace_root().join("migrations");
        let mut files: Vec<(String, String)> = std::fs::read_dir(&folder)
            .expect("migrations/ exists")
            .map(|entry| entry.expect("directory entry").path())
            .map(|path| {
                let stem = path.file_stem().expect("a file name").to_string_lossy();
                let sql = std::fs::read_to_string(&path).expect("readable migration");
                (stem.into_owned(), sql)
            })
            .collect();
        // In version order, as refinery reads the names.
        files.sort_by_key(|(stem, sql)| Migration::unapplied(stem, sql).map(|m| m.version()).ok());
        let embedded: Vec<(String, String)> = MIGRATIONS
            .iter()
            .map(|(stem, sql)| ((*stem).to_owned(), (*sql).to_owned()))
            .collect();
        assert!(
            files.len() >= 8,
            "found the migrations in {}",
            folder.display()
        );
        assert!(
            embedded == files,
            "the embedded migrations are not migrations/"
        );
    }

    #[test]
    fn versions_run_from_one_without_a_gap() {
        let runner = runner().expect("valid migration names");
        let versions: Vec<i64> = runner
            .get_migrations()
            .iter()
            .map(|m| i64::from(m.version()))
            .collect();
        let expected: Vec<i64> = (1..=versions.len() as i64).collect();
        assert_eq!(versions, expected);
    }
}
