//! argon2id cost at the configured defaults (m=19456 KiB, t=2, p=1): one hash per
//! registration or password change, one verify per login. The login throughput ceiling of
//! a machine is (CPU count) / (verify time).
//!
//! `cargo bench -p user-service --bench hashing`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use user_service::auth::hashing::PasswordHasher;
use user_service::config::Argon2Config;
use user_service::domain::{Email, NewPassword, PasswordAttempt};

fn hashing(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let hasher = PasswordHasher::new(Argon2Config::default(), 1, Duration::from_secs(60))
        .expect("default parameters");
    let email = Email::parse("bench@example.com").expect("email");
    let password =
        NewPassword::parse("correct-horse-battery-staple-7731", &email, &[]).expect("password");
    let attempt = PasswordAttempt::new("correct-horse-battery-staple-7731");
    let stored = runtime.block_on(hasher.hash(&password)).expect("hash");

    let mut group = c.benchmark_group("argon2id_default");
    group.sample_size(30);
    group.bench_function("hash", |b| {
        b.to_async(&runtime)
            .iter(|| async { hasher.hash(&password).await.expect("hash") })
    });
    group.bench_function("verify", |b| {
        b.to_async(&runtime)
            .iter(|| async { hasher.verify(&attempt, &stored).await.expect("verify") })
    });
    group.finish();
}

criterion_group!(benches, hashing);
criterion_main!(benches);
