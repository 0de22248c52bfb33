//! [`TestApp`]: one in-process user-service per test, with everything it owns.
//!
//! A test app gets a database `test_<uuid>` created on the local Postgres, a Redis key
//! prefix `test:<uuid>:`, and a key-file path in a fresh temporary folder (the server creates
//! the key). Siblings ([`TestApp::spawn_sibling`]) share all three, like several instances of
//! one deployment. When the last of them is dropped, the servers are stopped, the database
//! is dropped, the Redis keys with the prefix are deleted and the folder is removed (set
//! `KEEP_TEST_DATA=1` to keep them for a post-mortem).
//!
//! Database logins as on AWS: the migrations run as `postgres` (the owner), the routes as
//! the runtime role `user_service_app`, so the whole suite runs on its grants alone.
//! [`TestApp::database`] is a superuser connection for the tests' own checks.
//!
//! Rate limits: the contract limits requests per client IP (login 30/min, register 20/min),
//! and every test request comes from 127.0.0.1. The apps are started with
//! `TRUST_FORWARDED_FOR=true` and every request carries a random `X-Forwarded-For`, so that
//! bursts in the concurrency tests are not throttled; tests of the limits themselves pin the
//! address with [`TestApp::request_from`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use user_service::{App, Config};
use uuid::Uuid;

use crate::problem::expect_json;
use crate::proxy::TcpProxy;

/// Host and port of the shared local Postgres (trust auth for `postgres`).
pub const POSTGRES_ADDR: &str = "127.0.0.1:5432";
/// Host and port of the shared local Redis.
pub const REDIS_ADDR: &str = "127.0.0.1:6379";

/// A unique, valid email (`u-<uuid>@example.com`).
pub fn unique_email() -> String {
    format!("u-{}@example.com", Uuid::new_v4())
}

/// A password that passes the policy (long passphrase, not containing the email).
pub fn strong_password() -> String {
    format!(
        "correct-horse-battery-staple-{}",
        Uuid::new_v4().as_u128() % 1_000_000
    )
}

/// A random client address for `X-Forwarded-For` (only ever a header value, never contacted).
pub fn random_client_ip() -> String {
    let b = Uuid::new_v4().into_bytes();
    format!("10.{}.{}.{}", b[0], b[1], b[2])
}

/// A token pair as login and refresh return it.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenPair {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub refresh_token: String,
    pub refresh_expires_in: i64,
    pub user: Value,
}

/// A registered and logged-in user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub password: String,
    pub tokens: TokenPair,
}

/// What one deployment (an app and its siblings) owns; cleaned up when the last one goes.
struct Resources {
    db_name: String,
    redis_prefix: String,
    dir: PathBuf,
    postgres_proxy: Option<TcpProxy>,
    redis_proxy: Option<TcpProxy>,
}

impl Drop for Resources {
    fn drop(&mut self) {
        // Close the proxied connections first so nothing is mid-query when the database goes.
        self.postgres_proxy.take();
        self.redis_proxy.take();
        if std::env::var_os("KEEP_TEST_DATA").is_some() {
            eprintln!(
                "KEEP_TEST_DATA: keeping database {}, Redis prefix {} and {}",
                self.db_name,
                self.redis_prefix,
                self.dir.display()
            );
            return;
        }
        let db_name = self.db_name.clone();
        let prefix = self.redis_prefix.clone();
        // Drop cannot await, and may run on a runtime thread: do the async cleanup on a
        // thread of its own with a small runtime, and wait for it.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            rt.block_on(async {
                if let Err(e) = drop_database(&db_name).await {
                    eprintln!("cleanup: could not drop database {db_name}: {e}");
                }
                if let Err(e) = delete_redis_keys(&prefix).await {
                    eprintln!("cleanup: could not delete Redis keys {prefix}*: {e}");
                }
            });
        });
        let _ = cleanup.join();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A superuser connection to the `postgres` maintenance database (creating databases and
/// roles, reading `pg_stat_activity`).
pub async fn admin_postgres() -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(
        &format!("postgres://postgres@{POSTGRES_ADDR}/postgres"),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

pub(crate) async fn create_database(name: &str) {
    let client = admin_postgres()
        .await
        .unwrap_or_else(|e| panic!("cannot reach Postgres at {POSTGRES_ADDR}: {e}"));
    client
        .batch_execute(&format!(r#"CREATE DATABASE "{name}""#))
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
}

pub(crate) async fn drop_database(name: &str) -> Result<(), tokio_postgres::Error> {
    let client = admin_postgres().await?;
    client
        .batch_execute(&format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
        .await
}

/// A plain connection to the local Redis, outside any app.
pub async fn redis_connection() -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    redis::Client::open(format!("redis://{REDIS_ADDR}"))?
        .get_multiplexed_async_connection()
        .await
}

/// Every key starting with `prefix`.
async fn redis_keys(prefix: &str) -> redis::RedisResult<Vec<String>> {
    let mut con = redis_connection().await?;
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Deletes every key starting with `prefix`; returns how many there were.
async fn delete_redis_keys(prefix: &str) -> redis::RedisResult<usize> {
    let keys = redis_keys(prefix).await?;
    if !keys.is_empty() {
        let mut con = redis_connection().await?;
        for chunk in keys.chunks(500) {
            let _: i64 = redis::cmd("DEL").arg(chunk).query_async(&mut con).await?;
        }
    }
    Ok(keys.len())
}

/// Starts a [`TestApp`] with non-default settings.
pub struct TestAppBuilder {
    base: HashMap<String, String>,
    overrides: HashMap<String, String>,
    postgres_proxy: bool,
    redis_proxy: bool,
    shared: Option<Arc<Resources>>,
}

impl TestAppBuilder {
    /// Sets one configuration variable (names as in `Config::from_lookup`). `{database}` in
    /// the value stands for the test's database name (e.g. in a `DATABASE_URL` of its own).
    pub fn env(mut self, name: &str, value: impl ToString) -> Self {
        self.overrides.insert(name.to_owned(), value.to_string());
        self
    }

    /// Uses this key file instead of the deployment's own.
    pub fn key_file(self, path: &Path) -> Self {
        self.env("JWT_PRIVATE_KEY_FILE", path.display())
    }

    /// Connects the app to Postgres through a [`TcpProxy`] (see [`TestApp::postgres_proxy`]).
    /// Only for a new deployment: siblings share the first app's connections settings.
    pub fn postgres_via_proxy(mut self) -> Self {
        self.postgres_proxy = true;
        self
    }

    /// Connects the app to Redis through a [`TcpProxy`] (see [`TestApp::redis_proxy`]).
    pub fn redis_via_proxy(mut self) -> Self {
        self.redis_proxy = true;
        self
    }

    /// Creates what the app needs, builds it and serves it on a random port.
    pub async fn spawn(self) -> TestApp {
        let resources = match self.shared {
            Some(shared) => {
                assert!(
                    !self.postgres_proxy && !self.redis_proxy,
                    "a sibling shares its deployment's connections"
                );
                shared
            }
            None => Arc::new(new_resources(self.postgres_proxy, self.redis_proxy).await),
        };
        let mut vars = if self.base.is_empty() {
            default_vars(&resources)
        } else {
            self.base
        };
        vars.extend(
            self.overrides
                .into_iter()
                .map(|(name, value)| (name, value.replace("{database}", &resources.db_name))),
        );

        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        vars.insert("LISTEN_ADDR".into(), addr.to_string());
        vars.entry("PUBLIC_BASE_URL".into())
            .or_insert_with(|| format!("http://{addr}"));

        let config = Config::from_lookup(|name| vars.get(name).cloned())
            .unwrap_or_else(|e| panic!("test configuration refused: {e}; vars: {vars:?}"));
        let app = App::build(config.clone())
            .await
            .unwrap_or_else(|e| panic!("App::build failed: {e:?}"));
        let server = tokio::spawn(async move {
            if let Err(e) = app.serve(listener).await {
                eprintln!("test server stopped with an error: {e}");
            }
        });
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A hang must fail the test, never stall the suite.
            .timeout(Duration::from_secs(30))
            .build()
            .expect("reqwest client");
        TestApp {
            address: format!("http://{addr}"),
            addr,
            client,
            config,
            vars,
            server,
            resources,
        }
    }
}

async fn new_resources(postgres_proxy: bool, redis_proxy: bool) -> Resources {
    let id = Uuid::new_v4();
    let db_name = format!("test_{}", id.simple());
    let dir = std::env::temp_dir()
        .join("user-service-tests")
        .join(id.to_string());
    std::fs::create_dir_all(&dir).expect("create the test's temp dir");
    create_database(&db_name).await;
    let postgres_proxy = if postgres_proxy {
        Some(
            TcpProxy::start(POSTGRES_ADDR.parse().expect("addr"))
                .await
                .expect("start the Postgres proxy"),
        )
    } else {
        None
    };
    let redis_proxy = if redis_proxy {
        Some(
            TcpProxy::start(REDIS_ADDR.parse().expect("addr"))
                .await
                .expect("start the Redis proxy"),
        )
    } else {
        None
    };
    Resources {
        db_name,
        redis_prefix: format!("test:{id}:"),
        dir,
        postgres_proxy,
        redis_proxy,
    }
}

fn default_vars(r: &Resources) -> HashMap<String, String> {
    let pg = r
        .postgres_proxy
        .as_ref()
        .map_or_else(|| POSTGRES_ADDR.to_owned(), |p| p.addr().to_string());
    let redis = r
        .redis_proxy
        .as_ref()
        .map_or_else(|| REDIS_ADDR.to_owned(), |p| p.addr().to_string());
    let vars = [
        // The migrations run as `postgres` (the URL's user, the owner); the service runs as
        // the runtime role (the default, spelled out), so every test exercises its grants.
        (
            "DATABASE_URL",
            format!("postgres://postgres@{pg}/{}", r.db_name),
        ),
        (
            "DATABASE_RUNTIME_USER",
            user_service::db::runtime_role::RUNTIME_ROLE.to_owned(),
        ),
        ("REDIS_URL", format!("redis://{redis}")),
        ("REDIS_KEY_PREFIX", r.redis_prefix.clone()),
        (
            "JWT_PRIVATE_KEY_FILE",
            r.dir.join("key.pem").display().to_string(),
        ),
        (
            "MFA_KEY_FILE",
            r.dir.join("mfa-keys.json").display().to_string(),
        ),
        // Cheap hashing keeps the suite fast on 2 cores; the policy is unchanged.
        ("ARGON2_MEMORY_KIB", "1024".into()),
        ("ARGON2_ITERATIONS", "1".into()),
        ("ARGON2_PARALLELISM", "1".into()),
        // Several apps run at once against one Postgres (max_connections 100).
        ("DATABASE_POOL_SIZE", "8".into()),
        // See the module docs: every request carries a random X-Forwarded-For.
        ("TRUST_FORWARDED_FOR", "true".into()),
    ];
    vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A running user-service and a client for it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// The configuration the app was built with.
    pub config: Config,
    /// The variables `config` was read from.
    pub vars: HashMap<String, String>,
    server: JoinHandle<()>,
    // Declared last: dropped after the server task is aborted in `Drop`.
    resources: Arc<Resources>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestApp {
    /// A fresh app with the test defaults.
    pub async fn spawn() -> TestApp {
        Self::builder().spawn().await
    }

    /// A fresh app with non-default settings.
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            base: HashMap::new(),
            overrides: HashMap::new(),
            postgres_proxy: false,
            redis_proxy: false,
            shared: None,
        }
    }

    /// Another instance of the same deployment (same database, Redis prefix, key file and
    /// settings), to be adjusted before it is spawned.
    pub fn sibling(&self) -> TestAppBuilder {
        TestAppBuilder {
            base: self.vars.clone(),
            overrides: HashMap::new(),
            postgres_proxy: false,
            redis_proxy: false,
            shared: Some(self.resources.clone()),
        }
    }

    /// Another instance of the same deployment, as is.
    pub async fn spawn_sibling(&self) -> TestApp {
        self.sibling().spawn().await
    }

    /// The key file this app reads (created by the server at start if it was missing).
    pub fn key_file(&self) -> &Path {
        &self.config.jwt_private_key_file
    }

    /// A fresh folder for files this test writes; removed with the app.
    pub fn temp_dir(&self) -> &Path {
        &self.resources.dir
    }

    /// The proxy in front of Postgres, if the app was built with one.
    pub fn postgres_proxy(&self) -> &TcpProxy {
        self.resources
            .postgres_proxy
            .as_ref()
            .expect("app built without postgres_via_proxy()")
    }

    /// The proxy in front of Redis, if the app was built with one.
    pub fn redis_proxy(&self) -> &TcpProxy {
        self.resources
            .redis_proxy
            .as_ref()
            .expect("app built without redis_via_proxy()")
    }

    /// The name of this deployment's database.
    pub fn database_name(&self) -> &str {
        &self.resources.db_name
    }

    /// A connection to this deployment's database (direct, never through the proxy).
    pub async fn database(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "postgres://postgres@{POSTGRES_ADDR}/{}",
                self.resources.db_name
            ),
            tokio_postgres::NoTls,
        )
        .await
        .expect("connect to the test database");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// The Redis key prefix of this deployment.
    pub fn redis_prefix(&self) -> &str {
        &self.resources.redis_prefix
    }

    /// Every Redis key this deployment has written.
    pub async fn redis_keys(&self) -> Vec<String> {
        redis_keys(&self.resources.redis_prefix)
            .await
            .expect("scan Redis")
    }

    /// Deletes every Redis key of this deployment (as a Redis restart without persistence
    /// would); returns how many there were.
    pub async fn flush_redis(&self) -> usize {
        delete_redis_keys(&self.resources.redis_prefix)
            .await
            .expect("delete Redis keys")
    }

    /// A raw Redis connection (direct, never through the proxy).
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis_connection().await.expect("connect to Redis")
    }

    // ----- requests -----

    /// `method path` from a random client IP.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_from(&random_client_ip(), method, path)
    }

    /// `method path` with `X-Forwarded-For: ip`.
    pub fn request_from(&self, ip: &str, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.address))
            .header("x-forwarded-for", ip)
    }

    async fn send(&self, request: RequestBuilder) -> Response {
        request.send().await.unwrap_or_else(|e| {
            panic!("request to {} failed: {e:?}", self.address);
        })
    }

    /// POST `body` to `path` with the access token `token`.
    pub async fn post_authed(&self, path: &str, token: &str, body: &Value) -> Response {
        self.send(
            self.request(Method::POST, path)
                .bearer_auth(token)
                .json(body),
        )
        .await
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> Response {
        self.send(self.request(Method::GET, path)).await
    }

    /// GET `path` with `Authorization: Bearer token`.
    pub async fn get_authed(&self, path: &str, token: &str) -> Response {
        self.send(self.request(Method::GET, path).bearer_auth(token))
            .await
    }

    /// POST `body` as JSON.
    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    /// POST raw bytes with the given Content-Type (or none).
    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        content_type: Option<&str>,
    ) -> Response {
        let mut request = self.request(Method::POST, path).body(body);
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        self.send(request).await
    }

    /// POST /v1/auth/register `{email, password}`.
    pub async fn register(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/v1/auth/register",
            &json!({ "email": email, "password": password }),
        )
        .await
    }

    /// POST /v1/auth/login `{email, password}`.
    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/v1/auth/login",
            &json!({ "email": email, "password": password }),
        )
        .await
    }

    /// POST /v1/auth/login from a fixed client IP.
    pub async fn login_from(&self, ip: &str, email: &str, password: &str) -> Response {
        self.send(
            self.request_from(ip, Method::POST, "/v1/auth/login")
                .json(&json!({ "email": email, "password": password })),
        )
        .await
    }

    /// POST /v1/auth/refresh `{refresh_token}`.
    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post_json(
            "/v1/auth/refresh",
            &json!({ "refresh_token": refresh_token }),
        )
        .await
    }

    /// POST /v1/auth/logout: no body when `all` is `None`, else `{"all": all}`.
    pub async fn logout(&self, access_token: &str, all: Option<bool>) -> Response {
        let mut request = self
            .request(Method::POST, "/v1/auth/logout")
            .bearer_auth(access_token);
        if let Some(all) = all {
            request = request.json(&json!({ "all": all }));
        }
        self.send(request).await
    }

    /// GET /v1/users/me.
    pub async fn me(&self, access_token: &str) -> Response {
        self.get_authed("/v1/users/me", access_token).await
    }

    /// PATCH /v1/users/me with `body`.
    pub async fn patch_me(&self, access_token: &str, body: &Value) -> Response {
        self.send(
            self.request(Method::PATCH, "/v1/users/me")
                .bearer_auth(access_token)
                .json(body),
        )
        .await
    }

    /// PUT /v1/users/me/password `{current_password, new_password}`.
    pub async fn change_password(&self, access_token: &str, current: &str, new: &str) -> Response {
        self.send(
            self.request(Method::PUT, "/v1/users/me/password")
                .bearer_auth(access_token)
                .json(&json!({ "current_password": current, "new_password": new })),
        )
        .await
    }

    /// GET /.well-known/jwks.json, asserting 200.
    pub async fn jwks(&self) -> Value {
        expect_json(self.get("/.well-known/jwks.json").await, 200).await
    }

    // ----- steps that must succeed -----

    /// Registers `email` / `password`, asserting 201; returns the user.
    pub async fn register_ok(&self, email: &str, password: &str) -> Value {
        expect_json(self.register(email, password).await, 201).await
    }

    /// Logs in, asserting 200; returns the token pair.
    pub async fn login_ok(&self, email: &str, password: &str) -> TokenPair {
        token_pair(expect_json(self.login(email, password).await, 200).await)
    }

    /// Refreshes, asserting 200; returns the new token pair.
    pub async fn refresh_ok(&self, refresh_token: &str) -> TokenPair {
        token_pair(expect_json(self.refresh(refresh_token).await, 200).await)
    }

    /// Registers a new unique user and logs it in.
    pub async fn new_user(&self) -> TestUser {
        let email = unique_email();
        let password = strong_password();
        let user = self.register_ok(&email, &password).await;
        let tokens = self.login_ok(&email, &password).await;
        TestUser {
            id: user["id"].as_str().expect("user id").to_owned(),
            email,
            password,
            tokens,
        }
    }

    /// Asserts GET /v1/users/me with `token` answers `status` (200 or a 401 `unauthorized`).
    pub async fn assert_me_status(&self, token: &str, status: u16) {
        let resp = self.me(token).await;
        if status == 200 {
            expect_json(resp, 200).await;
        } else {
            crate::problem::assert_problem(resp, status, "unauthorized").await;
        }
    }

    /// Asserts the refresh token is rejected with 401 `invalid_refresh_token`.
    pub async fn assert_refresh_rejected(&self, refresh_token: &str) {
        crate::problem::assert_problem(
            self.refresh(refresh_token).await,
            401,
            "invalid_refresh_token",
        )
        .await;
    }
}

/// Parses a token-pair body.
pub fn token_pair(body: Value) -> TokenPair {
    serde_json::from_value(body.clone())
        .unwrap_or_else(|e| panic!("not a token pair ({e}): {body}"))
}

// ----- admin helpers -----

/// A password for a bootstrap admin: strong, and not containing `admin-…` emails' local part.
fn bootstrap_password() -> String {
    strong_password()
}

/// A unique email for a bootstrap admin (`admin-<uuid>@example.com`).
pub fn unique_admin_email() -> String {
    format!("admin-{}@example.com", Uuid::new_v4())
}

impl TestAppBuilder {
    /// Sends the deployment's email to `smtp` (from `no-reply@example.test`), with links
    /// under `base_url` (`PUBLIC_BASE_URL`).
    pub fn mail_to(self, smtp: &crate::SmtpServer, base_url: &str) -> Self {
        self.env("SMTP_URL", smtp.url())
            .env("SMTP_FROM", "no-reply@example.test")
            .env("PUBLIC_BASE_URL", base_url)
    }

    /// Sets `BOOTSTRAP_ADMIN_EMAIL` and `BOOTSTRAP_ADMIN_PASSWORD`.
    pub fn bootstrap_admin(self, email: &str, password: &str) -> Self {
        self.env("BOOTSTRAP_ADMIN_EMAIL", email)
            .env("BOOTSTRAP_ADMIN_PASSWORD", password)
    }
}

impl TestApp {
    /// A fresh app configured with a bootstrap admin (fresh email and password), and that
    /// admin, logged in. Siblings inherit the same `BOOTSTRAP_ADMIN_*` settings.
    pub async fn spawn_with_admin() -> (TestApp, TestUser) {
        let email = unique_admin_email();
        let password = bootstrap_password();
        let app = Self::builder()
            .bootstrap_admin(&email, &password)
            .spawn()
            .await;
        let admin = app.login_user(&email, &password).await;
        (app, admin)
    }

    /// `count` instances of one fresh deployment (fresh database, Redis prefix and key file),
    /// all configured with the same bootstrap admin and started at the same moment: their
    /// `App::build` calls run concurrently. Returns the apps and the admin's email and
    /// password.
    pub async fn spawn_many_with_admin_at_once(count: usize) -> (Vec<TestApp>, String, String) {
        let email = unique_admin_email();
        let password = bootstrap_password();
        let resources = Arc::new(new_resources(false, false).await);
        let builders = (0..count).map(|_| {
            TestAppBuilder {
                base: HashMap::new(),
                overrides: HashMap::new(),
                postgres_proxy: false,
                redis_proxy: false,
                shared: Some(resources.clone()),
            }
            .bootstrap_admin(&email, &password)
            .spawn()
        });
        let apps = futures::future::join_all(builders).await;
        (apps, email, password)
    }

    /// Logs `email` in, asserting 200; returns it as a [`TestUser`].
    pub async fn login_user(&self, email: &str, password: &str) -> TestUser {
        let tokens = self.login_ok(email, password).await;
        TestUser {
            id: tokens.user["id"]
                .as_str()
                .unwrap_or_else(|| panic!("login returned no user id: {:?}", tokens.user))
                .to_owned(),
            email: email.to_owned(),
            password: password.to_owned(),
            tokens,
        }
    }

    /// The newest events (up to 100) of the trail of user `id`, as an admin with `token`
    /// reads them through `GET /v1/admin/users/{id}/audit` (asserted to answer 200).
    pub async fn audit_trail(&self, token: &str, id: &str) -> Vec<Value> {
        let path = format!("/v1/admin/users/{id}/audit?limit=100");
        let page = crate::expect_json(self.get_authed(&path, token).await, 200).await;
        page["events"]
            .as_array()
            .unwrap_or_else(|| panic!("an audit page has events: {page}"))
            .clone()
    }

    /// The events of type `kind` in the trail of user `id` ([`Self::audit_trail`]).
    pub async fn audit_events_of(&self, token: &str, id: &str, kind: &str) -> Vec<Value> {
        let mut events = self.audit_trail(token, id).await;
        events.retain(|e| e["type"] == kind);
        events
    }

    /// GET /v1/admin/users?`query` (`query` is a raw query string, possibly empty).
    pub async fn admin_list(&self, token: &str, query: &str) -> Response {
        let path = if query.is_empty() {
            "/v1/admin/users".to_owned()
        } else {
            format!("/v1/admin/users?{query}")
        };
        self.get_authed(&path, token).await
    }

    /// POST /v1/admin/users with `body`.
    pub async fn admin_create(&self, token: &str, body: &Value) -> Response {
        self.send(
            self.request(Method::POST, "/v1/admin/users")
                .bearer_auth(token)
                .json(body),
        )
        .await
    }

    /// GET /v1/admin/users/`id`.
    pub async fn admin_get(&self, token: &str, id: &str) -> Response {
        self.get_authed(&format!("/v1/admin/users/{id}"), token)
            .await
    }

    /// PATCH /v1/admin/users/`id` with `body`.
    pub async fn admin_patch(&self, token: &str, id: &str, body: &Value) -> Response {
        self.send(
            self.request(Method::PATCH, &format!("/v1/admin/users/{id}"))
                .bearer_auth(token)
                .json(body),
        )
        .await
    }

    /// DELETE /v1/admin/users/`id`.
    pub async fn admin_delete(&self, token: &str, id: &str) -> Response {
        self.send(
            self.request(Method::DELETE, &format!("/v1/admin/users/{id}"))
                .bearer_auth(token),
        )
        .await
    }

    /// Creates a user through POST /v1/admin/users with `role`, asserting 201, and logs it
    /// in.
    pub async fn admin_create_user(&self, admin_token: &str, role: &str) -> TestUser {
        let email = unique_email();
        let password = strong_password();
        let created = expect_json(
            self.admin_create(
                admin_token,
                &json!({ "email": email, "password": password, "role": role }),
            )
            .await,
            201,
        )
        .await;
        assert_eq!(
            created["role"], role,
            "created with the role asked for: {created}"
        );
        let user = self.login_user(&email, &password).await;
        assert_eq!(user.id, created["id"], "login finds the created user");
        user
    }

    /// Follows `next_cursor` from GET /v1/admin/users?`query` until it is null, asserting
    /// 200 on every page; returns the pages.
    pub async fn admin_list_pages(&self, token: &str, query: &str) -> Vec<Value> {
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = match &cursor {
                Some(c) if query.is_empty() => format!("cursor={c}"),
                Some(c) => format!("{query}&cursor={c}"),
                None => query.to_owned(),
            };
            let page = expect_json(self.admin_list(token, &q).await, 200).await;
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            assert!(
                cursor.is_some() || page["next_cursor"].is_null(),
                "next_cursor is a string or null: {page}"
            );
            pages.push(page);
            assert!(pages.len() < 1000, "the list never ends");
            if cursor.is_none() {
                return pages;
            }
        }
    }

    /// Every user of GET /v1/admin/users?`query`, all pages.
    pub async fn admin_list_all(&self, token: &str, query: &str) -> Vec<Value> {
        self.admin_list_pages(token, query)
            .await
            .into_iter()
            .flat_map(|page| {
                page["users"]
                    .as_array()
                    .unwrap_or_else(|| panic!("a page has a `users` array: {page}"))
                    .clone()
            })
            .collect()
    }
}
