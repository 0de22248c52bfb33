//! Which roles may call which API Gateway route: the route rules of the Lambda authorizer.
//!
//! The rules are data, not code, so the same authorizer can guard other APIs: set
//! `AUTHORIZER_ROUTE_RULES` to a JSON object mapping an API Gateway route key to the roles
//! allowed on it, for example
//!
//! ```json
//! {
//!   "GET /v1/reports": ["user", "admin"],
//!   "ANY /v1/admin/{proxy+}": ["admin"],
//!   "$default": ["user", "admin"]
//! }
//! ```
//!
//! A rule may also demand a second factor: instead of the role list, an object with the
//! roles and the `amr` values (RFC 8176) the token must carry, for example
//! `"ANY /v1/payments/{proxy+}": {"roles": ["user", "admin"], "amr": ["otp"]}`: a token of a
//! session opened with a password alone is then denied there. `otp` is the one value a rule
//! may ask for (every token carries `pwd`).
//!
//! Unset, this service's own rules apply ([`RouteRules::service_default`]; with
//! `ADMIN_REQUIRES_MFA=true` its admin routes ask for `otp`). A configured object replaces
//! them entirely; it is never merged with them.
//!
//! How a route key (the event's `routeKey`, e.g. `GET /v1/admin/users/{id}`) finds its rule:
//! 1. a rule with exactly that key;
//! 2. else the most specific rule whose pattern covers it: `ANY` covers every method, `{name}`
//!    any one segment, `{name+}` (last) one or more segments. Specific means: no greedy
//!    segment, then more literal segments, then more segments, then a named method over
//!    `ANY`. Equally specific rules must all allow the role;
//! 3. else the `"$default"` rule;
//! 4. else the route is denied.
//!
//! Rules match route keys, not request paths: a catch-all route (`ANY /{proxy+}`,
//! `$default`) is one route, whatever path the client asked for. An empty role list denies
//! the route to everyone. This module must never grant a role that the configuration does
//! not name: every doubt (an unparsable key, an unknown role) is a configuration error at
//! start, and an unmatched route is a deny.

use std::collections::BTreeMap;
use std::str::FromStr as _;

use serde::Deserialize;

use crate::config::Config;
use crate::domain::{Amr, Role};

/// The rules this service's own routes need (what [`RouteRules::service_default`] parses):
/// the admin routes are for admins only; the other routes behind the authorizer are for
/// every signed-in user. Any other route is denied, so a new protected route needs a rule
/// (a forgotten one fails closed, with a 403).
pub const SERVICE_DEFAULT_RULES: &str = r#"{
  "ANY /v1/admin": ["admin"],
  "ANY /v1/admin/{proxy+}": ["admin"],
  "POST /v1/auth/logout": ["user", "admin"],
  "ANY /v1/users/me": ["user", "admin"],
  "ANY /v1/users/me/{proxy+}": ["user", "admin"]
}"#;

/// Why the route rules could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Not a JSON object of string arrays.
    #[error("AUTHORIZER_ROUTE_RULES is not a JSON object of role arrays: {0}")]
    Json(#[from] serde_json::Error),
    /// A key that is neither `$default` nor `METHOD /path`.
    #[error("AUTHORIZER_ROUTE_RULES: route key {key:?}: {reason}")]
    RouteKey {
        /// The offending key.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A role that does not exist.
    #[error("AUTHORIZER_ROUTE_RULES: route key {key:?}: unknown role {role:?}")]
    Role {
        /// The key whose list holds it.
        key: String,
        /// The role name.
        role: String,
    },
    /// An `amr` value a rule cannot ask for (only `otp`).
    #[error(
        "AUTHORIZER_ROUTE_RULES: route key {key:?}: amr may only ask for \"otp\", not {value:?}"
    )]
    Amr {
        /// The key whose rule holds it.
        key: String,
        /// The value.
        value: String,
    },
}

/// One rule as configured: the roles alone, or the roles and the `amr` values required.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawRule {
    Roles(Vec<String>),
    Full(FullRule),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FullRule {
    roles: Vec<String>,
    #[serde(default)]
    amr: Vec<String>,
}

/// What a rule says about a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// The caller may call the route.
    Allowed,
    /// No rule lets the caller's role in (or no rule applies).
    RoleRefused,
    /// The role may, but the rule asks for a second factor the session did not pass.
    SecondFactorMissing,
}

/// One segment of a route path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// A fixed segment (`users`).
    Literal(String),
    /// `{name}`: exactly one segment.
    Param,
    /// `{name+}`: one or more segments, only last.
    Greedy,
}

/// A parsed `METHOD /path` route key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RouteKey {
    /// `None` for `ANY`.
    method: Option<String>,
    segments: Vec<Segment>,
}

impl RouteKey {
    /// Parses `METHOD /path` (method case-insensitive, `ANY` for every method).
    fn parse(key: &str) -> Result<Self, &'static str> {
        let (method, path) = key
            .trim()
            .split_once(' ')
            .ok_or("expected \"METHOD /path\" or \"$default\"")?;
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err("the method must be letters only (or ANY)");
        }
        let method = method.to_ascii_uppercase();
        let path = path.trim();
        let rest = path
            .strip_prefix('/')
            .ok_or("the path must start with '/'")?;
        let mut segments = Vec::new();
        if !rest.is_empty() {
            for raw in rest.split('/') {
                let segment = match raw.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) if name.ends_with('+') && name.len() > 1 => Segment::Greedy,
                    Some(name) if !name.is_empty() && !name.contains(['{', '}', '+']) => {
                        Segment::Param
                    }
                    Some(_) => return Err("a path variable must be {name} or {name+}"),
                    None if raw.is_empty() => return Err("the path has an empty segment"),
                    None if raw.contains(['{', '}']) => {
                        return Err("a path variable must be a whole segment");
                    }
                    None => Segment::Literal(raw.to_owned()),
                };
                if segments.last() == Some(&Segment::Greedy) {
                    return Err("a greedy {name+} variable must be the last segment");
                }
                segments.push(segment);
            }
        }
        Ok(Self {
            method: (method != "ANY").then_some(method),
            segments,
        })
    }

    /// Does this rule pattern cover every request the route `route` can receive?
    fn covers(&self, route: &RouteKey) -> bool {
        let method_ok = match (&self.method, &route.method) {
            (None, _) => true,
            (Some(rule), Some(route)) => rule == route,
            // An `ANY` route also takes methods a method-specific rule does not speak for.
            (Some(_), None) => false,
        };
        method_ok && segments_cover(&self.segments, &route.segments)
    }

    /// Orders matching rules: the greatest is the most specific.
    fn specificity(&self) -> (bool, usize, usize, bool) {
        let literals = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        (
            !self.segments.contains(&Segment::Greedy),
            literals,
            self.segments.len(),
            self.method.is_some(),
        )
    }

    /// The canonical spelling, for exact lookups (`GET /v1/users/{id}`).
    fn canonical(key: &str) -> Option<String> {
        let (method, path) = key.trim().split_once(' ')?;
        Some(format!("{} {}", method.to_ascii_uppercase(), path.trim()))
    }
}

fn segments_cover(rule: &[Segment], route: &[Segment]) -> bool {
    match (rule.split_first(), route.split_first()) {
        (None, None) => true,
        // Greedy is last and takes one or more segments, whatever they are.
        (Some((Segment::Greedy, _)), Some(_)) => true,
        // One segment, but not a greedy route segment (that may span several).
        (Some((Segment::Param, rule_rest)), Some((segment, route_rest))) => {
            *segment != Segment::Greedy && segments_cover(rule_rest, route_rest)
        }
        (Some((Segment::Literal(a), rule_rest)), Some((Segment::Literal(b), route_rest))) => {
            a == b && segments_cover(rule_rest, route_rest)
        }
        _ => false,
    }
}

/// What a rule grants: the roles, and whether the token must carry `otp`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    roles: Vec<Role>,
    second_factor: bool,
}

/// One configured rule.
#[derive(Debug, Clone)]
struct Rule {
    pattern: RouteKey,
    grant: Grant,
}

/// Which roles may call which route. Cheap to share; built once per process.
#[derive(Debug, Clone)]
pub struct RouteRules {
    /// By canonical route key, for the exact match.
    exact: BTreeMap<String, Grant>,
    patterns: Vec<Rule>,
    default: Option<Grant>,
    /// These are this service's own rules, so its own routes are behind them.
    service_default: bool,
}

impl RouteRules {
    /// Parses the JSON object described in the module docs.
    pub fn from_json(json: &str) -> Result<Self, RulesError> {
        let raw: BTreeMap<String, RawRule> = serde_json::from_str(json)?;
        let mut rules = Self {
            exact: BTreeMap::new(),
            patterns: Vec::new(),
            default: None,
            service_default: false,
        };
        for (key, rule) in raw {
            let (names, amr) = match rule {
                RawRule::Roles(names) => (names, Vec::new()),
                RawRule::Full(FullRule { roles, amr }) => (roles, amr),
            };
            let roles = names
                .iter()
                .map(|name| {
                    Role::from_str(name.trim()).map_err(|_| RulesError::Role {
                        key: key.clone(),
                        role: name.clone(),
                    })
                })
                .collect::<Result<Vec<Role>, _>>()?;
            let mut second_factor = false;
            for value in &amr {
                match value.trim() {
                    "otp" => second_factor = true,
                    // Every token carries it: asking for it asks for nothing.
                    "pwd" => {}
                    _ => {
                        return Err(RulesError::Amr {
                            key: key.clone(),
                            value: value.clone(),
                        });
                    }
                }
            }
            let grant = Grant {
                roles,
                second_factor,
            };
            if key.trim() == "$default" {
                rules.default = Some(grant);
                continue;
            }
            let pattern = RouteKey::parse(&key).map_err(|reason| RulesError::RouteKey {
                key: key.clone(),
                reason,
            })?;
            let canonical = RouteKey::canonical(&key).unwrap_or_else(|| key.clone());
            rules.exact.insert(canonical, grant.clone());
            rules.patterns.push(Rule { pattern, grant });
        }
        Ok(rules)
    }

    /// This service's own rules ([`SERVICE_DEFAULT_RULES`]; a unit test keeps them valid),
    /// with the admin routes asking for a second factor when `admin_requires_mfa`.
    pub fn service_default(admin_requires_mfa: bool) -> Result<Self, RulesError> {
        let mut rules = Self::from_json(SERVICE_DEFAULT_RULES)?;
        rules.service_default = true;
        if admin_requires_mfa {
            let admin_only = |grant: &mut Grant| {
                if grant.roles == [Role::Admin] {
                    grant.second_factor = true;
                }
            };
            rules.exact.values_mut().for_each(admin_only);
            rules
                .patterns
                .iter_mut()
                .for_each(|r| admin_only(&mut r.grant));
        }
        Ok(rules)
    }

    /// Whether these are this service's own rules (not another API's).
    pub fn is_service_default(&self) -> bool {
        self.service_default
    }

    /// Whether `route_key` is one of this service's admin routes: these are this service's
    /// own rules, and what applies to the route grants the admin role alone (the routes
    /// `ADMIN_REQUIRES_MFA` asks a second factor of).
    pub fn is_service_admin_route(&self, route_key: &str) -> bool {
        let admin_only = |grant: &Grant| grant.roles == [Role::Admin];
        self.service_default
            && match self.allowed_roles(route_key) {
                Allowed::Roles(grant) => admin_only(grant),
                Allowed::All(grants) => !grants.is_empty() && grants.into_iter().all(admin_only),
                Allowed::Nobody => false,
            }
    }

    /// The configured rules (`AUTHORIZER_ROUTE_RULES`), else [`Self::service_default`].
    pub fn from_config(config: &Config) -> Result<Self, RulesError> {
        match config.authorizer_route_rules.as_deref() {
            Some(json) => Self::from_json(json),
            None => Self::service_default(config.admin_requires_mfa),
        }
    }

    /// May a caller with `role`, whose session authenticated with `amr`, call the route
    /// `route_key` (API Gateway's `routeKey`)?
    pub fn allows(&self, route_key: &str, role: Role, amr: Amr) -> Permission {
        let grants = match self.allowed_roles(route_key) {
            Allowed::Roles(grant) => vec![grant],
            Allowed::All(grants) => grants,
            Allowed::Nobody => Vec::new(),
        };
        if grants.is_empty() || !grants.iter().all(|g| g.roles.contains(&role)) {
            Permission::RoleRefused
        } else if grants.iter().any(|g| g.second_factor) && !amr.has_second_factor() {
            Permission::SecondFactorMissing
        } else {
            Permission::Allowed
        }
    }

    fn allowed_roles(&self, route_key: &str) -> Allowed<'_> {
        let route_key = route_key.trim();
        if route_key == "$default" {
            return self.default_rule();
        }
        if let Some(roles) = RouteKey::canonical(route_key).and_then(|k| self.exact.get(&k)) {
            return Allowed::Roles(roles);
        }
        let Ok(route) = RouteKey::parse(route_key) else {
            return self.default_rule();
        };
        let matching: Vec<&Rule> = self
            .patterns
            .iter()
            .filter(|rule| rule.pattern.covers(&route))
            .collect();
        let Some(best) = matching.iter().map(|r| r.pattern.specificity()).max() else {
            return self.default_rule();
        };
        Allowed::All(
            matching
                .iter()
                .filter(|r| r.pattern.specificity() == best)
                .map(|r| &r.grant)
                .collect(),
        )
    }

    fn default_rule(&self) -> Allowed<'_> {
        self.default
            .as_ref()
            .map_or(Allowed::Nobody, Allowed::Roles)
    }
}

/// What the rules say about one route.
enum Allowed<'a> {
    /// The grant of the one rule that applies.
    Roles(&'a Grant),
    /// Several equally specific rules apply: a caller needs all of them.
    All(Vec<&'a Grant>),
    /// No rule applies.
    Nobody,
}

#[cfg(test)]
mod tests {
    use super::*;

    use Role::{Admin, User};

    /// Whether a password-only token of `role` may call `route`.
    fn permits(r: &RouteRules, route: &str, role: Role) -> bool {
        r.allows(route, role, Amr::PASSWORD) == Permission::Allowed
    }

    #[test]
    fn a_rule_may_demand_a_second_factor() {
        let r = rules(
            r#"{"ANY /v1/payments/{proxy+}": {"roles": ["user", "admin"], "amr": ["otp"]},
                "GET /v1/reports": ["user"]}"#,
        );
        let route = "POST /v1/payments/{proxy+}";
        assert_eq!(
            r.allows(route, User, Amr::PASSWORD),
            Permission::SecondFactorMissing
        );
        assert_eq!(
            r.allows(route, User, Amr::PASSWORD_AND_OTP),
            Permission::Allowed
        );
        // The array form keeps working and asks for no second factor.
        assert_eq!(
            r.allows("GET /v1/reports", User, Amr::PASSWORD),
            Permission::Allowed
        );
        assert_eq!(
            r.allows("GET /v1/reports", Admin, Amr::PASSWORD_AND_OTP),
            Permission::RoleRefused
        );
        for bad in [
            r#"{"GET /x": {"roles": ["user"], "amr": ["sms"]}}"#,
            r#"{"GET /x": {"roles": ["user"], "amr": ["otp"], "extra": 1}}"#,
            r#"{"GET /x": {"amr": ["otp"]}}"#,
        ] {
            assert!(RouteRules::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn admin_requires_mfa_asks_the_admin_routes_for_otp_only() {
        let r = RouteRules::service_default(true).expect("built-in rules are valid");
        assert_eq!(
            r.allows("GET /v1/admin/users", Admin, Amr::PASSWORD),
            Permission::SecondFactorMissing
        );
        assert_eq!(
            r.allows("GET /v1/admin/users", Admin, Amr::PASSWORD_AND_OTP),
            Permission::Allowed
        );
        assert_eq!(
            r.allows("GET /v1/admin/users", User, Amr::PASSWORD_AND_OTP),
            Permission::RoleRefused
        );
        assert_eq!(
            r.allows("GET /v1/users/me", Admin, Amr::PASSWORD),
            Permission::Allowed
        );
    }

    fn rules(json: &str) -> RouteRules {
        RouteRules::from_json(json).expect("valid rules")
    }

    #[test]
    fn service_defaults_keep_admin_routes_for_admins() {
        let r = RouteRules::service_default(false).expect("built-in rules are valid");
        for route in [
            "GET /v1/admin/users",
            "POST /v1/admin/users",
            "GET /v1/admin/users/{id}",
            "PATCH /v1/admin/users/{id}",
            "DELETE /v1/admin/users/{id}",
            "GET /v1/admin/users/{id}/audit",
            "ANY /v1/admin/{proxy+}",
        ] {
            assert!(permits(&r, route, Admin), "{route}");
            assert!(!permits(&r, route, User), "{route}");
        }
    }

    #[test]
    fn the_admin_routes_are_the_service_defaults_admin_only_ones() {
        for mfa in [false, true] {
            let r = RouteRules::service_default(mfa).expect("built-in rules are valid");
            for route in [
                "GET /v1/admin/users",
                "GET /v1/admin/users/{id}/audit",
                "ANY /v1/admin/{proxy+}",
                "ANY /v1/admin",
            ] {
                assert!(r.is_service_admin_route(route), "{route}");
            }
            for route in [
                "GET /v1/users/me",
                "POST /v1/auth/logout",
                "GET /v1/reports",
                "GET /v1/administrators",
                "$default",
                "",
            ] {
                assert!(!r.is_service_admin_route(route), "{route}");
            }
        }
        // Another API's rules name no admin route of this service, whatever they say.
        let other = rules(r#"{"ANY /v1/admin/{proxy+}": ["admin"]}"#);
        assert!(!other.is_service_admin_route("GET /v1/admin/users"));
    }

    #[test]
    fn service_defaults_let_every_user_reach_their_own_routes() {
        let r = RouteRules::service_default(false).expect("built-in rules are valid");
        for route in [
            "GET /v1/users/me",
            "PATCH /v1/users/me",
            "PUT /v1/users/me/password",
            "POST /v1/auth/logout",
        ] {
            assert!(permits(&r, route, User), "{route}");
            assert!(permits(&r, route, Admin), "{route}");
        }
    }

    #[test]
    fn service_defaults_deny_unlisted_routes() {
        let r = RouteRules::service_default(false).expect("built-in rules are valid");
        for route in [
            "$default",
            "GET /v1/reports",
            "GET /v1/users/{id}",
            "ANY /{proxy+}",
            "GET /v1/administrators",
            "not a route key",
            "",
        ] {
            assert!(!permits(&r, route, User), "{route}");
            assert!(!permits(&r, route, Admin), "{route}");
        }
    }

    #[test]
    fn an_exact_key_wins_over_patterns() {
        let r = rules(
            r#"{"GET /v1/admin/stats": ["user", "admin"], "ANY /v1/admin/{proxy+}": ["admin"]}"#,
        );
        assert!(permits(&r, "GET /v1/admin/stats", User));
        assert!(!permits(&r, "POST /v1/admin/stats", User));
        assert!(permits(&r, "POST /v1/admin/stats", Admin));
    }

    #[test]
    fn method_names_are_case_insensitive_in_rules() {
        let r = rules(r#"{"get /v1/reports": ["user"]}"#);
        assert!(permits(&r, "GET /v1/reports", User));
        assert!(!permits(&r, "POST /v1/reports", User));
    }

    #[test]
    fn any_covers_every_method_but_a_method_rule_does_not_cover_an_any_route() {
        let r = rules(r#"{"ANY /v1/reports": ["user"], "GET /v1/items": ["user"]}"#);
        for method in ["GET", "POST", "DELETE", "PATCH"] {
            assert!(permits(&r, &format!("{method} /v1/reports"), User));
        }
        assert!(!permits(&r, "ANY /v1/items", User));
        assert!(!permits(&r, "POST /v1/items", User));
    }

    #[test]
    fn greedy_segments_take_one_or_more_segments() {
        let r = rules(r#"{"ANY /v1/admin/{proxy+}": ["admin"]}"#);
        assert!(permits(&r, "GET /v1/admin/users", Admin));
        assert!(permits(&r, "GET /v1/admin/users/{id}/audit", Admin));
        assert!(permits(&r, "ANY /v1/admin/{proxy+}", Admin));
        assert!(permits(&r, "ANY /v1/admin/{anything+}", Admin));
        // One or more: the prefix itself is not covered.
        assert!(!permits(&r, "GET /v1/admin", Admin));
        assert!(!permits(&r, "GET /v1/other/users", Admin));
    }

    #[test]
    fn a_single_variable_takes_exactly_one_segment() {
        let r = rules(r#"{"GET /v1/items/{id}": ["user"]}"#);
        assert!(permits(&r, "GET /v1/items/{itemId}", User));
        assert!(permits(&r, "GET /v1/items/42", User));
        assert!(!permits(&r, "GET /v1/items/{id}/parts", User));
        assert!(!permits(&r, "GET /v1/items/{proxy+}", User));
        assert!(!permits(&r, "GET /v1/items", User));
    }

    #[test]
    fn a_literal_rule_does_not_cover_a_variable_route() {
        let r = rules(r#"{"GET /v1/users/me": ["user"]}"#);
        assert!(!permits(&r, "GET /v1/users/{id}", User));
    }

    #[test]
    fn the_most_specific_pattern_wins() {
        let r = rules(
            r#"{
                "ANY /v1/{proxy+}": ["user", "admin"],
                "ANY /v1/admin/{proxy+}": ["admin"],
                "GET /v1/admin/public/{id}": ["user", "admin"]
            }"#,
        );
        assert!(permits(&r, "GET /v1/things", User));
        assert!(!permits(&r, "GET /v1/admin/users", User));
        assert!(permits(&r, "GET /v1/admin/users", Admin));
        assert!(permits(&r, "GET /v1/admin/public/{x}", User));
        assert!(!permits(&r, "POST /v1/admin/public/{x}", User));
    }

    #[test]
    fn equally_specific_rules_must_all_allow() {
        let r = rules(r#"{"GET /v1/{a}/x": ["user", "admin"], "GET /v1/y/{b}": ["admin"]}"#);
        assert!(!permits(&r, "GET /v1/y/x", User));
        assert!(permits(&r, "GET /v1/y/x", Admin));
        assert!(permits(&r, "GET /v1/z/x", User));
    }

    #[test]
    fn default_applies_to_unmatched_routes_only() {
        let r = rules(r#"{"ANY /v1/admin/{proxy+}": ["admin"], "$default": ["user", "admin"]}"#);
        assert!(permits(&r, "GET /v1/reports", User));
        assert!(permits(&r, "$default", User));
        assert!(permits(&r, "something odd", User));
        assert!(!permits(&r, "GET /v1/admin/users", User));
    }

    #[test]
    fn an_empty_role_list_denies_everyone() {
        let r = rules(r#"{"DELETE /v1/everything": [], "$default": ["user", "admin"]}"#);
        assert!(!permits(&r, "DELETE /v1/everything", Admin));
        assert!(!permits(&r, "DELETE /v1/everything", User));
    }

    #[test]
    fn no_rules_deny_everything() {
        let r = rules("{}");
        assert!(!permits(&r, "GET /v1/users/me", Admin));
        assert!(!permits(&r, "$default", Admin));
    }

    #[test]
    fn bad_configuration_is_refused() {
        for (json, needle) in [
            ("not json", "JSON"),
            (r#"["admin"]"#, "JSON"),
            (r#"{"GET /x": "admin"}"#, "JSON"),
            (r#"{"GET /x": ["root"]}"#, "unknown role"),
            (r#"{"GET /x": ["Admin"]}"#, "unknown role"),
            (r#"{"/x": ["admin"]}"#, "METHOD /path"),
            (r#"{"GET x": ["admin"]}"#, "start with '/'"),
            (r#"{"G3T /x": ["admin"]}"#, "letters"),
            (r#"{"GET /x//y": ["admin"]}"#, "empty segment"),
            (r#"{"GET /x/": ["admin"]}"#, "empty segment"),
            (r#"{"GET /{a+}/b": ["admin"]}"#, "last segment"),
            (r#"{"GET /a{b}": ["admin"]}"#, "whole segment"),
            (r#"{"GET /{}": ["admin"]}"#, "{name}"),
        ] {
            let err = RouteRules::from_json(json).expect_err(json);
            assert!(err.to_string().contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn the_root_path_is_a_route() {
        let r = rules(r#"{"GET /": ["user"]}"#);
        assert!(permits(&r, "GET /", User));
        assert!(!permits(&r, "GET /x", User));
    }
}
