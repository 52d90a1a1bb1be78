//! A database of its own for each test: a temp SQLite file by default, or a
//! fresh PostgreSQL database; and the macro that runs a test on both.

use std::sync::atomic::{AtomicU32, Ordering};

use slipway_api::db;

/// Where `SLIPWAY_TEST_POSTGRES_URL` points when it is not set.
const DEFAULT_POSTGRES_URL: &str = "postgres://root@%2Fvar%2Frun%2Fpostgresql/postgres";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    #[default]
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(Backend)` of the calling module as two tests:
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::api::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::api::Backend::Postgres).await
                }
            )*
        }
    };
}

/// A database of its own for one test. PostgreSQL is the server at
/// `SLIPWAY_TEST_POSTGRES_URL`, and a test fails loudly when it is missing.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// What is left of a database handed on to a restarted API.
    pub(super) fn handed_on() -> TestDb {
        TestDb {
            url: String::new(),
            _dir: None,
        }
    }

    /// The database of `other`, for a second API beside it.
    pub(super) fn beside(other: &TestDb) -> TestDb {
        TestDb {
            url: other.url.clone(),
            _dir: None,
        }
    }

    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("slipway.db").display()
                );
                TestDb {
                    url,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                static COUNTER: AtomicU32 = AtomicU32::new(0);
                let admin_url = std::env::var("SLIPWAY_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
                let name = format!(
                    "slipway_test_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed),
                    chrono::Utc::now().timestamp_micros() % 1_000_000
                );
                let admin = db::connect(&admin_url).await.unwrap_or_else(|err| {
                    panic!(
                        "PostgreSQL is needed for this test and does not answer at {admin_url} \
                         ({err}); run scripts/test.sh, which starts it, or set \
                         SLIPWAY_TEST_POSTGRES_URL"
                    )
                });
                use sea_orm::ConnectionTrait;
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                let (base, _) = admin_url.rsplit_once('/').expect("database in URL");
                TestDb {
                    url: format!("{base}/{name}"),
                    _dir: None,
                }
            }
        }
    }
}
