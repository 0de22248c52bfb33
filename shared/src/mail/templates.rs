//! The texts of every email the service sends: one template pair per email in
//! `shared/templates/email` (`<name>.txt` whose first line is the subject, and `<name>.html`),
//! compiled into the binary and rendered with MiniJinja. What each template is given is
//! listed in that folder's README; this module never decides wording.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use minijinja::{Environment, UndefinedBehavior};

use super::{MailError, OutgoingEmail};
use crate::domain::Email;

/// One email the service sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// The link that verifies the account's address.
    VerifyEmail,
    /// The link, to the new address, that completes an email change.
    ConfirmEmailChange,
    /// The password-reset link.
    PasswordReset,
    /// Notice to the current address: an email change was asked for.
    NoticeEmailChangeRequested,
    /// Notice to the old address: the email changed.
    NoticeEmailChanged,
    /// Notice: the password was changed.
    NoticePasswordChanged,
    /// Notice: the password was reset with a link.
    NoticePasswordReset,
    /// Notice: failed logins locked the account.
    NoticeLockout,
    /// Notice: two-factor login was turned on.
    NoticeMfaEnabled,
    /// Notice: two-factor login was turned off (by the user or an admin).
    NoticeMfaDisabled,
}

impl Template {
    /// Every template, for the test that renders them all.
    #[cfg(test)]
    const ALL: [Template; 10] = [
        Template::VerifyEmail,
        Template::ConfirmEmailChange,
        Template::PasswordReset,
        Template::NoticeEmailChangeRequested,
        Template::NoticeEmailChanged,
        Template::NoticePasswordChanged,
        Template::NoticePasswordReset,
        Template::NoticeLockout,
        Template::NoticeMfaEnabled,
        Template::NoticeMfaDisabled,
    ];

    /// The file name without extension; also the email's `purpose` in log lines.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ConfirmEmailChange => "confirm_email_change",
            Self::PasswordReset => "password_reset",
            Self::NoticeEmailChangeRequested => "notice_email_change_requested",
            Self::NoticeEmailChanged => "notice_email_changed",
            Self::NoticePasswordChanged => "notice_password_changed",
            Self::NoticePasswordReset => "notice_password_reset",
            Self::NoticeLockout => "notice_lockout",
            Self::NoticeMfaEnabled => "notice_mfa_enabled",
            Self::NoticeMfaDisabled => "notice_mfa_disabled",
        }
    }
}

/// The template files, by file name.
const SOURCES: [(&str, &str); 20] = {
    macro_rules! pair {
        ($name:literal) => {
            [
                (
                    concat!($name, ".txt"),
                    include_str!(concat!("../../templates/email/", $name, ".txt")),
                ),
                (
                    concat!($name, ".html"),
                    include_str!(concat!("../../templates/email/", $name, ".html")),
                ),
            ]
        };
    }
    let [a, b] = pair!("verify_email");
    let [c, d] = pair!("confirm_email_change");
    let [e, f] = pair!("password_reset");
    let [g, h] = pair!("notice_email_change_requested");
    let [i, j] = pair!("notice_email_changed");
    let [k, l] = pair!("notice_password_changed");
    let [m, n] = pair!("notice_password_reset");
    let [o, p] = pair!("notice_lockout");
    let [q, r] = pair!("notice_mfa_enabled");
    let [s, t] = pair!("notice_mfa_disabled");
    [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, r, s, t]
};

/// The environment with every template loaded: strict about undefined values, and
/// HTML-escaping values in the `.html` files (MiniJinja's default by file extension).
static TEMPLATES: LazyLock<Result<Environment<'static>, minijinja::Error>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    for (name, source) in SOURCES {
        env.add_template(name, source)?;
    }
    Ok(env)
});

/// Renders `template` for the recipient `to` (given to the template as `email`) with
/// `values` (see the templates' README for what each one expects).
pub(crate) fn render(
    template: Template,
    to: &Email,
    values: &[(&str, &str)],
) -> Result<OutgoingEmail, MailError> {
    let failed = |e: minijinja::Error| {
        MailError::Message(anyhow::Error::new(e).context(format!("template {}", template.name())))
    };
    let env = TEMPLATES
        .as_ref()
        .map_err(|e| MailError::Message(anyhow::anyhow!("the email templates do not load: {e}")))?;
    let mut context: BTreeMap<&str, &str> = values.iter().copied().collect();
    context.insert("email", to.as_str());
    let render = |extension: &str| {
        env.get_template(&format!("{}.{extension}", template.name()))
            .and_then(|t| t.render(&context))
            .map_err(failed)
    };
    let text = render("txt")?;
    let html = render("html")?;
    let (first, body) = text.split_once('\n').unwrap_or((&text, ""));
    let subject = first
        .strip_prefix("Subject:")
        .map(str::trim)
        .ok_or_else(|| {
            MailError::Message(anyhow::anyhow!(
                "template {}.txt must start with a `Subject:` line",
                template.name()
            ))
        })?;
    Ok(
        OutgoingEmail::new(template.name(), to, subject, body.trim_start_matches('\n'))
            .with_html(html),
    )
}

/// "30 minutes", "1 hour", "90 seconds": a link's lifetime as an email states it.
pub(crate) fn lifetime(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = if secs >= 3600 && secs.is_multiple_of(3600) {
        (secs / 3600, "hour")
    } else if secs >= 60 && secs.is_multiple_of(60) {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_values() -> Vec<(&'static str, &'static str)> {
        vec![
            ("link", "https://app.example.com/verify-email?token=abc"),
            ("lifetime", "24 hours"),
            ("new_email", "new<b>@example.com"),
            ("old_email", "old@example.com"),
            ("by_admin", "no"),
        ]
    }

    #[test]
    fn every_template_renders_with_a_subject_text_and_html() {
        let to = Email::parse("ada@example.com").expect("valid");
        for template in Template::ALL {
            let email = render(template, &to, &sample_values()).expect("renders");
            assert!(!email.subject.is_empty(), "{template:?}");
            assert!(!email.subject.contains('\n'), "{template:?}");
            assert!(email.text().contains("Hello"), "{template:?}");
            let html = email.html().expect("html part");
            assert!(html.contains("<p>"), "{template:?}");
            // Values are escaped in HTML, not in text.
            assert!(!html.contains("new<b>"), "{template:?}: {html}");
        }
    }

    #[test]
    fn a_missing_value_is_an_error_not_an_empty_gap() {
        let to = Email::parse("ada@example.com").expect("valid");
        assert!(render(Template::VerifyEmail, &to, &[("lifetime", "1 hour")]).is_err());
    }

    #[test]
    fn notices_have_no_link_slot() {
        for (name, source) in SOURCES {
            if name.starts_with("notice_") {
                assert!(!source.contains("{{ link"), "{name} must not carry a link");
                assert!(!source.contains("token"), "{name} must not carry a token");
            }
        }
    }

    #[test]
    fn lifetimes_read_naturally() {
        let h = |secs| lifetime(Duration::from_secs(secs));
        assert_eq!(h(1800), "30 minutes");
        assert_eq!(h(3600), "1 hour");
        assert_eq!(h(86400), "24 hours");
        assert_eq!(h(60), "1 minute");
        assert_eq!(h(90), "90 seconds");
        assert_eq!(h(1), "1 second");
    }
}
