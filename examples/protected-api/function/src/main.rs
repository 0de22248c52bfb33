//! The protected API's one function: answers its three routes for the caller that
//! user-service's Lambda authorizer let through, as the authorizer's context names them.
//!
//! API Gateway runs the authorizer before every route of this API (template.yaml) and invokes
//! this function only after an allow, passing the allow's context in
//! `requestContext.authorizer.lambda`: `{"sub", "role", "sid", "jti", "iat_ms", "amr"}`, `amr`
//! being `"pwd"` or `"pwd otp"`. The function believes that context without checking the token
//! itself, which holds only while API Gateway is the one caller that can reach it: no
//! function URL, and its one invoke permission is for this API (the README says why, and what
//! the authorizer cache delays). It still checks that the caller meets its route's needs, so
//! that a rule set too generously in the user-service stack, where the route rules live,
//! opens nothing by itself. Refusals are RFC 9457 problem details.

use std::collections::HashMap;

use lambda_http::http::StatusCode;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Error, Request, RequestExt as _, Response, service_fn};
use serde_json::{Value, json};

/// What a route asks of its caller, on top of being signed in.
#[derive(Debug, Clone, Copy)]
struct Needs {
    /// The `admin` role.
    admin: bool,
    /// A session opened with a second factor (`otp` in `amr`).
    second_factor: bool,
}

/// The routes of template.yaml (API Gateway's `routeKey`s) and what each needs: the same as
/// their entries in `../route-rules.json`, which the authorizer enforces first.
const ROUTES: &[(&str, Needs)] = &[
    (
        "GET /example/hello",
        Needs {
            admin: false,
            second_factor: false,
        },
    ),
    (
        "GET /example/admin/report",
        Needs {
            admin: true,
            second_factor: false,
        },
    ),
    (
        "POST /example/transfers",
        Needs {
            admin: false,
            second_factor: true,
        },
    ),
];

/// The caller the authorizer allowed.
#[derive(Debug)]
struct Caller {
    /// The user's id.
    sub: String,
    /// `user` or `admin`.
    role: String,
    /// How the session was opened: `pwd`, then `otp` after a second factor.
    amr: Vec<String>,
}

impl Caller {
    /// The caller named by the authorizer's context, if it names one.
    fn from_context(context: &HashMap<String, Value>) -> Option<Self> {
        let text = |name: &str| {
            context
                .get(name)
                .and_then(Value::as_str)
                .filter(|value| !value.is_empty())
        };
        Some(Self {
            sub: text("sub")?.to_owned(),
            role: text("role")?.to_owned(),
            amr: text("amr")?.split(' ').map(str::to_owned).collect(),
        })
    }

    /// Whether this caller may call a route that needs `needs`.
    fn meets(&self, needs: Needs) -> Result<(), &'static str> {
        if needs.admin && self.role != "admin" {
            return Err("this route is for admins only");
        }
        if needs.second_factor && !self.amr.iter().any(|value| value == "otp") {
            return Err("this route needs a session opened with a second factor");
        }
        Ok(())
    }
}

/// Answers one request.
async fn handle(request: Request) -> Result<Response<Body>, Error> {
    let Some(RequestContext::ApiGatewayV2(context)) = request.request_context_ref() else {
        return problem(
            StatusCode::BAD_REQUEST,
            "not an HTTP API (payload 2.0) request",
        );
    };
    let route = context.route_key.as_deref().unwrap_or_default();
    let Some(&(_, needs)) = ROUTES.iter().find(|(key, _)| *key == route) else {
        return problem(StatusCode::NOT_FOUND, "no such route");
    };
    // No context: the request did not come through the authorizer (a route deployed without
    // it). Refused, whatever the route.
    let Some(caller) = context
        .authorizer
        .as_ref()
        .and_then(|authorizer| Caller::from_context(&authorizer.fields))
    else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "no caller: this API's routes need the authorizer",
        );
    };
    if let Err(why) = caller.meets(needs) {
        return problem(StatusCode::FORBIDDEN, why);
    }
    json_response(
        StatusCode::OK,
        "application/json",
        &json!({
            "route": route,
            "user_id": caller.sub,
            "role": caller.role,
            "amr": caller.amr,
        }),
    )
}

/// An RFC 9457 problem with `status` and `detail`.
fn problem(status: StatusCode, detail: &str) -> Result<Response<Body>, Error> {
    json_response(
        status,
        "application/problem+json",
        &json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
        }),
    )
}

fn json_response(
    status: StatusCode,
    content_type: &str,
    body: &Value,
) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Body::from(body.to_string()))?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(handle)).await
}
