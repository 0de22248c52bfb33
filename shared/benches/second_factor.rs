//! What a second factor costs the server, beside the round trip: opening the stored TOTP
//! secret (AES-256-GCM) and checking a code against the three steps around now (three
//! HMAC-SHA-1), as `POST /v1/auth/login/mfa` and `POST /v1/users/me/mfa/disable` do.
//!
//! `cargo bench -p user-service --bench second_factor`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use user_service::auth::mfa_keys::MfaKeys;
use user_service::auth::totp::{STEP_SECS, TotpSecret};
use uuid::Uuid;

fn second_factor(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let key_file = std::env::temp_dir().join(format!("bench-mfa-keys-{}.json", Uuid::now_v7()));
    let keys = MfaKeys::file(&key_file);
    let user = Uuid::now_v7();
    let secret = TotpSecret::generate().expect("rng");
    let sealed = runtime.block_on(keys.seal(user, &secret)).expect("seal");
    let now = 1_800_000_000_u64;
    let code = secret.code_at(now / STEP_SECS);

    let mut group = c.benchmark_group("second_factor");
    group.bench_function("open_secret", |b| {
        b.iter(|| {
            runtime
                .block_on(keys.open(black_box(user), black_box(&sealed)))
                .expect("open")
        })
    });
    group.bench_function("check_code", |b| {
        b.iter(|| secret.matching_step(black_box(&code), black_box(now)))
    });
    group.bench_function("open_and_check", |b| {
        b.iter(|| {
            let opened = runtime.block_on(keys.open(user, &sealed)).expect("open");
            opened.matching_step(black_box(&code), now)
        })
    });
    group.finish();
    let _ = std::fs::remove_file(&key_file);
}

criterion_group!(benches, second_factor);
criterion_main!(benches);
