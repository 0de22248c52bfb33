//! [`TestDatabase`]: an empty Postgres database of its own for a test that needs no app
//! (the migrate function's tests), dropped with it.

use crate::test_app::{POSTGRES_ADDR, create_database, drop_database};
use uuid::Uuid;

/// A freshly created, empty database `test_<uuid>` on the local Postgres; dropped (with
/// `FORCE`) when this value is, unless `KEEP_TEST_DATA` is set.
pub struct TestDatabase {
    name: String,
}

impl TestDatabase {
    /// Creates the database.
    pub async fn create() -> TestDatabase {
        let name = format!("test_{}", Uuid::new_v4().simple());
        create_database(&name).await;
        TestDatabase { name }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL (user `postgres`, trust authentication).
    pub fn url(&self) -> String {
        format!("postgres://postgres@{POSTGRES_ADDR}/{}", self.name)
    }

    /// A connection to it.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.name));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_DATA").is_some() {
            eprintln!("KEEP_TEST_DATA: keeping database {}", self.name);
            return;
        }
        let name = self.name.clone();
        // Drop cannot await and may run on a runtime thread: a small runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            if let Err(e) = rt.block_on(drop_database(&name)) {
                eprintln!("cleanup: could not drop database {name}: {e}");
            }
        });
        let _ = cleanup.join();
    }
}

/// Held by the tests that set the runtime role's password: the role is cluster-wide, so
/// one test's check of the password must not see another's.
pub static RUNTIME_ROLE_PASSWORD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
