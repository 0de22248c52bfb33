//! A Redis failover that loses the last revocations (replication is asynchronous) never lets
//! a revoked token in: the mirror notices that Redis serves another replication history
//! than its epoch names, answers from Postgres and rebuilds (docs/architecture.md, "Token
//! lifecycle"). And on a Redis that does not fail over, a check stays one `MGET`.
//!
//! Real servers, never the shared one: two private `redis-server` processes, B a replica of
//! A. The apps reach Redis through a [`TcpProxy`], as the functions reach ElastiCache
//! through its primary endpoint; the failover promotes B (`REPLICAOF NO ONE`) and moves the
//! proxy to it, as the endpoint's name moves to the promoted replica.

use std::time::{Duration, Instant};

use user_service_tests::{RedisServer, TcpProxy, TestApp, eventually, expect_status};

/// The session id of an access token.
fn sid(access_token: &str) -> String {
    user_service_tests::jwt::claims_of(access_token)["sid"]
        .as_str()
        .expect("a sid claim")
        .to_owned()
}

#[tokio::test]
async fn a_revocation_lost_in_a_failover_is_noticed_and_the_mirror_rebuilt() {
    let primary = RedisServer::start().await;
    let replica = RedisServer::start().await;
    replica.replicate(&primary).await;
    replica.wait_caught_up(&primary).await;
    let endpoint = TcpProxy::start(primary.addr())
        .await
        .expect("start the proxy");
    let a = TestApp::builder()
        .env("REDIS_URL", format!("redis://{}", endpoint.addr()))
        .spawn()
        .await;
    let b = a.spawn_sibling().await;
    let prefix = a.redis_prefix().to_owned();
    let epoch_key = format!("{prefix}revoked:epoch");
    let marker = |token: &str| format!("{prefix}revoked:session:{}", sid(token));
    let old_history = primary.replication_id().await;
    assert_eq!(
        primary.get(&epoch_key).await.as_deref(),
        Some(old_history.as_str()),
        "the epoch names the primary's replication history"
    );

    let user = a.new_user().await;
    let logged_out = a.login_ok(&user.email, &user.password).await;
    expect_status(a.logout(&logged_out.access_token, None).await, 204).await;
    let victim = b.login_ok(&user.email, &user.password).await;
    // Both instances have answered from the mirror.
    a.assert_me_status(&victim.access_token, 200).await;
    b.assert_me_status(&victim.access_token, 200).await;
    replica.wait_caught_up(&primary).await;
    assert!(replica.exists(&marker(&logged_out.access_token)).await);

    // The replica loses its link and is promoted; the primary still serves, and what it
    // takes from now on never reaches the replica.
    replica.promote().await;
    let new_history = replica.replication_id().await;
    assert_ne!(
        new_history, old_history,
        "a promoted replica starts a new history"
    );
    expect_status(a.logout(&victim.access_token, None).await, 204).await;
    b.assert_me_status(&victim.access_token, 401).await;
    assert!(primary.exists(&marker(&victim.access_token)).await);
    assert!(
        !replica.exists(&marker(&victim.access_token)).await,
        "the revocation is lost with the old primary"
    );
    assert_eq!(
        replica.get(&epoch_key).await.as_deref(),
        Some(old_history.as_str()),
        "while the epoch survives"
    );

    // The failover: the endpoint leads to the promoted replica.
    endpoint.redirect(replica.addr());
    for round in 0..5 {
        for (app, name) in [(&a, "a"), (&b, "b")] {
            let status = app.me(&victim.access_token).await.status().as_u16();
            assert_eq!(
                status, 401,
                "instance {name}, round {round}: a token revoked just before the failover"
            );
        }
    }
    a.assert_me_status(&logged_out.access_token, 401).await;
    a.assert_me_status(&user.tokens.access_token, 200).await;

    // The mirror is rebuilt on the new primary from Postgres: the lost marker is back and
    // the epoch names the new history.
    assert!(
        eventually(Duration::from_secs(15), || async {
            replica.get(&epoch_key).await.as_deref() == Some(new_history.as_str())
                && replica.exists(&marker(&victim.access_token)).await
        })
        .await,
        "the mirror was not rebuilt on the promoted replica: epoch {:?}",
        replica.get(&epoch_key).await
    );
    // From now on the checks read the mirror again: a marker found only there is obeyed.
    let spare = a.login_ok(&user.email, &user.password).await;
    a.assert_me_status(&spare.access_token, 200).await;
    let _: () = replica
        .query(
            redis::cmd("SET")
                .arg(marker(&spare.access_token))
                .arg(1)
                .arg("EX")
                .arg(900),
        )
        .await;
    for app in [&a, &b] {
        app.assert_me_status(&spare.access_token, 401).await;
        app.assert_me_status(&victim.access_token, 401).await;
        app.assert_me_status(&user.tokens.access_token, 200).await;
    }
}

/// The steady state of a single Redis (local development, `RedisNodeCount=1`): each check
/// is one `MGET`; the replication id is read about once a second, in the same `MULTI` as a
/// check's `MGET` (so still one round trip per request).
#[tokio::test]
async fn on_a_redis_that_does_not_fail_over_a_check_is_one_mget() {
    let server = RedisServer::start().await;
    let app = TestApp::builder()
        .env("REDIS_URL", server.url())
        .spawn()
        .await;
    let user = app.new_user().await;
    let token = &user.tokens.access_token;
    // The first requests remember the profile: later ones are the check alone.
    app.assert_me_status(token, 200).await;
    app.assert_me_status(token, 200).await;

    server.reset_stats().await;
    let started = Instant::now();
    const CHECKS: u64 = 60;
    for _ in 0..CHECKS {
        app.assert_me_status(token, 200).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    let calls = server.command_calls().await;
    let count = |command: &str| calls.get(command).copied().unwrap_or(0);
    let (mget, info, exec) = (count("mget"), count("info"), count("exec"));
    eprintln!("{CHECKS} checks in {took:?}: {mget} MGET, {info} INFO, {exec} EXEC; all: {calls:?}");
    assert_eq!(mget, CHECKS, "one MGET per check");
    assert!(
        (1..=took.as_secs() + 1).contains(&info),
        "the replication id is read about once a second: {info} times in {took:?}"
    );
    assert_eq!(info, exec, "each read of the id is in a check's MULTI");
}
