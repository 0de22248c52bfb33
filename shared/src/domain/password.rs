//! Passwords as the service receives them: a new one that must pass the policy, or an
//! attempt typed at login that is only normalised.
//!
//! Both are NFKC-normalised first, so the same password typed on different keyboards (say,
//! fullwidth letters from an IME) is one password, and both keep the text in a
//! [`SecretString`] so that `{:?}` never shows it. Nothing here may log, print or compare
//! a password in a way that reveals it; hashing lives elsewhere.

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use unicode_normalization::UnicodeNormalization;
use zxcvbn::Score;

use crate::domain::email::Email;

/// Fewest characters (after NFKC) a new password may have.
pub const MIN_CHARS: usize = 8;
/// Most characters (after NFKC) a new password may have.
pub const MAX_CHARS: usize = 256;
/// Lowest acceptable zxcvbn score: 3 means "safely unguessable", over 10^10 guesses.
const MIN_SCORE: Score = Score::Three;
/// How much of the password zxcvbn looks at. Its matching grows faster than linearly with
/// the length, and zxcvbn itself ignores everything past 100 characters anyway; passing only
/// those keeps a 256-character password as cheap as a short one.
const ZXCVBN_MAX_CHARS: usize = 100;
/// Local parts shorter than this are too common as substrings to forbid ("al", "jo").
const MIN_EMAIL_LOCAL_PART_CHARS: usize = 3;

/// Django's list of common passwords, lowercase, one per line; see `data/README.md`.
/// Split on lines, not on whitespace: a few entries are phrases ("friend of emily").
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../data/common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect()
});

/// Why a new password was refused; `Display` is the sentence shown to the user.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("password must be at least {min} characters")]
    TooShort { min: usize },
    #[error("password must be at most {max} characters")]
    TooLong { max: usize },
    #[error("password is too common")]
    Common,
    #[error("password must not contain the email address")]
    ContainsEmail,
    #[error("password is too easy to guess: {hint}")]
    TooGuessable { hint: String },
}

/// A password that passed the policy, NFKC-normalised, ready to be hashed.
#[derive(Clone)]
pub struct NewPassword(SecretString);

impl NewPassword {
    /// Normalises `raw` and checks it against the policy, in this order: length, the
    /// common-password list, the email's local part, then the zxcvbn estimate.
    ///
    /// `email` is the account's email: a password containing its local part (when that is
    /// 3 characters or longer, compared case-insensitively) is refused. `other_inputs` are
    /// further user-specific words (the user's name, say) that zxcvbn should treat as easy
    /// to guess.
    ///
    /// # Errors
    /// The first rule the password breaks, as a [`PasswordError`] whose `Display` is the
    /// `detail` of the `weak_password` problem response.
    pub fn parse(
        raw: &str,
        email: &Email,
        other_inputs: &[&str],
    ) -> Result<NewPassword, PasswordError> {
        let normalised = nfkc(raw);
        let chars = normalised.chars().count();
        if chars < MIN_CHARS {
            return Err(PasswordError::TooShort { min: MIN_CHARS });
        }
        if chars > MAX_CHARS {
            return Err(PasswordError::TooLong { max: MAX_CHARS });
        }

        let lowercase = Zeroizing::new(normalised.to_lowercase());
        // Surrounding spaces do not make a common password any less common (Django trims too).
        if COMMON_PASSWORDS.contains(lowercase.trim()) {
            return Err(PasswordError::Common);
        }

        // Parsed emails are already lowercase ASCII; lowercasing again costs nothing and
        // does not rely on it.
        let local_part = email.local_part().to_lowercase();
        if local_part.chars().count() >= MIN_EMAIL_LOCAL_PART_CHARS
            && lowercase.contains(local_part.as_str())
        {
            return Err(PasswordError::ContainsEmail);
        }

        let head: Zeroizing<String> =
            Zeroizing::new(normalised.chars().take(ZXCVBN_MAX_CHARS).collect());
        let user_inputs: Vec<&str> = [email.as_str(), local_part.as_str()]
            .into_iter()
            .chain(other_inputs.iter().copied())
            .filter(|input| !input.trim().is_empty())
            .collect();
        let estimate = zxcvbn::zxcvbn(&head, &user_inputs);
        if estimate.score() < MIN_SCORE {
            return Err(PasswordError::TooGuessable {
                hint: guessability_hint(estimate.feedback()),
            });
        }

        Ok(NewPassword(SecretString::from(normalised.as_str())))
    }

    /// The NFKC-normalised password, for hashing. Never log it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword([REDACTED])")
    }
}

/// A password typed at login or given as `current_password`: normalised exactly like a
/// [`NewPassword`] so that it matches what was hashed, but never checked against the policy
/// (a password that was fine when it was set must keep working after the policy tightens).
#[derive(Clone)]
pub struct PasswordAttempt(SecretString);

impl PasswordAttempt {
    /// NFKC-normalises `raw`; accepts anything, the empty string included.
    pub fn new(raw: &str) -> PasswordAttempt {
        PasswordAttempt(SecretString::from(nfkc(raw).as_str()))
    }

    /// The NFKC-normalised attempt, for verifying against a stored hash. Never log it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for PasswordAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordAttempt([REDACTED])")
    }
}

/// NFKC form of `raw`, in a buffer that is wiped when dropped.
fn nfkc(raw: &str) -> Zeroizing<String> {
    let mut normalised = Zeroizing::new(String::with_capacity(raw.len()));
    normalised.extend(raw.nfkc());
    normalised
}

/// zxcvbn's warning if it has one, else its first suggestion; never empty.
fn guessability_hint(feedback: Option<&zxcvbn::feedback::Feedback>) -> String {
    feedback
        .and_then(|feedback| {
            feedback
                .warning()
                .map(|warning| warning.to_string())
                .or_else(|| feedback.suggestions().first().map(ToString::to_string))
        })
        .unwrap_or_else(|| "Add another word or two. Uncommon words are better.".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STRONG: &str = "correct-horse-battery-staple-7731";

    fn alice() -> Email {
        Email::parse("alice@example.com").unwrap()
    }

    fn check(raw: &str) -> Result<NewPassword, PasswordError> {
        NewPassword::parse(raw, &alice(), &[])
    }

    #[test]
    fn strong_passphrase_passes_and_is_exposed_unchanged() {
        let password = check(STRONG).unwrap();
        assert_eq!(password.expose(), STRONG);
    }

    #[test]
    fn too_short_counts_characters_not_bytes() {
        assert_eq!(check("").unwrap_err(), PasswordError::TooShort { min: 8 });
        assert_eq!(
            check("Zq7#vL2").unwrap_err(),
            PasswordError::TooShort { min: 8 }
        );
        // Seven characters, fourteen bytes.
        assert_eq!(
            check("\u{e9}\u{e8}\u{ea}\u{eb}\u{e0}\u{e2}\u{f4}").unwrap_err(),
            PasswordError::TooShort { min: 8 }
        );
        // Eight characters is long enough: whatever fails, it is not the length.
        assert!(!matches!(
            check("Zq7#vL2!"),
            Err(PasswordError::TooShort { .. })
        ));
    }

    #[test]
    fn length_is_counted_after_nfkc() {
        // Seven 'e' + combining acute: 14 code points that compose to 7 characters.
        let decomposed = "e\u{301}".repeat(7);
        assert_eq!(decomposed.chars().count(), 14);
        assert_eq!(
            check(&decomposed).unwrap_err(),
            PasswordError::TooShort { min: 8 }
        );
        // U+FDFA expands to 18 characters under NFKC: 15 of them are 270 characters.
        let expanding = "\u{fdfa}".repeat(15);
        assert_eq!(
            check(&expanding).unwrap_err(),
            PasswordError::TooLong { max: 256 }
        );
    }

    /// `n` characters that look random to zxcvbn (a fixed pseudo-random sequence).
    fn noise(n: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789-_!";
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ALPHABET[(state % ALPHABET.len() as u64) as usize] as char
            })
            .collect()
    }

    #[test]
    fn too_long() {
        assert!(check(&noise(256)).is_ok());
        assert_eq!(
            check(&noise(257)).unwrap_err(),
            PasswordError::TooLong { max: 256 }
        );
        assert_eq!(
            check(&"x".repeat(10_000)).unwrap_err(),
            PasswordError::TooLong { max: 256 }
        );
    }

    #[test]
    fn common_passwords_are_refused_case_insensitively() {
        for common in [
            "Friend of Emily",
            "password123",
            "iloveyou",
            "PassWord123",
            "TRUSTNO1",
            "  password123 ",
            "qwertyuiop123",
        ] {
            assert_eq!(
                check(common).unwrap_err(),
                PasswordError::Common,
                "{common}"
            );
        }
        // Fullwidth letters normalise to the plain word first.
        assert_eq!(
            check("\u{ff50}\u{ff41}\u{ff53}\u{ff53}\u{ff57}\u{ff4f}\u{ff52}\u{ff44}123")
                .unwrap_err(),
            PasswordError::Common
        );
    }

    #[test]
    fn common_list_is_loaded_and_already_normalised() {
        assert_eq!(COMMON_PASSWORDS.len(), 19_640);
        // Phrases stay whole; their words are not entries of their own.
        assert!(COMMON_PASSWORDS.contains("friend of emily"));
        assert!(!COMMON_PASSWORDS.contains("of"));
        for entry in COMMON_PASSWORDS.iter() {
            let normalised: String = entry.nfkc().collect::<String>().to_lowercase();
            assert_eq!(*entry, normalised, "list entry {entry:?} would never match");
        }
    }

    #[test]
    fn containing_the_email_local_part_is_refused() {
        assert_eq!(
            check("alice-password-123").unwrap_err(),
            PasswordError::ContainsEmail
        );
        assert_eq!(
            check("Wild-ALICE-ostrich-9137").unwrap_err(),
            PasswordError::ContainsEmail
        );
        let bob = Email::parse("Bob@example.com").unwrap();
        assert_eq!(
            NewPassword::parse("jumbo-bob-ostrich-9137", &bob, &[]).unwrap_err(),
            PasswordError::ContainsEmail
        );
        // A two-character local part is not checked.
        let al = Email::parse("al@example.com").unwrap();
        assert!(NewPassword::parse("totally-al-ostrich-9137", &al, &[]).is_ok());
    }

    #[test]
    fn guessable_passwords_are_refused_with_a_hint() {
        for weak in [
            "aaaaaaaaaaaaaaaa",
            "abcdefghijklmn",
            "zxcvbnmasdfgh",
            "december2024",
        ] {
            match check(weak) {
                Err(PasswordError::TooGuessable { hint }) => assert!(!hint.is_empty(), "{weak}"),
                other => panic!("{weak}: expected TooGuessable, got {other:?}"),
            }
        }
    }

    #[test]
    fn user_inputs_make_their_words_guessable() {
        let password = "Zbigniewkowalczykiewicz";
        assert!(check(password).is_ok());
        let err = NewPassword::parse(
            password,
            &alice(),
            &["Zbigniew Kowalczykiewicz", "zbigniew", "kowalczykiewicz"],
        )
        .unwrap_err();
        assert!(matches!(err, PasswordError::TooGuessable { .. }), "{err:?}");
    }

    #[test]
    fn messages_are_full_sentences() {
        assert_eq!(
            PasswordError::TooShort { min: 8 }.to_string(),
            "password must be at least 8 characters"
        );
        assert_eq!(
            PasswordError::TooLong { max: 256 }.to_string(),
            "password must be at most 256 characters"
        );
        assert_eq!(PasswordError::Common.to_string(), "password is too common");
        assert_eq!(
            PasswordError::ContainsEmail.to_string(),
            "password must not contain the email address"
        );
        let Err(err) = check("aaaaaaaaaaaaaaaa") else {
            panic!("a repeated letter passed");
        };
        assert_eq!(
            err.to_string(),
            "password is too easy to guess: Repeats like \"aaa\" are easy to guess."
        );
    }

    #[test]
    fn debug_never_shows_the_password() {
        let new = check(STRONG).unwrap();
        let attempt = PasswordAttempt::new(STRONG);
        for shown in [
            format!("{new:?}"),
            format!("{new:#?}"),
            format!("{attempt:?}"),
        ] {
            assert!(!shown.contains("horse"), "{shown}");
            assert!(shown.contains("REDACTED"), "{shown}");
        }
    }

    #[test]
    fn attempts_are_normalised_but_not_checked() {
        assert_eq!(PasswordAttempt::new("").expose(), "");
        assert_eq!(PasswordAttempt::new("a").expose(), "a");
        assert_eq!(PasswordAttempt::new("password").expose(), "password");
        assert_eq!(
            PasswordAttempt::new("\u{ff21}\u{ff42}\u{ff43}").expose(),
            "Abc"
        );
        assert_eq!(PasswordAttempt::new("e\u{301}").expose(), "\u{e9}");
        // What was hashed at registration is what a login presents.
        let fullwidth =
            "\u{ff43}\u{ff4f}\u{ff52}\u{ff52}\u{ff45}\u{ff43}\u{ff54}-horse-battery-staple-7731";
        let new = check(fullwidth).unwrap();
        assert_eq!(new.expose(), STRONG);
        assert_eq!(PasswordAttempt::new(fullwidth).expose(), new.expose());
    }

    /// Maps printable ASCII to its fullwidth form (U+FF01..=U+FF5E), which NFKC maps back.
    fn fullwidth(ascii: &str) -> String {
        ascii
            .chars()
            .map(|c| match c {
                '!'..='~' => char::from_u32(c as u32 - 0x21 + 0xff01).unwrap(),
                other => other,
            })
            .collect()
    }

    proptest! {
        #[test]
        fn shorter_than_eight_characters_is_too_short(
            raw in "\\PC{0,7}".prop_filter("shorter than 8 after NFKC", |s| s.nfkc().count() < 8)
        ) {
            prop_assert_eq!(check(&raw).unwrap_err(), PasswordError::TooShort { min: 8 });
        }

        #[test]
        fn longer_than_256_characters_is_too_long(
            raw in "\\PC{257,400}".prop_filter("longer than 256 after NFKC", |s| s.nfkc().count() > 256)
        ) {
            prop_assert_eq!(check(&raw).unwrap_err(), PasswordError::TooLong { max: 256 });
        }

        #[test]
        fn fullwidth_forms_are_judged_as_their_ascii(ascii in "[!-~]{1,40}") {
            let wide = fullwidth(&ascii);
            prop_assert_ne!(&wide, &ascii);
            let attempt = PasswordAttempt::new(&wide);
            prop_assert_eq!(attempt.expose(), ascii.as_str());
            let from_wide = check(&wide).map(|p| p.expose().to_owned());
            let from_ascii = check(&ascii).map(|p| p.expose().to_owned());
            prop_assert_eq!(from_wide, from_ascii);
        }

        #[test]
        fn random_passphrases_pass(
            words in prop::collection::vec("[a-z]{6,9}", 4..=5),
            digits in "[0-9]{4}",
        ) {
            let passphrase = format!("{}-{digits}", words.join("-"));
            prop_assume!(!passphrase.contains("alice"));
            let password = check(&passphrase);
            prop_assert!(password.is_ok(), "{:?} was refused: {:?}", passphrase, password);
            let password = password.unwrap();
            prop_assert_eq!(password.expose(), passphrase.as_str());
        }

        #[test]
        fn new_password_never_panics(raw in any::<String>(), name in any::<String>()) {
            let _ = NewPassword::parse(&raw, &alice(), &[&name]);
        }
    }
}
