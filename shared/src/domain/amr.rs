//! How a session's user proved who they are: the `amr` claim of RFC 8176.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The authentication methods of a session: always a password (`pwd`), and a one-time code
/// (`otp`) when it was opened with a second factor. A refresh keeps the session's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Amr {
    second_factor: bool,
}

impl Amr {
    /// `["pwd"]`: a password alone.
    pub const PASSWORD: Self = Self {
        second_factor: false,
    };
    /// `["pwd", "otp"]`: a password and a TOTP or recovery code.
    pub const PASSWORD_AND_OTP: Self = Self {
        second_factor: true,
    };

    /// The methods of a session opened with (`true`) or without a second factor.
    pub fn with_second_factor(second_factor: bool) -> Self {
        Self { second_factor }
    }

    /// Whether a second factor was passed (`otp` is present).
    pub fn has_second_factor(self) -> bool {
        self.second_factor
    }

    /// The RFC 8176 values, in order.
    pub fn methods(self) -> &'static [&'static str] {
        if self.second_factor {
            &["pwd", "otp"]
        } else {
            &["pwd"]
        }
    }

    /// The values joined by spaces (`pwd otp`), as the authorizer's context carries them
    /// (API Gateway context values are strings).
    pub fn to_spaced(self) -> String {
        self.methods().join(" ")
    }

    /// Reads a list of method names: `pwd` must be present, `otp` may be; anything else is
    /// refused (`None`).
    pub fn from_methods<'a>(methods: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let (mut password, mut otp) = (false, false);
        for method in methods {
            match method {
                "pwd" => password = true,
                "otp" => otp = true,
                _ => return None,
            }
        }
        password.then_some(Self { second_factor: otp })
    }
}

impl Serialize for Amr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.methods().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Amr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let methods = Vec::<String>::deserialize(deserializer)?;
        Self::from_methods(methods.iter().map(String::as_str))
            .ok_or_else(|| D::Error::custom("amr must hold \"pwd\" and at most \"otp\" besides"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amr_round_trips_as_rfc_8176_values() {
        for amr in [Amr::PASSWORD, Amr::PASSWORD_AND_OTP] {
            let json = serde_json::to_string(&amr).expect("serialize");
            assert_eq!(serde_json::from_str::<Amr>(&json).expect("parse"), amr);
        }
        assert_eq!(
            serde_json::to_string(&Amr::PASSWORD_AND_OTP).expect("json"),
            r#"["pwd","otp"]"#
        );
        assert_eq!(Amr::PASSWORD_AND_OTP.to_spaced(), "pwd otp");
        assert!(
            serde_json::from_str::<Amr>(r#"["otp"]"#).is_err(),
            "no password"
        );
        assert!(
            serde_json::from_str::<Amr>(r#"["pwd","sms"]"#).is_err(),
            "unknown method"
        );
        assert_eq!(
            Amr::from_methods("pwd otp".split(' ')),
            Some(Amr::PASSWORD_AND_OTP)
        );
    }
}
