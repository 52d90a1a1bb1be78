//! The database: connecting (SQLite or PostgreSQL, chosen by the URL), migrations
//! and the sea-orm entities.

pub mod entities;
mod migrations;

use std::time::Duration;

use sea_orm::sqlx::sqlite::SqliteJournalMode;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};

/// Opens a connection pool. SQLite files are created when missing (with
/// `?mode=rwc`), put in WAL mode and wait for the write lock instead of failing.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true)
        });
    if url.starts_with("sqlite:") {
        options.max_connections(8);
    }
    Database::connect(options).await
}

/// Brings the schema up to date; returns the number of migrations applied.
pub async fn migrate(db: &DatabaseConnection) -> Result<usize, DbErr> {
    migrations::run(db).await
}

/// Opens a pool on a schema brought up to date, and how many migrations it
/// took. The pool that migrated is closed first: a SQLite connection that
/// read the schema before a migration altered a table may describe a
/// statement's columns as they were (sqlx then misses a new column), so the
/// pool the API uses holds only connections opened after the last migration.
pub async fn open(url: &str) -> Result<(DatabaseConnection, usize), DbErr> {
    let db = connect(url).await?;
    let applied = migrate(&db).await?;
    if applied == 0 {
        return Ok((db, 0));
    }
    db.close().await?;
    Ok((connect(url).await?, applied))
}

/// Answers whether the database takes queries (for `/readyz`).
pub async fn ping(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.execute_unprepared("SELECT 1").await.map(|_| ())
}
