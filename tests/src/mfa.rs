//! TOTP codes as an authenticator app computes them from a set-up's base32 secret (the
//! service's own RFC 6238 code path, checked against the RFC's test vectors in its unit
//! tests), and the time steps they belong to.

use data_encoding::BASE32_NOPAD;
use user_service::auth::totp::{STEP_SECS, TotpSecret};

/// The current 30-second step.
pub fn current_step() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    now / STEP_SECS
}

/// The code of `step` for the base32 `secret` of a set-up answer.
pub fn code_at(secret: &str, step: u64) -> String {
    let bytes = BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap_or_else(|e| panic!("the secret is not base32 without padding ({e}): {secret}"));
    TotpSecret::from_bytes(&bytes)
        .expect("a 160-bit secret")
        .code_at(step)
}

/// An account with two-factor login on: its secret, the step whose code confirmed it (spent),
/// and its recovery codes.
pub struct Enrolled {
    /// The account, with the tokens of its password-only login.
    pub user: crate::TestUser,
    /// The base32 secret.
    pub secret: String,
    /// The step of the code that confirmed the set-up.
    pub confirmed_step: u64,
    /// The ten recovery codes.
    pub recovery_codes: Vec<String>,
}

impl Enrolled {
    /// The code of the step after the confirmed one: not spent, and valid for the next
    /// minute or so.
    pub fn next_code(&self) -> String {
        code_at(&self.secret, self.confirmed_step + 1)
    }
}

impl crate::TestApp {
    /// Starts a two-factor set-up for `user`; returns the base32 secret.
    pub async fn start_mfa_setup(&self, user: &crate::TestUser) -> String {
        let body = crate::expect_json(
            self.post_authed(
                "/v1/users/me/mfa/totp",
                &user.tokens.access_token,
                &serde_json::json!({ "current_password": user.password }),
            )
            .await,
            200,
        )
        .await;
        body["secret"].as_str().expect("secret").to_owned()
    }

    /// Confirms the set-up of `secret` with the current code.
    pub async fn confirm_mfa(&self, user: crate::TestUser, secret: String) -> Enrolled {
        let step = current_step();
        let body = crate::expect_json(
            self.post_authed(
                "/v1/users/me/mfa/totp/confirm",
                &user.tokens.access_token,
                &serde_json::json!({ "code": code_at(&secret, step) }),
            )
            .await,
            200,
        )
        .await;
        let recovery_codes = body["recovery_codes"]
            .as_array()
            .expect("recovery_codes")
            .iter()
            .map(|c| c.as_str().expect("a code").to_owned())
            .collect();
        Enrolled {
            user,
            secret,
            confirmed_step: step,
            recovery_codes,
        }
    }

    /// Turns two-factor login on for `user`.
    pub async fn enroll_mfa(&self, user: crate::TestUser) -> Enrolled {
        let secret = self.start_mfa_setup(&user).await;
        self.confirm_mfa(user, secret).await
    }

    /// The first step of a two-factor login: the right password; returns the `mfa_token`.
    pub async fn mfa_first_step(&self, user: &crate::TestUser) -> String {
        let problem = crate::assert_problem(
            self.login(&user.email, &user.password).await,
            403,
            "mfa_required",
        )
        .await;
        let token = problem["mfa_token"].as_str().expect("mfa_token").to_owned();
        assert_eq!(token.len(), 43, "an opaque 256-bit token: {token}");
        token
    }
}
