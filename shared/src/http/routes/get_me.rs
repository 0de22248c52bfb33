//! `GET /v1/users/me`: the caller's own account.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::domain::User;
use crate::http::ApiError;
use crate::http::extract::Authenticated;
use crate::http::problems;
use crate::http::state::AppState;
use crate::services::Accounts;

/// The route (shared with `PATCH`, served by [`super::update_me`]).
pub const PATH: &str = "/v1/users/me";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, get(get_me))
}

#[utoipa::path(
    get,
    path = PATH,
    tag = "users",
    summary = "The caller's own account",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = User),
        problems::Unauthorized,
        problems::Unavailable,
    )
)]
async fn get_me(
    State(accounts): State<Accounts>,
    Authenticated { caller, profile }: Authenticated,
) -> Result<Json<User>, ApiError> {
    Ok(Json(accounts.own_profile(caller, profile).await?))
}

#[cfg(test)]
mod tests {
    use axum::extract::FromRequestParts;

    use super::*;
    use crate::http::extract::LogoutCaller;

    /// The size of the future `f` returns, without calling it.
    fn future_size<A, B, F: Future>(_: impl FnOnce(A, B) -> F) -> usize {
        size_of::<F>()
    }

    /// [`future_size`] of a function that borrows its arguments.
    fn borrowing_future_size<'a, A: 'a, B: 'a, F: Future>(
        _: impl FnOnce(&'a mut A, &'a B) -> F,
    ) -> usize {
        size_of::<F>()
    }

    /// Every request carries its futures' state: it is allocated and moved with the
    /// request, and held by each one in flight. A rare path awaited inline (a Secrets
    /// Manager read, the fallback query of a Redis outage) puts its whole state there, at
    /// every level up the chain: it once made every `GET /me` carry 50 KiB, and cost a
    /// sixth of its throughput. The limits leave room for ordinary growth, not for another
    /// such path: box it where it is awaited (`docs/performance.md`).
    #[test]
    fn a_get_me_carries_small_futures() {
        let handler = future_size(get_me);
        // The token check (boxed inside the `Authorized` extractor).
        let token_check =
            borrowing_future_size(<LogoutCaller as FromRequestParts<AppState>>::from_request_parts);
        assert!(
            handler <= 8 * 1024,
            "the GET /me handler's future is {handler} bytes"
        );
        assert!(
            token_check <= 4 * 1024,
            "the token check's future is {token_check} bytes"
        );
    }
}
