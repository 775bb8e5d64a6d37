//! The SQLite engine under the embedded store and the embedded queue.
//!
//! - **One writer, group commit.** Every write is a job for one writer thread that owns the
//!   write connection. The thread takes every job waiting (up to [`MAX_BATCH`]) and runs them in
//!   one transaction: a job that fails is undone alone and the others go ahead. One `COMMIT`
//!   (one fsync of the WAL, with `synchronous=FULL`) then makes the whole batch durable, and
//!   only then is each job answered: an acknowledged write is on disk. Jobs run one after the
//!   other, as if each had the database to itself, so the checks a job makes (stock, versions,
//!   UNIQUE indexes) see the jobs before it. Nothing waits to fill a batch: under light load a
//!   batch is one job, under heavy load the fsync is shared.
//! - **Savepoints only when a job needs one.** The stores check before they write, so a job
//!   that fails has nearly always written nothing (a statement that fails undoes itself), and
//!   a savepoint per job, whose journal copies every page the job touches again, would be
//!   pure cost. A job that fails after writing (SQLite counts the rows it changed) rolls the
//!   transaction back, and the jobs before it run again, each in a savepoint this time: a job
//!   is a function of the database it sees, so it writes and answers what it would have. The
//!   rest of that batch runs in savepoints, so a batch is replayed once at most.
//! - **Several schemas, one file.** The store and the queue each bring their migrations as a
//!   [`Schema`]; the local server keeps both in one file, so the store and the queue share one
//!   writer and one fsync per batch (see `SqliteStore::open_with_queue`).
//! - **Concurrent readers.** Reads run on the calling thread, each on a read-only connection
//!   taken from a pool; WAL lets them read a consistent snapshot while the writer writes. An
//!   in-memory database (tests) is one connection, so there reads are jobs for the writer too.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};

use rusqlite::Connection;
use rusqlite::trace::{TraceEvent, TraceEventCodes};
use tokio::sync::oneshot;

/// At most this many writes share one transaction, which bounds how long the first of them
/// waits for its commit.
pub const MAX_BATCH: usize = 256;
/// Idle reader connections kept open; more are opened under load and closed after.
const MAX_IDLE_READERS: usize = 16;
/// Prepared statements kept per connection: every statement the stores run, with room.
const STATEMENT_CACHE: usize = 128;
/// Page cache per connection (SQLite's default is 2 MiB).
const CACHE_KIB: i64 = 16 * 1024;
/// How much of the file connections map into memory.
const MMAP_BYTES: i64 = 1 << 30;

/// Statements through the connection's cache of prepared statements: the stores run the same
/// few dozen statements over and over, and parsing one costs more than running it.
pub trait CachedStatements {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    fn row<T, P, F>(&self, sql: &str, params: P, map: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl CachedStatements for Connection {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row<T, P, F>(&self, sql: &str, params: P, map: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, map)
    }
}

/// Why the engine could not run a job. The store and the queue map it into their own errors.
#[derive(Debug, Clone, thiserror::Error)]
#[error("sqlite: {0}")]
pub struct EngineError(pub String);

impl From<rusqlite::Error> for EngineError {
    fn from(err: rusqlite::Error) -> Self {
        EngineError(err.to_string())
    }
}

/// One component's tables: its migrations, applied in order, each once. The `schema_versions`
/// table records how many of each schema's have run.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    pub name: &'static str,
    pub migrations: &'static [&'static str],
}

/// A handle on one database file (or one in-memory database); cheap to clone.
#[derive(Clone)]
pub struct EmbeddedDb {
    writer: Arc<Writer>,
    stats: Arc<Stats>,
    /// `None` for an in-memory database: its one connection is the writer's.
    readers: Option<Arc<Readers>>,
}

impl EmbeddedDb {
    /// Opens (creating if needed) the database at `path` in WAL mode with `synchronous=FULL`,
    /// applies each schema's migrations not yet applied and starts the writer thread.
    pub fn open(path: &Path, schemas: &[Schema]) -> Result<Self, EngineError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        migrate(&mut conn, schemas)?;
        let readers =
            Arc::new(Readers { path: path.to_owned(), idle: Mutex::new(Vec::new()), traced: AtomicBool::new(false) });
        Ok(Self::start(conn, Some(readers)))
    }

    /// A private in-memory database, for tests.
    pub fn in_memory(schemas: &[Schema]) -> Result<Self, EngineError> {
        let mut conn = Connection::open_in_memory()?;
        migrate(&mut conn, schemas)?;
        Ok(Self::start(conn, None))
    }

    fn start(conn: Connection, readers: Option<Arc<Readers>>) -> Self {
        let (jobs, queued) = mpsc::channel();
        let stats = Arc::new(Stats::default());
        let writer_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run_writer(conn, queued, &writer_stats))
            .inspect_err(|err| tracing::error!(error = %err, "the sqlite writer thread did not start"))
            .ok();
        Self { writer: Arc::new(Writer { jobs: Some(jobs), thread }), stats, readers }
    }

    /// Writes run and transactions committed so far: how much the group commit shares.
    pub fn stats(&self) -> (u64, u64) {
        (self.stats.writes.load(Ordering::Relaxed), self.stats.commits.load(Ordering::Relaxed))
    }

    /// Runs `work` in the writer's next batch and answers once the batch is committed. An `Err`
    /// from `work` undoes what it wrote, and only that. `work` may run more than once (see the
    /// module's notes): it must depend only on what it captured and the database it is given,
    /// and write only rows (`INSERT`, `UPDATE`, `DELETE`: what SQLite counts as changes), never
    /// the schema or pragmas.
    pub async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<EngineError> + Send + 'static,
        F: FnMut(&Connection) -> Result<T, E> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(WriteJob { work, result: None, reply });
        if self.writer.jobs.as_ref().is_none_or(|jobs| jobs.send(job).is_err()) {
            return Err(EngineError("the database writer has stopped".into()).into());
        }
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        answer.await.unwrap_or_else(|_| Err(EngineError("the write was abandoned (it panicked)".into()).into()))
    }

    /// Runs `work` in a read transaction on a reader connection: a consistent snapshot of what
    /// was committed when it began. It runs on the calling thread: the stores' reads are index
    /// lookups and bounded pages, and under WAL a reader never waits for the writer, so handing
    /// them to another thread would cost more (two thread switches) than the read itself.
    pub async fn read<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<EngineError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let Some(readers) = &self.readers else {
            // A job that writes nothing is never run again, so this one runs once.
            let mut work = Some(work);
            return self
                .write(move |conn| match work.take() {
                    Some(work) => work(conn),
                    None => Err(EngineError("a read ran twice".into()).into()),
                })
                .await;
        };
        let conn = readers.take()?;
        let result = match conn.exec("BEGIN", []) {
            Ok(_) => {
                let result = work(&conn);
                // A read has nothing to commit; ending it lets the WAL be checkpointed.
                match conn.exec("COMMIT", []) {
                    Ok(_) => result,
                    Err(err) => Err(EngineError::from(err).into()),
                }
            }
            Err(err) => Err(EngineError::from(err).into()),
        };
        if conn.is_autocommit() {
            readers.give_back(conn);
        }
        result
    }

    /// Hands every SQL statement run on this database, as written, to `hook`, for audits of
    /// query plans. The hook is process-wide: the first one set stays.
    pub async fn trace_statements(&self, hook: fn(&str)) -> Result<(), EngineError> {
        let _ = STATEMENT_HOOK.set(hook);
        if let Some(readers) = &self.readers {
            readers.traced.store(true, Ordering::Relaxed);
        }
        self.write(|conn| {
            trace(conn);
            Ok::<_, EngineError>(())
        })
        .await
    }
}

static STATEMENT_HOOK: OnceLock<fn(&str)> = OnceLock::new();

fn trace(conn: &Connection) {
    fn forward(event: TraceEvent<'_>) {
        if let (TraceEvent::Stmt(_, sql), Some(hook)) = (event, STATEMENT_HOOK.get()) {
            hook(sql);
        }
    }
    conn.trace_v2(TraceEventCodes::SQLITE_TRACE_STMT, Some(forward));
}

/// Settings every connection gets. A savepoint's journal (one per job of a replayed batch) is kept in
/// memory: on disk SQLite would create and delete a temporary file per write.
fn configure(conn: &Connection) -> Result<(), EngineError> {
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    // Readers see the file through memory instead of copying pages in. After a commit a reader
    // drops its mapping along with its page cache, so this saves copies only on reads between
    // two commits (the catalog's); docs/performance.md has the measurements.
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // One plan per statement, whatever values are bound: otherwise SQLite plans a statement
    // with `LIMIT ?` again at every run (the limit's value may steer the plan), which makes the
    // statement cache worthless for every page read. No plan here depends on a value.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

fn migrate(conn: &mut Connection, schemas: &[Schema]) -> Result<(), EngineError> {
    conn.pragma_update(None, "foreign_keys", "ON")?;
    configure(conn)?;
    let tx = conn.transaction()?;
    let tracked: i64 = tx.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_versions'",
        [],
        |row| row.get(0),
    )?;
    if tracked == 0 {
        tx.execute_batch("CREATE TABLE schema_versions (schema TEXT PRIMARY KEY, applied INTEGER NOT NULL) STRICT")?;
        // A file from before schemas could share one held a single schema, the one it is opened
        // for first, and counted its migrations in `user_version`.
        let legacy: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if let Some(first) = schemas.first().filter(|_| legacy > 0) {
            tx.execute("INSERT INTO schema_versions (schema, applied) VALUES (?1, ?2)", (first.name, legacy))?;
        }
    }
    for schema in schemas {
        let applied: i64 = tx
            .query_row("SELECT applied FROM schema_versions WHERE schema = ?1", [schema.name], |row| row.get(0))
            .or_else(|err| if err == rusqlite::Error::QueryReturnedNoRows { Ok(0) } else { Err(err) })?;
        for migration in schema.migrations.iter().skip(usize::try_from(applied).unwrap_or(0)) {
            tx.execute_batch(migration)?;
        }
        tx.execute(
            "INSERT INTO schema_versions (schema, applied) VALUES (?1, ?2)
             ON CONFLICT (schema) DO UPDATE SET applied = max(applied, excluded.applied)",
            (schema.name, schema.migrations.len() as i64),
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Idle read-only connections to one file.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    traced: AtomicBool,
}

impl Readers {
    fn take(&self) -> Result<Connection, EngineError> {
        let idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let conn = Connection::open(&self.path)?;
                conn.pragma_update(None, "query_only", true)?;
                configure(&conn)?;
                conn
            }
        };
        if self.traced.load(Ordering::Relaxed) {
            trace(&conn);
        }
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
    }
}

/// The writer thread and the way to it. Dropping the last handle closes the channel and waits
/// for the thread to finish its batch and close the file, so a dropped database is closed.
struct Writer {
    jobs: Option<Sender<Box<dyn Job>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    writes: AtomicU64,
    commits: AtomicU64,
    /// Transactions rolled back and run again without a job that failed after writing.
    replays: AtomicU64,
}

/// A write waiting for, or inside, a batch.
trait Job: Send {
    /// Runs the work (again, when its batch is replayed); `true` if it succeeded.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the batch's fate is known: the work's own error if it failed,
    /// else its result if the batch committed, else why the batch did not.
    fn answer(self: Box<Self>, batch: Result<(), EngineError>);
}

struct WriteJob<T, E, F> {
    work: F,
    result: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<T, E, F> Job for WriteJob<T, E, F>
where
    T: Send + 'static,
    E: From<EngineError> + Send + 'static,
    F: FnMut(&Connection) -> Result<T, E> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
        // A run that panics must not leave an earlier run's answer behind.
        self.result = None;
        let result = (self.work)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, batch: Result<(), EngineError>) {
        let answer = match (self.result, batch) {
            (Some(Err(own)), _) => Err(own),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Ok(_)), Err(err)) => Err(err.into()),
            (None, Err(err)) => Err(err.into()),
            (None, Ok(())) => Err(EngineError("the write did not run".into()).into()),
        };
        // The caller may have gone (a dropped request); what was committed stays committed.
        let _ = self.reply.send(answer);
    }
}

fn run_writer(conn: Connection, queued: Receiver<Box<dyn Job>>, stats: &Stats) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = queued.recv() {
        batch.push(first);
        batch.extend(queued.try_iter().take(MAX_BATCH - 1));
        stats.writes.fetch_add(batch.len() as u64, Ordering::Relaxed);
        commit_batch(&conn, &mut batch, stats);
    }
}

/// Runs `batch` (emptying it) in as few transactions as it takes: one, unless SQLite itself
/// rolls a transaction back midway (a full disk, an I/O error), which fails the jobs in it and
/// starts another for the rest. Commits are counted in `stats` before anyone is answered, so a
/// caller that was answered sees its commit counted.
fn commit_batch(conn: &Connection, batch: &mut Vec<Box<dyn Job>>, stats: &Stats) {
    let mut jobs = batch.drain(..);
    // The jobs run in the open transaction, in order, and whether each wrote anything.
    let mut done: Vec<(Box<dyn Job>, bool)> = Vec::new();
    // After one replay the rest of the batch runs in savepoints: a batch of refusals that each
    // write first (say, orders with an Idempotency-Key on a sold-out product) is replayed once,
    // not once per refusal.
    let mut guarded = false;
    while let Some(mut job) = jobs.next() {
        if conn.is_autocommit()
            && let Err(err) = conn.exec("BEGIN IMMEDIATE", [])
        {
            let err = EngineError::from(err);
            job.answer(Err(err.clone()));
            jobs.by_ref().for_each(|job| job.answer(Err(err.clone())));
            return;
        }
        let changes = conn.total_changes();
        let succeeded = if guarded { run_in_savepoint(conn, job.as_mut()) } else { run_caught(conn, job.as_mut()) };
        let wrote = conn.total_changes() != changes;
        if !succeeded && wrote && !guarded && !conn.is_autocommit() {
            // It failed after writing: undo the transaction and run the others again.
            stats.replays.fetch_add(1, Ordering::Relaxed);
            guarded = true;
            if !replay_without_the_last(conn, &mut done) && !conn.is_autocommit() {
                // Some jobs may not have run again: fail them all (below), as SQLite would.
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
        done.push((job, succeeded && wrote));
        if conn.is_autocommit() {
            // The transaction is gone, and with it the writes of every job in it.
            let _ = conn.execute_batch("ROLLBACK");
            let err = EngineError("the transaction was rolled back by SQLite; nothing was written".into());
            done.drain(..).for_each(|(job, _)| job.answer(Err(err.clone())));
        }
    }
    if done.is_empty() {
        return;
    }
    let committed = conn.exec("COMMIT", []).map(|_| ()).map_err(EngineError::from);
    match &committed {
        Ok(()) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
    done.drain(..).for_each(|(job, _)| job.answer(committed.clone()));
}

/// Runs a job; a panic is a failure (the writer goes on).
fn run_caught(conn: &Connection, job: &mut dyn Job) -> bool {
    catch_unwind(AssertUnwindSafe(|| job.run(conn))).unwrap_or(false)
}

/// Runs a job inside its own savepoint, so that if it fails it is undone alone; `false` if it
/// failed or the savepoint could not be kept (the transaction is then ended, which the caller
/// sees as autocommit).
fn run_in_savepoint(conn: &Connection, job: &mut dyn Job) -> bool {
    if conn.exec("SAVEPOINT job", []).is_err() {
        return false;
    }
    let succeeded = run_caught(conn, job);
    let ended = if succeeded {
        conn.exec("RELEASE job", [])
    } else {
        conn.exec("ROLLBACK TO job", []).and_then(|_| conn.exec("RELEASE job", []))
    };
    if ended.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    succeeded && ended.is_ok()
}

/// Rolls the open transaction back (the last job's writes with it) and, in a new one, runs
/// again the jobs of `done` that wrote, each in a savepoint: should one fail this time, it is
/// undone alone. A job that wrote nothing keeps its answer: the database it read is the one the
/// jobs before it write again. `false` if they could not all run again in one transaction,
/// which may then still be open: the caller ends it.
fn replay_without_the_last(conn: &Connection, done: &mut [(Box<dyn Job>, bool)]) -> bool {
    if conn.execute_batch("ROLLBACK").is_err() || conn.exec("BEGIN IMMEDIATE", []).is_err() {
        return false;
    }
    for (job, wrote) in done.iter_mut().filter(|(_, wrote)| *wrote) {
        *wrote = run_in_savepoint(conn, job.as_mut());
        if conn.is_autocommit() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    //! The engine's own promises; the store and queue suites run over it too.

    use super::*;

    const SCHEMA: &[Schema] = &[Schema {
        name: "items",
        migrations: &["CREATE TABLE items (id INTEGER PRIMARY KEY, n INTEGER NOT NULL CHECK (n >= 0)) STRICT;"],
    }];
    const NOTES: Schema = Schema { name: "notes", migrations: &["CREATE TABLE notes (text TEXT NOT NULL) STRICT;"] };

    fn count(conn: &Connection) -> Result<i64, EngineError> {
        Ok(conn.query_row("SELECT COUNT(*) FROM items", [], |row| row.get(0))?)
    }

    async fn concurrent_writes_in_one_batch_fail_alone(db: EmbeddedDb) {
        let mut writes = tokio::task::JoinSet::new();
        for i in 0..200i64 {
            let db = db.clone();
            writes.spawn(async move {
                db.write(move |conn| {
                    conn.execute("INSERT INTO items (id, n) VALUES (?1, 1)", [i])?;
                    // Every third write fails after writing: its insert must not survive.
                    if i % 3 == 0 { Err(EngineError(format!("refused {i}"))) } else { Ok(i) }
                })
                .await
            });
        }
        let (mut ok, mut refused) = (0, 0);
        while let Some(done) = writes.join_next().await {
            match done.expect("task") {
                Ok(_) => ok += 1,
                Err(_) => refused += 1,
            }
        }
        assert_eq!((ok, refused), (133, 67));
        assert_eq!(db.read(count).await.expect("count"), 133);
        let refused_rows: i64 = db
            .read(|conn| {
                Ok::<_, EngineError>(conn.query_row("SELECT COUNT(*) FROM items WHERE id % 3 = 0", [], |r| r.get(0))?)
            })
            .await
            .expect("count");
        assert_eq!(refused_rows, 0);
        // A failure after a write took its transaction back and ran the others again.
        assert!(db.stats.replays.load(Ordering::Relaxed) >= 1);
    }

    /// A write refused by a statement that fails (here a CHECK) has written nothing: it fails
    /// alone, and the batch goes on without rolling anything back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_write_refused_before_writing_costs_the_others_nothing() {
        let dir = tempdir();
        let db = EmbeddedDb::open(&dir.join("db.sqlite3"), SCHEMA).expect("db");
        let mut writes = tokio::task::JoinSet::new();
        for i in 0..200i64 {
            let db = db.clone();
            writes.spawn(async move {
                let n = if i % 4 == 0 { -1 } else { 1 };
                db.write(move |conn| {
                    Ok::<_, EngineError>(conn.execute("INSERT INTO items (id, n) VALUES (?1, ?2)", [i, n])?)
                })
                .await
            });
        }
        let mut refused = 0;
        while let Some(done) = writes.join_next().await {
            refused += usize::from(done.expect("task").is_err());
        }
        assert_eq!((refused, db.read(count).await.expect("count")), (50, 150));
        assert_eq!(db.stats.replays.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failed_write_rolls_back_alone_in_memory() {
        concurrent_writes_in_one_batch_fail_alone(EmbeddedDb::in_memory(SCHEMA).expect("db")).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failed_write_rolls_back_alone_on_file() {
        let dir = tempdir();
        concurrent_writes_in_one_batch_fail_alone(EmbeddedDb::open(&dir.join("db.sqlite3"), SCHEMA).expect("db")).await;
    }

    /// A test's write, boxed so that different closures share one batch.
    type TestWrite<T> = Box<dyn FnMut(&Connection) -> Result<T, EngineError> + Send>;

    /// Holds the writer with a first write until `writes` are all waiting, in order, so that
    /// they all share the next batch; their answers, in order.
    async fn one_batch_of<T: Send + 'static>(
        db: &EmbeddedDb,
        writes: Vec<TestWrite<T>>,
    ) -> Vec<Result<T, EngineError>> {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, running) = oneshot::channel::<()>();
        let mut started = Some(started);
        let first = {
            let db = db.clone();
            tokio::spawn(async move {
                db.write(move |_| {
                    if let Some(started) = started.take() {
                        let _ = started.send(());
                    }
                    held.recv().map_err(|e| EngineError(e.to_string()))
                })
                .await
            })
        };
        running.await.expect("the first write runs");
        let mut queued = Vec::new();
        for work in writes {
            // One at a time, so they are queued (and run) in the order given.
            let sent = db.stats.sent.load(Ordering::Relaxed) + 1;
            let writer = db.clone();
            queued.push(tokio::spawn(async move { writer.write(work).await }));
            while db.stats.sent.load(Ordering::Relaxed) < sent {
                tokio::task::yield_now().await;
            }
        }
        release.send(()).expect("release");
        first.await.expect("task").expect("first write");
        let mut answers = Vec::new();
        for write in queued {
            answers.push(write.await.expect("task"));
        }
        answers
    }

    /// In one batch, every other write fails after writing: the batch is rolled back and run
    /// again once, in savepoints from then on, not once per failure; exactly the others stay.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_is_replayed_once_however_many_writes_fail_late() {
        let dir = tempdir();
        let db = EmbeddedDb::open(&dir.join("db.sqlite3"), SCHEMA).expect("db");
        let writes = (0..100i64)
            .map(|i| {
                Box::new(move |conn: &Connection| {
                    conn.execute("INSERT INTO items (id, n) VALUES (?1, 1)", [i])?;
                    if i % 2 == 1 { Err(EngineError(format!("refused {i}"))) } else { Ok(i) }
                }) as TestWrite<i64>
            })
            .collect();
        let answers = one_batch_of(&db, writes).await;
        let accepted: Vec<i64> = answers.into_iter().filter_map(Result::ok).collect();
        assert_eq!(accepted, (0..100).step_by(2).collect::<Vec<_>>());
        assert_eq!(db.read(count).await.expect("count"), 50);
        assert_eq!(db.stats.replays.load(Ordering::Relaxed), 1);
        assert_eq!(db.stats(), (101, 2));
    }

    /// A write that succeeded, then panics when its batch is replayed, is answered with an
    /// error, not with its first answer, and nothing of it stays.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_failing_on_replay_is_not_answered_with_its_first_run() {
        let dir = tempdir();
        let db = EmbeddedDb::open(&dir.join("db.sqlite3"), SCHEMA).expect("db");
        let mut runs = 0;
        let flaky = Box::new(move |conn: &Connection| {
            runs += 1;
            assert!(runs == 1, "a bug that shows on the second run");
            Ok(conn.execute("INSERT INTO items (id, n) VALUES (1, 1)", [])?)
        }) as TestWrite<usize>;
        let steady = Box::new(|conn: &Connection| Ok(conn.execute("INSERT INTO items (id, n) VALUES (2, 1)", [])?));
        let late_failure = Box::new(|conn: &Connection| {
            conn.execute("INSERT INTO items (id, n) VALUES (3, 1)", [])?;
            Err(EngineError("refused after writing".into()))
        });
        let answers = one_batch_of(&db, vec![flaky, steady, late_failure]).await;
        let outcomes: Vec<bool> = answers.iter().map(Result::is_ok).collect();
        assert_eq!(outcomes, [false, true, false]);
        let ids: Vec<i64> = db
            .read(|conn| {
                let mut ids = conn.prepare("SELECT id FROM items ORDER BY id")?;
                let ids = ids.query_map([], |row| row.get(0))?.collect::<Result<Vec<i64>, _>>()?;
                Ok::<_, EngineError>(ids)
            })
            .await
            .expect("ids");
        assert_eq!(ids, [2]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_queued_behind_a_commit_share_the_next_one() {
        let dir = tempdir();
        let db = EmbeddedDb::open(&dir.join("db.sqlite3"), SCHEMA).expect("db");
        let writes = (1..=100i64)
            .map(|i| {
                Box::new(move |conn: &Connection| Ok(conn.execute("INSERT INTO items (id, n) VALUES (?1, 1)", [i])?))
                    as TestWrite<usize>
            })
            .collect();
        for answer in one_batch_of(&db, writes).await {
            answer.expect("queued write");
        }
        assert_eq!(db.read(count).await.expect("count"), 100);
        // The holding write's batch, then the hundred queued behind it.
        assert_eq!(db.stats(), (101, 2));
    }

    #[tokio::test]
    async fn a_panicking_write_is_answered_and_rolled_back() {
        let dir = tempdir();
        let db = EmbeddedDb::open(&dir.join("db.sqlite3"), SCHEMA).expect("db");
        let panicked = db
            .write(|conn| -> Result<(), EngineError> {
                conn.execute("INSERT INTO items (id, n) VALUES (1, 1)", [])?;
                panic!("a bug in a job");
            })
            .await;
        assert!(panicked.is_err());
        db.write(|conn| Ok::<_, EngineError>(conn.execute("INSERT INTO items (id, n) VALUES (2, 1)", [])?))
            .await
            .expect("the writer still runs");
        assert_eq!(db.read(count).await.expect("count"), 1);
    }

    #[tokio::test]
    async fn an_acknowledged_write_is_in_the_file() {
        let dir = tempdir();
        let path = dir.join("db.sqlite3");
        let db = EmbeddedDb::open(&path, SCHEMA).expect("db");
        db.write(|conn| Ok::<_, EngineError>(conn.execute("INSERT INTO items (id, n) VALUES (7, 1)", [])?))
            .await
            .expect("write");
        // Another connection, as another process would after a crash, sees it.
        let other = Connection::open(&path).expect("open");
        assert_eq!(count(&other).expect("count"), 1);
    }

    /// A fresh directory, removed when dropped.
    #[tokio::test]
    async fn schemas_share_a_file_and_each_migration_runs_once() {
        let dir = tempdir();
        let path = dir.join("db.sqlite3");
        drop(EmbeddedDb::open(&path, SCHEMA).expect("one schema"));
        // A second schema joins the file later; reopening applies nothing twice.
        for _ in 0..2 {
            let db = EmbeddedDb::open(&path, &[SCHEMA[0], NOTES]).expect("two schemas");
            db.write(|conn| conn.exec("INSERT INTO notes (text) VALUES ('hi')", []).map_err(EngineError::from))
                .await
                .expect("notes table");
        }
        let conn = Connection::open(&path).expect("open");
        let versions: Vec<(String, i64)> = conn
            .prepare("SELECT schema, applied FROM schema_versions ORDER BY schema")
            .and_then(|mut stmt| stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect())
            .expect("versions");
        assert_eq!(versions, [("items".to_owned(), 1), ("notes".to_owned(), 1)]);
    }

    #[tokio::test]
    async fn a_file_counted_in_user_version_is_adopted_by_its_schema() {
        let dir = tempdir();
        let path = dir.join("db.sqlite3");
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(SCHEMA[0].migrations[0]).expect("migrated the old way");
            conn.pragma_update(None, "user_version", 1).expect("counted");
        }
        // Running the migration again would fail: the table exists.
        let db = EmbeddedDb::open(&path, &[SCHEMA[0], NOTES]).expect("adopted");
        db.write(|conn| conn.exec("INSERT INTO notes (text) VALUES ('hi')", []).map_err(EngineError::from))
            .await
            .expect("the new schema applied");
    }

    struct TempDir(PathBuf);

    impl std::ops::Deref for TempDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// How many times running `sql` (a page read, `LIMIT ?2`) three times made SQLite prepare
    /// it again.
    fn replans_of_a_page_read(conn: &Connection) -> Result<i32, EngineError> {
        let mut page = conn.prepare_cached("SELECT id FROM items WHERE id > ?1 ORDER BY id LIMIT ?2")?;
        for _ in 0..3 {
            page.query_map((0, 10), |row| row.get::<_, i64>(0))?.collect::<Result<Vec<_>, _>>()?;
        }
        Ok(page.get_status(rusqlite::StatementStatus::RePrepare))
    }

    #[tokio::test]
    async fn a_cached_page_read_is_not_planned_again_at_each_run() {
        let dir = tempdir();
        let db = EmbeddedDb::open(&dir.0.join("db.sqlite3"), SCHEMA).expect("open");
        db.write(|conn| Ok::<_, EngineError>(conn.execute("INSERT INTO items (id, n) VALUES (1, 1), (2, 1)", [])?))
            .await
            .expect("insert");
        assert_eq!(db.write(replans_of_a_page_read).await.expect("writer"), 0);
        assert_eq!(db.read(replans_of_a_page_read).await.expect("reader"), 0);
    }

    fn tempdir() -> TempDir {
        let dir = std::env::temp_dir().join(format!("orderly-embedded-db-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}
