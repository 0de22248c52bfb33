//! The local moto server that stands in for AWS (`MOTO_ENDPOINT`, set by `scripts/test.sh`
//! with the fake `AWS_*` credentials), for tests that use the real AWS SDK.

/// The moto endpoint, or `None` (after saying why) when `what` cannot be tested here: without
/// `MOTO_ENDPOINT` the test fails when `CI` is set and is skipped otherwise.
pub fn moto_endpoint(what: &str) -> Option<String> {
    let endpoint = std::env::var("MOTO_ENDPOINT")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let Some(endpoint) = endpoint else {
        assert!(
            std::env::var_os("CI").is_none(),
            "MOTO_ENDPOINT is not set, so {what} cannot be tested; in CI it must be: run the \
             suite through scripts/test.sh, which starts moto and sets it"
        );
        eprintln!(
            "skipping {what}: MOTO_ENDPOINT is not set (scripts/test.sh starts a moto server \
             and sets it)"
        );
        return None;
    };
    // The service's AWS SDK clients take their credentials and region from the environment.
    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert!(
            std::env::var_os(name).is_some(),
            "MOTO_ENDPOINT is set but {name} is not: set AWS_ACCESS_KEY_ID=test \
             AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 as scripts/test.sh does"
        );
    }
    Some(endpoint)
}
