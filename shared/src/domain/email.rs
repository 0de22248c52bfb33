//! An account's email address, validated on construction against the contract's syntax rules.
//!
//! Holding an [`Email`] means the address is trimmed, lowercased and well-formed: a dot-atom
//! local part (RFC 5322) of at most 64 characters, an `@`, and a domain of at least two
//! hostname labels whose last one is alphabetic, at most 254 characters in all. It never
//! accepts non-ASCII (no internationalised addresses), and it never checks that the mailbox
//! exists.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Most characters in a whole address (RFC 5321's path limit, minus the angle brackets).
pub const MAX_LEN: usize = 254;
/// Most characters in the part before the `@` (RFC 5321).
const MAX_LOCAL_LEN: usize = 64;
/// Most characters in one domain label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// A syntactically valid, trimmed and lowercased email address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

/// Why a string is not an acceptable email address.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EmailError {
    #[error("the email address is empty")]
    Empty,
    #[error("the email address must be at most {max} characters")]
    TooLong { max: usize },
    #[error("the email address must contain only ASCII characters")]
    NonAscii,
    #[error("the email address needs an @")]
    MissingAt,
    #[error("the email address must contain exactly one @")]
    MultipleAt,
    #[error("the part before the @ is empty")]
    EmptyLocalPart,
    #[error("the part before the @ must be at most {max} characters")]
    LocalPartTooLong { max: usize },
    #[error("the part before the @ contains a character that is not allowed: {found:?}")]
    InvalidLocalPartCharacter { found: char },
    #[error("the part before the @ must not start or end with a dot or have two dots in a row")]
    MisplacedDot,
    #[error("the domain is empty")]
    EmptyDomain,
    #[error("the domain needs at least two labels")]
    TooFewDomainLabels,
    #[error("the domain has an empty label")]
    EmptyDomainLabel,
    #[error("a domain label must be at most {max} characters")]
    DomainLabelTooLong { max: usize },
    #[error("the domain contains a character that is not allowed: {found:?}")]
    InvalidDomainCharacter { found: char },
    #[error("a domain label must not start or end with a hyphen")]
    HyphenAtLabelEdge,
    #[error("the last domain label must contain only letters")]
    NonAlphabeticTopLevelDomain,
}

impl Email {
    /// Trims surrounding whitespace, lowercases, and checks the contract's syntax rules.
    ///
    /// # Errors
    /// The first rule the address breaks; every [`EmailError`] is an `invalid_email`.
    pub fn parse(raw: &str) -> Result<Email, EmailError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        // Checked before lowercasing: Unicode case folding maps a few non-ASCII characters
        // onto ASCII ones (the Kelvin sign 'K' becomes 'k'), which would smuggle them in.
        if !trimmed.is_ascii() {
            return Err(EmailError::NonAscii);
        }
        let address = trimmed.to_ascii_lowercase();
        // ASCII only from here on, so bytes and characters count the same.
        if address.len() > MAX_LEN {
            return Err(EmailError::TooLong { max: MAX_LEN });
        }
        let (local, domain) = address.split_once('@').ok_or(EmailError::MissingAt)?;
        if domain.contains('@') {
            return Err(EmailError::MultipleAt);
        }
        validate_local_part(local)?;
        validate_domain(domain)?;
        Ok(Email(address))
    }

    /// The whole address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the `@`.
    pub fn local_part(&self) -> &str {
        // A parsed address always has exactly one '@'; the fallback is never taken.
        self.0.split_once('@').map_or(&self.0, |(local, _)| local)
    }
}

/// RFC 5322 `atext`: the characters a dot-atom may hold besides the dots.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

fn validate_local_part(local: &str) -> Result<(), EmailError> {
    if local.is_empty() {
        return Err(EmailError::EmptyLocalPart);
    }
    if local.len() > MAX_LOCAL_LEN {
        return Err(EmailError::LocalPartTooLong { max: MAX_LOCAL_LEN });
    }
    if let Some(found) = local.chars().find(|&c| c != '.' && !is_atext(c)) {
        return Err(EmailError::InvalidLocalPartCharacter { found });
    }
    // Dot-atom: atoms of at least one character joined by single dots.
    if local.split('.').any(str::is_empty) {
        return Err(EmailError::MisplacedDot);
    }
    Ok(())
}

fn validate_domain(domain: &str) -> Result<(), EmailError> {
    if domain.is_empty() {
        return Err(EmailError::EmptyDomain);
    }
    if let Some(found) = domain
        .chars()
        .find(|&c| c != '.' && c != '-' && !c.is_ascii_alphanumeric())
    {
        return Err(EmailError::InvalidDomainCharacter { found });
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(EmailError::TooFewDomainLabels);
    }
    for label in &labels {
        if label.is_empty() {
            return Err(EmailError::EmptyDomainLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(EmailError::DomainLabelTooLong { max: MAX_LABEL_LEN });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(EmailError::HyphenAtLabelEdge);
        }
    }
    let top_level = labels.last().copied().unwrap_or_default();
    if !top_level.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(EmailError::NonAlphabeticTopLevelDomain);
    }
    Ok(())
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Email {
    type Err = EmailError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Email::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(raw: &str) -> String {
        match Email::parse(raw) {
            Ok(email) => email.as_str().to_owned(),
            Err(err) => panic!("{raw:?} should be valid, got: {err}"),
        }
    }

    fn err(raw: &str) -> EmailError {
        match Email::parse(raw) {
            Ok(email) => panic!("{raw:?} should be invalid, got {email}"),
            Err(err) => err,
        }
    }

    #[test]
    fn accepts_ordinary_addresses() {
        assert_eq!(ok("alice@example.com"), "alice@example.com");
        assert_eq!(ok("a@x.io"), "a@x.io");
        assert_eq!(
            ok("first.last@mail.example.co.uk"),
            "first.last@mail.example.co.uk"
        );
        assert_eq!(
            ok("user+tag@sub-domain.example.org"),
            "user+tag@sub-domain.example.org"
        );
        assert_eq!(ok("1234@123.example"), "1234@123.example");
        assert_eq!(ok("x@a-b-c.d9.io"), "x@a-b-c.d9.io");
    }

    #[test]
    fn accepts_every_dot_atom_special_character() {
        let local = "!#$%&'*+-/=?^_`{|}~";
        assert_eq!(
            ok(&format!("{local}@example.com")),
            format!("{local}@example.com")
        );
    }

    #[test]
    fn trims_and_lowercases() {
        assert_eq!(ok("  Alice@Example.COM "), "alice@example.com");
        assert_eq!(ok("\tBOB@EXAMPLE.ORG\n"), "bob@example.org");
        assert_eq!(ok("\u{a0}carol@example.net\u{3000}"), "carol@example.net");
    }

    #[test]
    fn rejects_empty_and_blank() {
        assert_eq!(err(""), EmailError::Empty);
        assert_eq!(err("   "), EmailError::Empty);
    }

    #[test]
    fn rejects_non_ascii_anywhere() {
        assert_eq!(err("jos\u{e9}@example.com"), EmailError::NonAscii);
        assert_eq!(err("alice@b\u{fc}cher.de"), EmailError::NonAscii);
        assert_eq!(err("alice@example.\u{440}\u{444}"), EmailError::NonAscii);
        // The Kelvin sign lowercases to an ASCII 'k'; it must still be refused.
        assert_eq!(err("\u{212a}im@example.com"), EmailError::NonAscii);
        // Fullwidth '@' is not an '@'.
        assert_eq!(err("alice\u{ff20}example.com"), EmailError::NonAscii);
    }

    #[test]
    fn needs_exactly_one_at() {
        assert_eq!(err("alice.example.com"), EmailError::MissingAt);
        assert_eq!(err("alice@@example.com"), EmailError::MultipleAt);
        assert_eq!(err("a@b@example.com"), EmailError::MultipleAt);
        assert_eq!(err("\"a@b\"@example.com"), EmailError::MultipleAt);
    }

    #[test]
    fn local_part_dots() {
        assert_eq!(err("a..b@x.io"), EmailError::MisplacedDot);
        assert_eq!(err(".a@x.io"), EmailError::MisplacedDot);
        assert_eq!(err("a.@x.io"), EmailError::MisplacedDot);
        assert_eq!(err(".@x.io"), EmailError::MisplacedDot);
        assert_eq!(ok("a.b.c@x.io"), "a.b.c@x.io");
    }

    #[test]
    fn local_part_characters() {
        assert_eq!(err("@x.io"), EmailError::EmptyLocalPart);
        assert_eq!(
            err("a b@x.io"),
            EmailError::InvalidLocalPartCharacter { found: ' ' }
        );
        assert_eq!(
            err("\"ab\"@x.io"),
            EmailError::InvalidLocalPartCharacter { found: '"' }
        );
        for c in [
            '(', ')', ',', ':', ';', '<', '>', '[', ']', '\\', '\0', '\x7f',
        ] {
            assert_eq!(
                err(&format!("a{c}b@x.io")),
                EmailError::InvalidLocalPartCharacter { found: c },
                "{c:?}"
            );
        }
    }

    #[test]
    fn local_part_length() {
        let local_64 = "a".repeat(64);
        assert_eq!(ok(&format!("{local_64}@x.io")), format!("{local_64}@x.io"));
        let local_65 = "a".repeat(65);
        assert_eq!(
            err(&format!("{local_65}@x.io")),
            EmailError::LocalPartTooLong { max: 64 }
        );
    }

    #[test]
    fn domain_labels() {
        assert_eq!(err("a@"), EmailError::EmptyDomain);
        assert_eq!(err("a@localhost"), EmailError::TooFewDomainLabels);
        assert_eq!(err("a@x..io"), EmailError::EmptyDomainLabel);
        assert_eq!(err("a@.x.io"), EmailError::EmptyDomainLabel);
        assert_eq!(err("a@x.io."), EmailError::EmptyDomainLabel);
        assert_eq!(err("a@-x.io"), EmailError::HyphenAtLabelEdge);
        assert_eq!(err("a@x-.io"), EmailError::HyphenAtLabelEdge);
        assert_eq!(err("a@x.-io"), EmailError::HyphenAtLabelEdge);
        assert_eq!(err("a@x.123"), EmailError::NonAlphabeticTopLevelDomain);
        assert_eq!(err("a@x.i0"), EmailError::NonAlphabeticTopLevelDomain);
        assert_eq!(err("a@x.co-uk"), EmailError::NonAlphabeticTopLevelDomain);
        assert_eq!(err("a@127.0.0.1"), EmailError::NonAlphabeticTopLevelDomain);
        assert_eq!(
            err("a@[127.0.0.1]"),
            EmailError::InvalidDomainCharacter { found: '[' }
        );
        assert_eq!(
            err("a@x_y.io"),
            EmailError::InvalidDomainCharacter { found: '_' }
        );
        // Trailing whitespace is trimmed, inner whitespace is not.
        assert_eq!(
            err("a@x .io"),
            EmailError::InvalidDomainCharacter { found: ' ' }
        );
    }

    #[test]
    fn domain_label_length() {
        let label_63 = "d".repeat(63);
        assert_eq!(ok(&format!("a@{label_63}.io")), format!("a@{label_63}.io"));
        let label_64 = "d".repeat(64);
        assert_eq!(
            err(&format!("a@{label_64}.io")),
            EmailError::DomainLabelTooLong { max: 63 }
        );
        assert_eq!(
            err(&format!("a@x.{label_64}")),
            EmailError::DomainLabelTooLong { max: 63 }
        );
    }

    /// `a@` followed by labels of 63, 63, 63 and `tail_len` characters separated by dots.
    fn address_of_len(total: usize) -> String {
        let label = "d".repeat(63);
        let head = format!("a@{label}.{label}.{label}.");
        let tail = "i".repeat(total - head.len());
        format!("{head}{tail}")
    }

    #[test]
    fn total_length() {
        let at_limit = address_of_len(254);
        assert_eq!(at_limit.len(), 254);
        assert_eq!(ok(&at_limit), at_limit);
        let over = address_of_len(255);
        assert_eq!(over.len(), 255);
        assert_eq!(err(&over), EmailError::TooLong { max: 254 });
        // Whitespace around the address does not count against the limit.
        assert_eq!(ok(&format!("  {at_limit}  ")), at_limit);
    }

    #[test]
    fn accessors_and_traits() {
        let email = Email::parse(" Alice.Smith@Example.com").unwrap();
        assert_eq!(email.as_str(), "alice.smith@example.com");
        assert_eq!(email.as_ref(), "alice.smith@example.com");
        assert_eq!(email.local_part(), "alice.smith");
        assert_eq!(email.to_string(), "alice.smith@example.com");
        assert_eq!(
            "alice.smith@EXAMPLE.com".parse::<Email>(),
            Ok(email.clone())
        );
        assert_eq!(
            serde_json::to_string(&email).unwrap(),
            "\"alice.smith@example.com\""
        );
    }

    #[test]
    fn errors_read_as_short_reasons() {
        assert_eq!(
            EmailError::TooFewDomainLabels.to_string(),
            "the domain needs at least two labels"
        );
        assert_eq!(
            EmailError::TooLong { max: 254 }.to_string(),
            "the email address must be at most 254 characters"
        );
        assert_eq!(
            EmailError::InvalidLocalPartCharacter { found: ' ' }.to_string(),
            "the part before the @ contains a character that is not allowed: ' '"
        );
    }

    const ATEXT: &str = "!#$%&'*+-/=?^_`{|}~";

    fn atom() -> impl Strategy<Value = String> {
        "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,16}"
    }

    fn local_part() -> impl Strategy<Value = String> {
        prop::collection::vec(atom(), 1..=5)
            .prop_map(|atoms| atoms.join("."))
            .prop_filter("local part at most 64 characters", |l| l.len() <= 64)
    }

    fn label() -> impl Strategy<Value = String> {
        "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    }

    fn domain() -> impl Strategy<Value = String> {
        (prop::collection::vec(label(), 1..=4), "[A-Za-z]{1,63}").prop_map(|(mut labels, tld)| {
            labels.push(tld);
            labels.join(".")
        })
    }

    /// Addresses built from the rules, in mixed case.
    fn valid_address() -> impl Strategy<Value = String> {
        (local_part(), domain())
            .prop_map(|(local, domain)| format!("{local}@{domain}"))
            .prop_filter("address at most 254 characters", |a| a.len() <= 254)
    }

    /// Characters that may appear nowhere in a local part (an '@' there makes two of them).
    fn not_local_char() -> impl Strategy<Value = char> {
        any::<char>().prop_filter("outside the local part's set", |&c| {
            c != '.' && !c.is_ascii_alphanumeric() && !ATEXT.contains(c)
        })
    }

    /// Characters that may appear nowhere in a domain.
    fn not_domain_char() -> impl Strategy<Value = char> {
        any::<char>().prop_filter("outside the domain's set", |&c| {
            c != '.' && c != '-' && !c.is_ascii_alphanumeric()
        })
    }

    proptest! {
        #[test]
        fn valid_addresses_parse_and_round_trip_lowercased(
            address in valid_address(),
            pad_left in "[ \t\n]{0,3}",
            pad_right in "[ \t\n]{0,3}",
        ) {
            let email = Email::parse(&format!("{pad_left}{address}{pad_right}"));
            let expected = address.to_ascii_lowercase();
            prop_assert_eq!(email.as_ref().map(Email::as_str), Ok(expected.as_str()));
            let email = email.unwrap();
            prop_assert_eq!(Email::parse(email.as_str()), Ok(email.clone()));
            let expected_local = expected.split('@').next().unwrap();
            prop_assert_eq!(email.local_part(), expected_local);
        }

        #[test]
        fn a_foreign_character_in_the_local_part_is_rejected(
            address in valid_address(),
            c in not_local_char(),
            at in any::<prop::sample::Index>(),
        ) {
            let local_len = address.find('@').unwrap();
            // Never at the very start: leading whitespace would be trimmed, legitimately.
            let pos = 1 + at.index(local_len);
            let mut bad = address.clone();
            bad.insert(pos, c);
            prop_assert!(Email::parse(&bad).is_err(), "{:?} was accepted", bad);
        }

        #[test]
        fn a_foreign_character_in_the_domain_is_rejected(
            address in valid_address(),
            c in not_domain_char(),
            at in any::<prop::sample::Index>(),
        ) {
            let domain_start = address.find('@').unwrap() + 1;
            // Never at the very end: trailing whitespace would be trimmed, legitimately.
            let pos = domain_start + at.index(address.len() - domain_start);
            let mut bad = address.clone();
            bad.insert(pos, c);
            prop_assert!(Email::parse(&bad).is_err(), "{:?} was accepted", bad);
        }

        #[test]
        fn parsing_never_panics_and_output_is_canonical(
            raw in prop_oneof![
                any::<String>(),
                "[a-zA-Z0-9.@ -]{0,300}",
                "\\PC{0,300}",
            ]
        ) {
            if let Ok(email) = Email::parse(&raw) {
                let s = email.as_str();
                prop_assert!(s.len() <= 254);
                prop_assert!(s.is_ascii());
                prop_assert_eq!(s, s.to_ascii_lowercase());
                prop_assert_eq!(s.matches('@').count(), 1);
                prop_assert_eq!(Email::parse(s), Ok(email.clone()));
            }
        }
    }
}
