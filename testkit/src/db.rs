//! Fresh, empty places to keep data: a temp folder, or a database (a SQLite file in a
//! temp folder, or a new PostgreSQL database), removed again when dropped.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where new test databases are made: `LOTSE_TEST_POSTGRES_URL`, else the local server
/// CI runs (user postgres, trust authentication).
pub fn postgres_admin_url() -> String {
    std::env::var("LOTSE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh folder under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// `tag` only makes a folder left behind by a killed test recognisable.
    pub fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("lotse-{tag}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A folder of that name inside, created if missing.
    pub fn subdir(&self, name: &str) -> std::io::Result<PathBuf> {
        let dir = self.0.join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh, empty database; removed again when dropped.
pub struct TestDb {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    None,
    /// Removes itself when dropped.
    Dir {
        _folder: TempDir,
    },
    Postgres {
        admin: String,
        name: String,
    },
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres => Self::postgres().await,
        }
    }

    /// A SQLite file in a new temp folder (the server creates the file when it connects).
    pub fn sqlite() -> Self {
        let dir = TempDir::new("test");
        Self {
            url: format!("sqlite://{}/lotse.db", dir.path().display()),
            cleanup: Cleanup::Dir { _folder: dir },
        }
    }

    async fn postgres() -> Self {
        let admin = postgres_admin_url();
        let name = format!("lotse_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::any::install_default_drivers();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL at {admin} is needed for these tests (set LOTSE_TEST_POSTGRES_URL): {e}")
            });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        Self {
            url: format!("{base}/{name}"),
            cleanup: Cleanup::Postgres { admin, name },
        }
    }

    /// The same database for a second server; only the original cleans up.
    pub fn shared(&self) -> TestDb {
        TestDb {
            url: self.url.clone(),
            cleanup: Cleanup::None,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Cleanup::Postgres { admin, name } = &self.cleanup else {
            // A temp folder removes itself.
            return;
        };
        let (admin, name) = (admin.clone(), name.clone());
        // Drop runs inside the test's runtime, which cannot block on itself.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            // Bounded: a database that cannot be dropped is left behind (a uniquely named
            // leftover) rather than waited for while the test's runtime is blocked here.
            let drop_it = async {
                if let Ok(mut conn) =
                    <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await
                {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            };
            rt.block_on(async {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(30), drop_it).await;
            });
        })
        .join();
    }
}
