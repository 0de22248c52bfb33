//! The schema migrations of `migrations/`, compiled into the binary.
//!
//! Listed here by hand, not found by refinery's `embed_migrations!`: that macro includes
//! each file by its absolute path, so the compiled library would name the folder of the
//! clone that built it, and every other clone sharing the build cache would find those
//! files gone and compile the library again. A test keeps this list equal to the folder.

use anyhow::Context as _;
use refinery::{Migration, Runner};

/// `(file name without .sql, SQL)`, in version order.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "V1__users_and_sessions",
        include_str!("../../../migrations/V1__users_and_sessions.sql"),
    ),
    (
        "V2__password_reset",
        include_str!("../../../migrations/V2__password_reset.sql"),
    ),
    (
        "V3__audit_events",
        include_str!("../../../migrations/V3__audit_events.sql"),
    ),
    (
        "V4__refresh_successor",
        include_str!("../../../migrations/V4__refresh_successor.sql"),
    ),
    (
        "V5__email_verification",
        include_str!("../../../migrations/V5__email_verification.sql"),
    ),
    (
        "V6__session_details",
        include_str!("../../../migrations/V6__session_details.sql"),
    ),
    (
        "V7__two_factor",
        include_str!("../../../migrations/V7__two_factor.sql"),
    ),
    (
        "V8__runtime_role",
        include_str!("../../../migrations/V8__runtime_role.sql"),
    ),
];

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
    fn every_file_of_the_folder_is_listed_in_order() {
        // At run time (`cargo test` sets it): see the checked-in OpenAPI test.
        let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
        let folder = std::path::Path::new(&manifest_dir).join("../migrations");
        let mut files: Vec<String> = std::fs::read_dir(&folder)
            .expect("migrations/ exists")
            .map(|entry| entry.expect("directory entry").file_name())
            .map(|name| name.into_string().expect("UTF-8 file name"))
            .collect();
        files.sort_by_key(|name| version(name));
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|(name, _)| format!("{name}.sql"))
            .collect();
        assert_eq!(listed, files, "MIGRATIONS must list migrations/ exactly");
    }

    #[test]
    fn every_migration_parses() {
        let runner = runner().expect("valid migration names");
        let versions: Vec<i64> = runner
            .get_migrations()
            .iter()
            .map(|m| i64::from(m.version()))
            .collect();
        assert_eq!(versions, (1..=8).collect::<Vec<i64>>());
    }

    fn version(file: &str) -> u32 {
        file.strip_prefix('V')
            .and_then(|rest| rest.split_once("__"))
            .and_then(|(number, _)| number.parse().ok())
            .unwrap_or(u32::MAX)
    }
}
