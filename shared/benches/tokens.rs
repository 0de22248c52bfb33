//! Access-token cost per algorithm: signing (login, refresh) and verifying (every request).
//!
//! `cargo bench -p user-service --bench tokens`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures::executor::block_on;
use user_service::auth::keys::{KeyAlgorithm, KeyRing, KeySet};
use user_service::auth::tokens::AccessTokens;
use user_service::domain::Role;
use uuid::Uuid;

fn tokens(c: &mut Criterion) {
    for (name, algorithm) in [
        ("ES256", KeyAlgorithm::Es256),
        ("RS256", KeyAlgorithm::Rs256),
        ("EdDSA", KeyAlgorithm::EdDsa),
    ] {
        let pem = algorithm.generate_pem().expect("key");
        let keys = KeySet::from_pem(&pem).expect("key set");
        let tokens = AccessTokens::new(
            Arc::new(KeyRing::fixed(keys)),
            "iss",
            "aud",
            Duration::from_secs(900),
        );
        let (user, session) = (Uuid::now_v7(), Uuid::now_v7());
        let mut group = c.benchmark_group(format!("access_token/{name}"));
        // With fixed keys nothing awaits: `block_on` adds no runtime cost to the figures.
        group.bench_function("issue", |b| {
            b.iter(|| block_on(tokens.issue(black_box(user), Role::User, session)).expect("issue"))
        });
        // A fresh token per iteration: the signature check itself.
        group.bench_function("verify_first", |b| {
            b.iter_batched(
                || {
                    block_on(tokens.issue(user, Role::User, session))
                        .expect("issue")
                        .token
                },
                |token| block_on(tokens.verify(black_box(&token))).expect("verify"),
                BatchSize::SmallInput,
            )
        });
        // The same token again, as a client sends it: served from the verified-token cache.
        let token = block_on(tokens.issue(user, Role::User, session))
            .expect("issue")
            .token;
        group.bench_function("verify_repeated", |b| {
            b.iter(|| block_on(tokens.verify(black_box(&token))).expect("verify"))
        });
        group.finish();
    }
}

criterion_group!(benches, tokens);
criterion_main!(benches);
