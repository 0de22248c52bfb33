//! Private `redis-server` processes, for tests that change a server's replication (a
//! failover), which the shared Redis at 127.0.0.1:6379 must never see.
//!
//! Each [`RedisServer`] runs on a free port of 127.0.0.1 without persistence, in a temporary
//! folder of its own, and is killed when dropped. The binary is `$REDIS_SERVER`, or
//! `redis-server` on `PATH` (`scripts/test.sh` makes sure there is one).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use uuid::Uuid;

/// How long a server may take to answer after it was started, or a replica to catch up.
const PATIENCE: Duration = Duration::from_secs(30);

/// A `redis-server` process of this test's own.
pub struct RedisServer {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`.
    pub async fn start() -> RedisServer {
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let dir = std::env::temp_dir()
            .join("user-service-tests")
            .join(format!("redis-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create the server's folder");
        let port = free_port();
        let child = Command::new(&binary)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            // A replica's first sync starts at once rather than after 5 s.
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {binary} (set REDIS_SERVER or put redis-server on PATH): {e}")
            });
        let mut server = RedisServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        let started = Instant::now();
        loop {
            if let Ok(mut con) = server.try_connection().await {
                let pong: redis::RedisResult<String> =
                    redis::cmd("PING").query_async(&mut con).await;
                if pong.is_ok() {
                    return server;
                }
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "redis-server on port {port} exited ({status}): {}",
                    server.log()
                );
            }
            assert!(
                started.elapsed() < PATIENCE,
                "redis-server on port {port} does not answer: {}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://<addr>`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    async fn try_connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        redis::Client::open(self.url())?
            .get_multiplexed_async_connection()
            .await
    }

    /// A plain connection to it.
    pub async fn connection(&self) -> MultiplexedConnection {
        self.try_connection()
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.addr))
    }

    /// Runs `command` and returns its answer.
    pub async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> T {
        command
            .query_async(&mut self.connection().await)
            .await
            .unwrap_or_else(|e| panic!("{command:?} on {}: {e}", self.addr))
    }

    /// The value of `key`.
    pub async fn get(&self, key: &str) -> Option<String> {
        self.query(redis::cmd("GET").arg(key)).await
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> bool {
        self.query(redis::cmd("EXISTS").arg(key)).await
    }

    /// One field of `INFO <section>`.
    async fn info_field(&self, section: &str, field: &str) -> Option<String> {
        let info: String = self.query(redis::cmd("INFO").arg(section)).await;
        info.lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .map(|value| value.trim().to_owned())
    }

    /// Its replication id (`master_replid`): the primary's on a replica in sync.
    pub async fn replication_id(&self) -> String {
        self.info_field("replication", "master_replid")
            .await
            .expect("INFO replication names master_replid")
    }

    /// Makes it a replica of `primary` (`REPLICAOF`).
    pub async fn replicate(&self, primary: &RedisServer) {
        let (host, port) = (primary.addr.ip().to_string(), primary.addr.port());
        let _: String = self
            .query(redis::cmd("REPLICAOF").arg(host).arg(port))
            .await;
    }

    /// Waits until this replica holds everything `primary` has written so far.
    pub async fn wait_caught_up(&self, primary: &RedisServer) {
        let target = primary.repl_offset().await;
        let started = Instant::now();
        loop {
            let link = self.info_field("replication", "master_link_status").await;
            if link.as_deref() == Some("up") && self.repl_offset().await >= target {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the replica on {} did not catch up with {}: {}",
                self.addr,
                primary.addr,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How far its replication stream goes (`master_repl_offset`).
    async fn repl_offset(&self) -> i64 {
        self.info_field("replication", "master_repl_offset")
            .await
            .and_then(|offset| offset.parse().ok())
            .unwrap_or(-1)
    }

    /// Detaches this replica and makes it a primary of its own (`REPLICAOF NO ONE`), as a
    /// failover promotes a replica: it takes a new replication id.
    pub async fn promote(&self) {
        let _: String = self
            .query(redis::cmd("REPLICAOF").arg("NO").arg("ONE"))
            .await;
    }

    /// Zeroes the command statistics (`CONFIG RESETSTAT`).
    pub async fn reset_stats(&self) {
        let _: String = self.query(redis::cmd("CONFIG").arg("RESETSTAT")).await;
    }

    /// How many times each command (lower case) ran since the last [`Self::reset_stats`],
    /// counting those inside a `MULTI` (read with one `INFO commandstats`, which itself
    /// counts only from the next reading on).
    pub async fn command_calls(&self) -> HashMap<String, u64> {
        let info: String = self.query(redis::cmd("INFO").arg("commandstats")).await;
        // cmdstat_mget:calls=3,usec=12,...
        info.lines()
            .filter_map(|line| {
                let (command, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = stats.split(',').find_map(|s| s.strip_prefix("calls="))?;
                Some((command.to_owned(), calls.parse().ok()?))
            })
            .collect()
    }

    /// Its log, for a failure message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port of 127.0.0.1 that nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}
